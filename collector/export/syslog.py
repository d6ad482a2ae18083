"""RFC 5424 syslog messages and RFC 6587 octet-counting frames (pure functions).

The message part is sent without the optional UTF-8 BOM: CEF parsers (Sentinel's AMA, ArcSight
connectors) expect the message to start with ``CEF:``.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Alert severity -> syslog severity (3 err, 4 warning, 5 notice, 6 info).
SYSLOG_SEVERITY = {"high": 3, "medium": 4, "low": 5, "informational": 6}
FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "authpriv": 10, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
NIL = "-"


def _field(value: str, limit: int) -> str:
    # PRINTUSASCII without spaces, or the NILVALUE.
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or NIL


def timestamp(at: datetime) -> str:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def message(
    msg: str,
    *,
    at: datetime,
    hostname: str,
    severity: str,
    facility: int = FACILITIES["authpriv"],
    app_name: str = "apiward",
    msgid: str = NIL,
    procid: str = NIL,
) -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`` as UTF-8."""
    pri = facility * 8 + SYSLOG_SEVERITY.get(severity, 5)
    header = (
        f"<{pri}>1 {timestamp(at)} {_field(hostname, 255)} {_field(app_name, 48)} "
        f"{_field(procid, 128)} {_field(msgid, 32)} {NIL}"
    )
    return f"{header} {msg}".encode()


def octet_frame(msg: bytes) -> bytes:
    """RFC 6587 octet counting: ``LENGTH SP MSG`` (the length in bytes)."""
    return str(len(msg)).encode() + b" " + msg


__all__ = ["FACILITIES", "SYSLOG_SEVERITY", "message", "octet_frame", "timestamp"]
