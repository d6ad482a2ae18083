"""Small, bounded sketches for the behaviour models.

Why hand-written rather than ``datasketch``: the hot path updates a sketch per parameter value, and
datasketch hashes every update with SHA-1 and keeps a numpy array per sketch (hundreds of bytes of
object overhead, ~2 us per update). What the models need is narrower:

- ``bitmap_add`` / ``bitmap_count``: *linear counting* over a 512-bit Python int. Exact enough
  (< 3 % error) up to a few hundred distinct items, which is where every per-key threshold lives,
  costs one shift-or per update and ~100 bytes per key. Used per IP, per (IP, endpoint, parameter),
  per (principal, endpoint).
- ``Hll``: HyperLogLog with a ``bytearray`` of 2**p registers, updated in pure Python; estimates are
  computed in one vectorised numpy call for all sketches (``hll_estimates``) at drain time. Used for
  distinct values of one parameter across all clients, and mergeable (register-wise max) so the
  collector can combine sensors (``collector/fleet.py``).

Values are never stored: updates take a 64-bit keyed hash (``KeyedHash``), so a sketch holds bits
and registers only.
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Final, TypeVar

import numpy as np

BITMAP_BITS: Final = 512
_MASK64: Final = (1 << 64) - 1

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyedHash:
    """64-bit hashes for sketches, keyed per engine.

    ``fast`` is Python's own string hash (SipHash, keyed per process) mixed with a random salt: it
    is cached on the str object, costs ~50 ns, and its output never leaves the process. ``shared``
    hashes parameter values for sketches that DO leave the process (the HyperLogLogs the collector
    merges across sensor replicas): the same value must hash the same in every replica, so it is a
    CRC-32 started from a seed derived from the secret, spread to 64 bits by CPython's tuple hash
    (deterministic for ints, unlike str hashes), at about the cost of ``fast``. ``shared_id``
    fingerprints that seed: sketches merge only when it matches. ``stable`` (BLAKE2b keyed with the
    engine secret) names hashed keys in alert evidence, so two alerts about the same object show the
    same opaque token.
    """

    __slots__ = ("_key", "_salt", "_seed", "_seed2", "shared_id")

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = (secret or os.urandom(32))[:64]
        self._salt = int.from_bytes(os.urandom(8), "little")
        seed = hashlib.blake2b(self._key, digest_size=12, person=b"apiward-hll").digest()
        self._seed = int.from_bytes(seed[:4], "little")
        self._seed2 = int.from_bytes(seed[4:], "little")
        self.shared_id = hashlib.blake2b(self._key, digest_size=6, person=b"apiward-hll-id").hexdigest()

    def fast(self, value: str) -> int:
        return (hash(value) ^ self._salt) & _MASK64

    def shared(self, value: str) -> int:
        return hash((zlib.crc32(value.encode("utf-8", "surrogatepass"), self._seed), self._seed2)) & _MASK64

    def stable(self, kind: str, value: str) -> str:
        digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=12, key=self._key, person=b"")
        return f"{kind}:{digest.hexdigest()}"


def _mix(h: int) -> int:
    """A 64-bit finaliser (splitmix64): Python's hash of small ints is the identity, and even a
    salted SipHash output is safer to spread before taking low bits for bitmaps."""
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
    return h ^ (h >> 31)


def bitmap_add(bits: int, h: int) -> int:
    return bits | (1 << (h & (BITMAP_BITS - 1)))


def bitmap_count(bits: int) -> float:
    """Linear-counting estimate of the distinct items folded into ``bits``."""
    ones = bits.bit_count()
    if ones >= BITMAP_BITS:
        return float(BITMAP_BITS) * math.log(BITMAP_BITS)  # saturated: a lower bound
    return -BITMAP_BITS * math.log1p(-ones / BITMAP_BITS)


class Hll:
    """HyperLogLog registers (precision ``p``); see ``hll_estimates`` for the numbers."""

    __slots__ = ("p", "regs", "shift", "tail")

    def __init__(self, p: int = 10) -> None:
        self.p = p
        self.regs = bytearray(1 << p)
        self.shift = 64 - p
        self.tail = (1 << (64 - p)) - 1

    def add(self, h: int) -> None:
        h = _mix(h)
        idx = h >> self.shift
        rank = self.shift - (h & self.tail).bit_length() + 1
        regs = self.regs
        regs[idx] = max(regs[idx], rank)

    def merge(self, other: Hll) -> None:
        if other.p != self.p:
            raise ValueError("cannot merge sketches of different precision")
        self.regs = bytearray(np.maximum(np.frombuffer(self.regs, np.uint8), np.frombuffer(other.regs, np.uint8)))

    def clear(self) -> None:
        self.regs = bytearray(len(self.regs))


def hll_estimates(registers: Sequence[bytes | bytearray]) -> list[float]:
    """Estimates of many same-precision sketches in one numpy pass (raw HLL with the small-range
    linear-counting correction; the large-range correction is moot with 64-bit hashes)."""
    if not registers:
        return []
    m = len(registers[0])
    regs = np.frombuffer(b"".join(registers), dtype=np.uint8).reshape(len(registers), m)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / np.sum(np.exp2(-regs.astype(np.float64)), axis=1)
    zeros = np.count_nonzero(regs == 0, axis=1)
    with np.errstate(divide="ignore"):
        linear = m * np.log(m / np.maximum(zeros, 1))
    out = np.where((raw <= 2.5 * m) & (zeros > 0), linear, raw)
    return [float(x) for x in out]


def merge_registers(registers: Sequence[bytes | bytearray]) -> bytes:
    """Register-wise max of sketches of one precision: the sketch of the union."""
    m = len(registers[0])
    regs = np.frombuffer(b"".join(registers), dtype=np.uint8).reshape(len(registers), m)
    return bytes(regs.max(axis=0))


def lru_get(table: OrderedDict[K, V], key: K) -> V | None:
    """``table`` is used as an LRU: a hit moves the key to the end (C-level, O(1))."""
    value = table.get(key)
    if value is not None:
        table.move_to_end(key)
    return value


def lru_put(table: OrderedDict[K, V], key: K, value: V, cap: int) -> V | None:
    """Insert; when over ``cap`` the least recently used entry is evicted and returned.

    An OrderedDict, not a plain dict: evicting from the front of a plain dict leaves deleted slots
    that ``next(iter(d))`` must skip, which turns steady churn (a million one-off client IPs) into
    quadratic time."""
    table[key] = value
    if len(table) > cap:
        return table.popitem(last=False)[1]
    return None


class QuantileTracker:
    """A streaming upper-quantile estimate in O(1) memory (Frugal-2U style): it moves up by
    ``step x q`` when a sample is above and down by ``step x (1 - q)`` below, so it settles where a
    fraction ``q`` of samples lies below. Used for "p99 of distinct counts per client" baselines,
    where keeping the samples per (endpoint, parameter) would cost far more than the answer."""

    __slots__ = ("n", "q", "value")

    def __init__(self, q: float = 0.99) -> None:
        self.q = q
        self.value = 0.0
        self.n = 0

    def add(self, x: float) -> None:
        self.n += 1
        if self.n == 1:
            self.value = x
            return
        # Relative steps: the estimate adapts in a few dozen samples whatever the scale; it never
        # jumps past the sample that moved it.
        step = max(1.0, self.value) * 0.1
        if x > self.value:
            self.value = min(self.value + step * self.q, x)
        elif x < self.value:
            self.value = max(self.value - step * (1.0 - self.q), x)
