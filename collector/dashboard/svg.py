"""Server-side SVG charts: no JavaScript, no CDN, readable by screen readers.

Every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that states the numbers in
words. Colours come from CSS classes (``static/app.css``), never ``style`` attributes: the page's
Content-Security-Policy forbids inline styles. Every piece of text is escaped here, because the result
is marked safe for Jinja.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

_ids = itertools.count(1)
WIDTH, HEIGHT = 640, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 12, 28


def _fmt(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}"


def _open(title: str, desc: str, width: int, height: int, css: str) -> tuple[list[str], str]:
    uid = f"chart{next(_ids)}"
    parts = [
        f'<svg class="chart {escape(css)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(desc)}</desc>',
    ]
    return parts, uid


def _empty(title: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    parts, _ = _open(title, "No data yet.", width, height, "chart-empty")
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" class="muted">No data yet</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text went through escape()


def _axes(parts: list[str], top: float, *, width: int, height: int, first: str, last: str) -> None:
    plot_w = width - _LEFT - _RIGHT
    base = height - _BOTTOM
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{base}" x2="{_LEFT + plot_w}" y2="{base}"/>')
    parts.append(f'<line class="grid" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT + plot_w}" y2="{_TOP}"/>')
    parts.append(f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">{escape(_fmt(top))}</text>')
    parts.append(f'<text class="tick" x="{_LEFT - 6}" y="{base + 4}" text-anchor="end">0</text>')
    parts.append(f'<text class="tick" x="{_LEFT}" y="{height - 8}">{escape(first)}</text>')
    parts.append(f'<text class="tick" x="{_LEFT + plot_w}" y="{height - 8}" text-anchor="end">{escape(last)}</text>')


def bars(points: Sequence[tuple[str, float]], *, title: str, unit: str = "") -> Markup:
    """A column chart over time: ``points`` are (label, value), oldest first."""
    if not points or not any(v for _, v in points):
        return _empty(title)
    top = max(v for _, v in points)
    total = sum(v for _, v in points)
    peak_label = next(label for label, v in points if v == top)
    desc = (f"{len(points)} intervals from {points[0][0]} to {points[-1][0]}; total {_fmt(total)}{unit}, "
            f"highest {_fmt(top)}{unit} at {peak_label}.")
    parts, _ = _open(title, desc, WIDTH, HEIGHT, "chart-bars")
    _axes(parts, top, width=WIDTH, height=HEIGHT, first=points[0][0], last=points[-1][0])
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / len(points)
    gap = min(2.0, step * 0.2)
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top if top else 0
        x = _LEFT + i * step + gap / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{max(step - gap, 0.5):.1f}" '
            f'height="{h:.1f}"><title>{escape(label)}: {escape(_fmt(value))}{escape(unit)}</title></rect>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text went through escape()


def lines(
    labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str, unit: str = ""
) -> Markup:
    """One polyline per series (name, values aligned with ``labels``), with a legend."""
    values = [v for _, vs in series for v in vs]
    if not labels or not values or not any(values):
        return _empty(title)
    top = max(values)
    desc = "; ".join(
        f"{name}: highest {_fmt(max(vs))}{unit}, latest {_fmt(vs[-1])}{unit}" for name, vs in series if vs
    ) + f" ({len(labels)} intervals from {labels[0]} to {labels[-1]})."
    parts, _ = _open(title, desc, WIDTH, HEIGHT, "chart-lines")
    _axes(parts, top, width=WIDTH, height=HEIGHT, first=labels[0], last=labels[-1])
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    for n, (name, vs) in enumerate(series):
        pts = " ".join(
            f"{_LEFT + i * step:.1f},{_TOP + plot_h - (plot_h * v / top if top else 0):.1f}" for i, v in enumerate(vs)
        )
        if len(vs) == 1:  # a single point draws no line; show it as a dot
            x, y = pts.split(",")
            parts.append(f'<circle class="series s{n}" cx="{x}" cy="{y}" r="3"/>')
        else:
            parts.append(f'<polyline class="series s{n}" points="{pts}"/>')
        # The legend sits on the x-axis line between the first and last time labels, clear of the data.
        lx = WIDTH / 2 - 60 * len(series) / 2 + n * 60
        parts.append(f'<rect class="legend s{n}" x="{lx:.0f}" y="{HEIGHT - 17}" width="10" height="10"/>')
        parts.append(f'<text class="tick" x="{lx + 14:.0f}" y="{HEIGHT - 8}">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text went through escape()


def hbars(items: Sequence[tuple[str, float]], *, title: str) -> Markup:
    """Horizontal bars (category, value), e.g. responses per status class."""
    items = [(label, v) for label, v in items if v]
    if not items:
        return _empty(title, height=80)
    row, width = 26, WIDTH
    height = _TOP + row * len(items) + 8
    top = max(v for _, v in items)
    total = sum(v for _, v in items)
    desc = ", ".join(f"{label}: {_fmt(v)} ({100 * v / total:.0f}%)" for label, v in items) + "."
    parts, _ = _open(title, desc, width, height, "chart-hbars")
    plot_w = width - 60 - 90
    for i, (label, value) in enumerate(items):
        y = _TOP + i * row
        w = max(plot_w * value / top, 1.0)
        cls = escape(label.lower().replace(" ", "-"))
        parts.append(f'<text class="tick" x="52" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect class="hbar c-{cls}" x="60" y="{y + 3}" width="{w:.1f}" height="16"/>')
        parts.append(
            f'<text class="tick" x="{60 + w + 6:.1f}" y="{y + 15}">{escape(_fmt(value))} '
            f"({100 * value / total:.0f}%)</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text went through escape()


__all__ = ["bars", "hbars", "lines"]
