"""The batch page's chart: counts per state over the last hours, as SVG polylines' points
(the template draws them; nothing here is markup, so every label stays escaped)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

WIDTH, HEIGHT, PAD = 720, 220, 30
# One colour per state drawn; states not listed share the last one.
COLOURS = {
    "completed": "#2e7d32",
    "needs_attention": "#c62828",
    "key_rejected": "#ef6c00",
    "key_expired": "#ad1457",
    "requested": "#1565c0",
    "cancelled": "#757575",
}
OTHER = "#6a1b9a"


def state_chart(hours: Sequence[datetime], series: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Lines (state, colour, points, last value) scaled into a WIDTH x HEIGHT box, with axis labels."""
    top = max((max(v) for v in series.values() if v), default=0) or 1
    n = len(hours)
    step = (WIDTH - 2 * PAD) / max(n - 1, 1)

    def y(value: int) -> float:
        return round(HEIGHT - PAD - value * (HEIGHT - 2 * PAD) / top, 1)

    lines = []
    for state, values in series.items():
        if not any(values):
            continue
        points = " ".join(f"{round(PAD + i * step, 1)},{y(v)}" for i, v in enumerate(values))
        lines.append({"state": state, "colour": COLOURS.get(state, OTHER), "points": points, "last": values[-1]})
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "top": top,
        "lines": lines,
        "first": hours[0].strftime("%m-%d %H:00") if hours else "",
        "last": hours[-1].strftime("%m-%d %H:00") if hours else "",
    }
