"""The ``Observation``: what analysis learned from one ``Exchange``.

Observations stay inside the sensor. They hold no raw secrets: principals are keyed hashes and data
findings are types and paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensor.events import DataTypeSeen


@dataclass(slots=True, frozen=True)
class JwtInfo:
    alg: str | None
    kid: str | None = None
    iss: str | None = None
    aud: str | None = None
    sub_hash: str | None = None  # keyed hash of "sub"
    exp: int | None = None
    iat: int | None = None
    scope: str | None = None
    expired: bool = False
    unsigned: bool = False  # alg "none" or an empty signature segment
    malformed: bool = False


@dataclass(slots=True, frozen=True)
class AuthEvidence:
    schemes: tuple[str, ...]  # e.g. ("jwt",), ("subscription_key", "jwt"), ("none",)
    principal: str | None = None  # keyed hash of the strongest principal found
    jwt: JwtInfo | None = None
    key_in_query: bool = False  # a key or token travelled in the query string

    @property
    def has_credential(self) -> bool:
        return self.schemes != ("none",) and len(self.schemes) > 0


@dataclass(slots=True, frozen=True)
class ClientInfo:
    ip: str
    external: bool
    via_trusted_hop: bool = False


@dataclass(slots=True, frozen=True)
class Route:
    api: str
    template: str
    name: str | None = None
    from_spec: bool = False


@dataclass(slots=True)
class Observation:
    route: Route
    method: str
    status: int
    auth: AuthEvidence
    client: ClientInfo
    scheme: str  # "http" or "https" as the client used it
    timestamp: float  # epoch seconds of the request
    request_size: int
    response_size: int
    latency_ms: float
    params: tuple[tuple[str, str], ...] = ()  # (location, name)
    data_types: tuple[DataTypeSeen, ...] = ()
    request_id: str = ""
    # Elements of the response body's largest JSON array (``WalkStats.records``): -1 = no JSON body;
    # its path template; whether the count is a lower bound (body prefix past the inspection cap).
    records: int = -1
    records_path: str = ""
    records_partial: bool = False
    tags: list[str] = field(default_factory=list)

    @property
    def status_class(self) -> str:
        return f"{self.status // 100}xx" if self.status else "none"
