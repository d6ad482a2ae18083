"""User agents that name attack tools or carry attack content.

Tool names are matched case-insensitively as tokens (``sqlmap/1.7`` but not ``notsqlmapper``) with
one compiled alternation; content patterns (``${jndi:``, ``<script``, shellshock's ``() {``...) are
regexes from the policy. Verdicts are cached per distinct user agent: real populations reuse a few
thousand strings.
"""

from __future__ import annotations

import re

__all__ = ["UserAgentMatcher"]


class UserAgentMatcher:
    def __init__(self, tools: list[str], patterns: list[str]) -> None:
        self._tools = (
            re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(t.lower()) for t in tools) + r")(?![a-z])", re.I)
            if tools
            else None
        )
        # Named alternatives tell which pattern matched without a second scan.
        self._patterns = (
            re.compile("|".join(f"(?P<p{i}>{p})" for i, p in enumerate(patterns)), re.I | re.S) if patterns else None
        )

    def match(self, ua: str) -> tuple[str, str] | None:
        """("tool", name) or ("content", pattern kind) or None. The UA itself is never returned."""
        ua = ua[:1024]
        if self._tools is not None:
            m = self._tools.search(ua)
            if m is not None:
                return "tool", m.group(1).lower()
        if self._patterns is not None:
            found = self._patterns.search(ua)
            if found is not None:
                return "content", f"pattern {found.lastgroup or 'p?'}"[:32]
        return None
