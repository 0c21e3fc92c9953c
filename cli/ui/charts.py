"""Line charts as inline SVG, drawn on the server: the page needs no chart library, no
script and no internet to show them, and a browser draws a few hundred polylines fast."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from gridctl.agent.core.state import Attempt, State

WIDTH, HEIGHT = 460, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 28
MAX_POINTS = 400
"""Points drawn per line: about a point per pixel across, so nothing visible is lost."""
CHART_POINTS = 5000
"""Points drawn per chart, shared by its lines (but at least MIN_POINTS each): a
100-experiment sweep's chart stays a small part of its page, and quick to draw."""
MIN_POINTS = 50
LEGEND_LIMIT = 10
"""Lines named in a legend; a sweep's table names the rest by the same colours."""

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip  # the ten colours of matplotlib's tab10, which people read as distinct

Points = Sequence[tuple[float, float]]


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def swatch(index: int) -> str:
    """A small square in line ``index``'s colour, for tables that name the lines."""
    return (
        f'<svg class="swatch" width="10" height="10" aria-hidden="true">'
        f'<rect width="10" height="10" fill="{colour(index)}"/></svg>'
    )


def line_chart(title: str, lines: Mapping[str, Points], order: Sequence[str] = ()) -> str:
    """One chart of ``lines`` (label -> (step, value) points) sharing axes. ``order`` fixes
    each label's colour (its index), so that every chart of a sweep colours an experiment
    alike; labels not in it follow. Non-finite values are left out."""
    labels = list(order) + [label for label in lines if label not in order]
    finite = {
        label: [(x, y) for x, y in lines.get(label, ()) if math.isfinite(x) and math.isfinite(y)]
        for label in labels
    }
    drawn = [(labels.index(label), label, pts) for label, pts in finite.items() if pts]
    head = f'<figure class="chart" data-metric="{escape(title)}"><figcaption>{escape(title)}'
    if not drawn:
        return f'{head}</figcaption><p class="empty">no data</p></figure>'
    xs = [x for _, _, pts in drawn for x, _ in pts]
    ys = [y for _, _, pts in drawn for _, y in pts]
    scale = _Scale(min(xs), max(xs), min(ys), max(ys))
    body = [scale.axes()]
    limit = min(MAX_POINTS, max(MIN_POINTS, CHART_POINTS // len(drawn)))
    for index, label, pts in drawn:
        body.append(_line(scale, index, label, _thin(pts, limit)))
    legend = "".join(
        f"<li>{swatch(index)} {escape(label)}</li>" for index, label, _ in drawn[:LEGEND_LIMIT]
    )
    if len(drawn) > LEGEND_LIMIT:
        legend += f"<li>and {len(drawn) - LEGEND_LIMIT} more</li>"
    return (
        f'{head}</figcaption><svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-label="{escape(title)}">{"".join(body)}</svg>'
        f'<ul class="legend">{legend}</ul></figure>'
    )


def _thin(points: Points, limit: int) -> Points:
    """Every n-th point, and always the last, so the line ends where the data does."""
    if len(points) <= limit:
        return points
    step = math.ceil(len(points) / limit)
    kept = list(points[::step])
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


def _line(scale: _Scale, index: int, label: str, points: Points) -> str:
    tip = f"<title>{escape(label)}</title>"
    if len(points) == 1:
        x, y = scale.at(*points[0])
        return f'<circle cx="{x}" cy="{y}" r="3" fill="{colour(index)}">{tip}</circle>'
    coords = " ".join("{},{}".format(*scale.at(x, y)) for x, y in points)
    return (
        f'<polyline points="{coords}" fill="none" stroke="{colour(index)}"'
        f' stroke-width="1.5">{tip}</polyline>'
    )


class _Scale:
    """Data coordinates to the SVG's; a flat range is widened so it has a middle."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        if x0 == x1:
            x0, x1 = x0 - 1, x1 + 1
        if y0 == y1:
            pad = abs(y0) * 0.1 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.dx = (WIDTH - LEFT - RIGHT) / (x1 - x0)
        self.dy = (HEIGHT - TOP - BOTTOM) / (y1 - y0)

    def at(self, x: float, y: float) -> tuple[float, float]:
        return round(LEFT + (x - self.x0) * self.dx, 1), round(TOP + (self.y1 - y) * self.dy, 1)

    def axes(self) -> str:
        bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
        return (
            f'<g class="axes"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>'
            f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
            f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{_number(self.y1)}</text>'
            f'<text x="{LEFT - 4}" y="{bottom}" text-anchor="end">{_number(self.y0)}</text>'
            f'<text x="{LEFT}" y="{HEIGHT - 8}">{_number(self.x0)}</text>'
            f'<text x="{right}" y="{HEIGHT - 8}" text-anchor="end">{_number(self.x1)}</text>'
            f'<text x="{(LEFT + right) // 2}" y="{HEIGHT - 8}" text-anchor="middle">step</text>'
            "</g>"
        )


def _number(value: float) -> str:
    return f"{value:.4g}"


STATE_COLOURS = {
    State.SUCCEEDED: "#2ca02c",
    State.FAILED: "#d62728",
    State.STOPPED: "#bcbd22",
    State.INTERRUPTED: "#9467bd",
}
"""An attempt's bar by how it ended; one still going is blue."""


def timeline(attempts: Sequence[Attempt], now: float) -> str:
    """An experiment's attempts as bars on one time axis: where each ran, how it ended
    and, between bars, how long the resume waited for a machine."""
    if not attempts:
        return ""
    start = attempts[0].started_at
    end = max(now if a.finished_at is None else a.finished_at for a in attempts)
    span = max(end - start, 1e-9)
    row, width = 22, WIDTH + 300
    bars = []
    for i, a in enumerate(attempts):
        x0 = 4 + (a.started_at - start) / span * (width - 8)
        x1 = 4 + ((a.finished_at or now) - start) / span * (width - 8)
        fill = STATE_COLOURS.get(a.status, "#1f77b4")
        label = f"{i}: {a.instance}, {a.status}" + (f" ({a.reason})" if a.reason else "")
        bars.append(
            f'<rect x="{x0:.1f}" y="{i * row + 2}" width="{max(x1 - x0, 2):.1f}"'
            f' height="{row - 6}" fill="{fill}"><title>{escape(label)}</title></rect>'
        )
    height = len(attempts) * row
    return (
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="attempts">{"".join(bars)}</svg>'
    )
