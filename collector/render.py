"""Aligned text tables for people (``--json`` is for programs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def data_types_summary(classification: dict[str, list[dict[str, Any]]]) -> str:
    """``email(response_body), credit_card(request_body)``; ``-`` when nothing was seen."""
    parts = [f"{entry['type']}({location})" for location, entries in classification.items() for entry in entries]
    return ", ".join(parts) or "-"


def short_time(value: str | None) -> str:
    """``2024-05-01T12:00:00.123Z`` -> ``2024-05-01 12:00Z``."""
    if not value:
        return "never"
    return value[:16].replace("T", " ") + "Z"
