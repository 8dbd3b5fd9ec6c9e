"""Inline SVG line charts for the HTML report, with no script, font or stylesheet from elsewhere."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
_W, _H = 520, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 120, 30, 45


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: list[tuple[float, float]]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ value (axes end on a round number)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value)


def _ticks(top: float, count: int = 5) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def line_chart(title: str, x_label: str, y_label: str, series: list[Series]) -> str:
    xs = [x for s in series for x, _ in s.points] or [0.0]
    ys = [y for s in series for _, y in s.points] or [0.0]
    x_lo, x_hi = min(xs), max(xs)
    x_span = (x_hi - x_lo) or 1.0
    y_top = nice_ceiling(max(ys))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x_lo) / x_span * plot_w

    def py(y: float) -> float:
        return _TOP + plot_h - y / y_top * plot_h

    parts = [
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>',
    ]
    for tick in _ticks(y_top):
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" '
            f'stroke="#eee"/><text x="{_LEFT - 5}" y="{py(tick) + 4:.1f}" '
            f'text-anchor="end">{tick:g}</text>'
        )
    # Few distinct x values (users levels) are labelled as they are; a time axis gets six ticks.
    x_ticks = sorted(set(xs)) if len(set(xs)) <= 8 else [x_lo + x_span * i / 5 for i in range(6)]
    for tick in x_ticks:
        parts.append(
            f'<text x="{px(tick):.1f}" y="{_TOP + plot_h + 15}" '
            f'text-anchor="middle">{tick:.0f}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 8}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="14" y="{_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + plot_h / 2})">{escape(y_label)}</text>'
    )
    for index, s in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        legend_y = _TOP + 12 + 16 * index
        parts.append(
            f'<rect x="{_W - _RIGHT + 10}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{color}"/><text x="{_W - _RIGHT + 25}" y="{legend_y + 1}">'
            f"{escape(s.name)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
