"""Flood protection for the collector API: token buckets per bearer token and per client IP -> 429.

Every request takes one token from the bucket of its client IP and, when it carries an
``Authorization`` header, one from the bucket of that credential (keyed by a SHA-256 prefix, never the
secret). An empty bucket answers ``429 Too Many Requests`` (a problem document with ``Retry-After``)
before authentication, so a flood of bad tokens costs no more than a flood of good ones.

Configuration (environment, read when the app is created; ``0`` turns a limit off):

- ``APIWARD_RATE_LIMIT_TOKEN_RPS`` / ``APIWARD_RATE_LIMIT_TOKEN_BURST``: per credential, default 200/s,
  burst 1000 (a sensor sends about one batch per window; the dashboard a few dozen reads per view);
- ``APIWARD_RATE_LIMIT_IP_RPS`` / ``APIWARD_RATE_LIMIT_IP_BURST``: per client IP, default 500/s, burst 2000.

State is bounded: at most ``max_keys`` buckets (least recently used evicted; an evicted bucket comes
back full, so eviction can only be lenient). The client IP is the socket peer: a collector behind a
reverse proxy sees the proxy's address, so rate-limit there or raise the IP limits.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from collector.problems import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class TokenBuckets:
    """``rate`` tokens per second up to ``burst``; ``rate <= 0`` means unlimited."""

    rate: float
    burst: float
    max_keys: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)

    def take(self, key: str) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(slots=True)
class RateLimiter:
    per_token: TokenBuckets
    per_ip: TokenBuckets
    limited: int = 0  # 429 answers so far

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateLimiter:
        env = os.environ if environ is None else environ

        def num(name: str, default: float) -> float:
            raw = env.get(name)
            try:
                value = float(raw) if raw is not None else default
            except ValueError as exc:
                raise ValueError(f"{name} must be a number, not {raw!r}") from exc
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0")
            return value

        token = TokenBuckets(num("APIWARD_RATE_LIMIT_TOKEN_RPS", 200), num("APIWARD_RATE_LIMIT_TOKEN_BURST", 1000))
        ip = TokenBuckets(num("APIWARD_RATE_LIMIT_IP_RPS", 500), num("APIWARD_RATE_LIMIT_IP_BURST", 2000))
        return cls(per_token=token, per_ip=ip)

    def check(self, ip: str, authorization: str | None) -> float:
        """0.0 when the request may go on, else the Retry-After in seconds."""
        wait = self.per_ip.take("ip:" + ip)
        if authorization:
            digest = hashlib.sha256(authorization.encode("utf-8", "replace")).hexdigest()[:32]
            wait = max(wait, self.per_token.take("tok:" + digest))
        return wait


class RateLimitMiddleware:
    """The aiohttp middleware (``collector.app`` puts it between ``errors`` and ``authorize``)."""

    __middleware_version__ = 1  # what @web.middleware sets: a new-style middleware

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        limiter = self.limiter
        wait = limiter.check(request.remote or "", request.headers.get("Authorization"))
        if wait > 0:
            limiter.limited += 1
            raise ApiError(
                429, "too many requests; slow down", title="Too Many Requests",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return await handler(request)


def middleware(limiter: RateLimiter | None = None) -> RateLimitMiddleware:
    """A rate-limit middleware; without ``limiter`` its limits come from the environment (see above)."""
    return RateLimitMiddleware(limiter if limiter is not None else RateLimiter.from_env())
