"""Server-rendered SVG charts: no script, no asset from anywhere, readable as a table too.

Each bar has a ``<title>`` (shown on hover and read by screen readers); the page puts
the same numbers in a table beside the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 160
LEFT, BOTTOM, TOP = 40, 18, 8


def _nice(top: float) -> float:
    if top <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000):
        if top <= step:
            return float(step)
    return float(top)


def bars(label: str, points: Sequence[tuple[datetime, float | None]], unit: str = "") -> Markup:
    """A bar per point (a minute), the y axis from 0 to a round maximum, a time label
    every hour."""
    # A negative lag (dialed before its time: a manual dispatch) draws as none.
    values = [max(v or 0.0, 0.0) for _, v in points]
    top = _nice(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(points), 1)
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}" '
        'stroke="#d0d7de"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{top:g}{escape(unit)}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, ((at, _), v) in enumerate(zip(points, values, strict=True)):
        h = plot_h * v / top
        x = LEFT + i * step
        if v:
            out.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(step - 0.5, 0.5):.1f}" '
                f'height="{h:.1f}" fill="#0550ae"><title>{at:%H:%M} UTC: {v:g}{escape(unit)}'
                "</title></rect>"
            )
        if at.minute == 0:
            out.append(f'<text x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="middle">{at:%H:%M}</text>')
    out.append("</svg>")
    # Safe to mark: every text that reaches it (the label, the unit) is escaped above,
    # and the rest are numbers and times formatted here.
    return Markup("".join(out))  # noqa: S704
