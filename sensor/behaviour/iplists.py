"""IP lists from feed files, matched in O(log n) and reloaded when a file changes.

A list is a sorted array of disjoint integer ranges per address family (a CIDR is one range, a
single address a range of one); a lookup is one ``bisect`` over the range starts. Formats:

- ``plain``: one IP or CIDR per line; ``#`` starts a comment; blank lines are skipped;
- ``tor``: the Tor bulk exit list (one IP per line, as served by check.torproject.org) or the
  ``exit-addresses`` document (``ExitAddress 1.2.3.4 2024-01-01 00:00:00`` lines; the other lines,
  ``ExitNode``/``Published``/``LastStatus``, are skipped).

Unparsable lines are counted (``invalid_lines``), never fatal: feeds are third-party data and one
bad line must not take the list down. A reload that fails to read keeps the last good list.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from bisect import bisect_right
from dataclasses import dataclass, field

from sensor.behaviour.policy import IpList

__all__ = ["IpListSet", "IpRanges", "parse_ip_lines"]


class IpRanges:
    """Disjoint, sorted [start, end] integer ranges for IPv4 and IPv6."""

    __slots__ = ("_v4_ends", "_v4_starts", "_v6_ends", "_v6_starts", "size")

    def __init__(self, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for net in networks:
            (v4 if net.version == 4 else v6).append((int(net.network_address), int(net.broadcast_address)))
        self._v4_starts, self._v4_ends = _merge(v4)
        self._v6_starts, self._v6_ends = _merge(v6)
        self.size = len(self._v4_starts) + len(self._v6_starts)

    def contains(self, ip: str) -> bool:
        parsed = parse_ip(ip)
        return parsed is not None and self.contains_int(*parsed)

    def contains_int(self, version: int, value: int) -> bool:
        starts, ends = (self._v4_starts, self._v4_ends) if version == 4 else (self._v6_starts, self._v6_ends)
        i = bisect_right(starts, value) - 1
        return i >= 0 and value <= ends[i]


def parse_ip(ip: str) -> tuple[int, int] | None:
    """(version, integer) of an address; IPv4-mapped IPv6 counts as IPv4. ``inet_pton`` is a few
    times faster than ``ipaddress`` and a new client IP is parsed once per list check."""
    try:
        if ":" not in ip:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0]), "big")
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:
        return 4, value & 0xFFFFFFFF
    return 6, value


def _merge(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    ranges.sort()
    starts: list[int] = []
    ends: list[int] = []
    for start, end in ranges:
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def parse_ip_lines(lines: list[str], fmt: str) -> tuple[list[ipaddress.IPv4Network | ipaddress.IPv6Network], int]:
    """Networks in a feed's lines and the count of lines that did not parse."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    invalid = 0
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if fmt == "tor":
            parts = line.split()
            if parts[0] == "ExitAddress" and len(parts) >= 2:
                line = parts[1]
            elif parts[0] in ("ExitNode", "Published", "LastStatus"):
                continue
            else:
                line = parts[0]
        try:
            nets.append(ipaddress.ip_network(line, strict=False))
        except ValueError:
            invalid += 1
    return nets, invalid


@dataclass(slots=True)
class _Feed:
    spec: IpList
    path: str
    ranges: IpRanges = field(default_factory=lambda: IpRanges([]))
    mtime: float = -1.0
    invalid_lines: int = 0
    load_errors: int = 0


class IpListSet:
    """All configured feeds. ``match`` answers the alert ids whose lists hold the address."""

    def __init__(self, specs: list[IpList], base_dir: str) -> None:
        self.feeds = [_Feed(spec, os.path.join(base_dir, spec.file)) for spec in specs]
        self.generation = 0  # bumps on every successful reload (verdict caches key on it)
        self.reload()

    def reload(self) -> bool:
        """Re-read the feeds whose modification time changed; True when any list changed."""
        changed = False
        for feed in self.feeds:
            try:
                mtime = os.stat(feed.path).st_mtime
                if mtime == feed.mtime:
                    continue
                with open(feed.path, encoding="utf-8", errors="replace") as fh:
                    nets, invalid = parse_ip_lines(fh.read().splitlines(), feed.spec.format)
            except OSError:
                feed.load_errors += 1  # keep the last good list
                continue
            feed.ranges = IpRanges(nets)
            feed.mtime = mtime
            feed.invalid_lines = invalid
            changed = True
        if changed:
            self.generation += 1
        return changed

    def match(self, ip: str) -> tuple[tuple[str, str], ...]:
        """(alert id, list name) for each list holding ``ip``."""
        parsed = parse_ip(ip)
        if parsed is None:
            return ()
        return tuple(
            (feed.spec.alert, feed.spec.name or os.path.basename(feed.path))
            for feed in self.feeds
            if feed.ranges.contains_int(*parsed)
        )

    @property
    def sizes(self) -> dict[str, int]:
        return {feed.spec.name or os.path.basename(feed.path): feed.ranges.size for feed in self.feeds}
