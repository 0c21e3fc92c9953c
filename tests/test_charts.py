"""The web view's SVG charts and pages: pure functions of plain data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from gridctl.agent.core.state import Attempt, State
from gridctl.cli.backends.base import ExperimentStatus, RunStatus
from gridctl.cli.metrics import Metrics
from gridctl.cli.ui import charts, pages

SVG = "{http://www.w3.org/2000/svg}"


def plot(html: str) -> ET.Element:
    """The chart's SVG, parsed: it must be well-formed to show at all."""
    found = re.search(r"<svg class=\"plot\".*?</svg>", html, re.S)
    assert found, html
    return ET.fromstring(found.group(0).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def test_each_line_gets_the_colour_of_its_place_in_the_order():
    html = charts.line_chart("loss", {"b": [(0, 1), (1, 2)], "a": [(0, 3), (1, 1)]}, ["a", "b"])
    lines = plot(html).findall(f"{SVG}polyline")
    assert [(line.get("stroke"), line.find(f"{SVG}title").text) for line in lines] == [
        (charts.colour(0), "a"),
        (charts.colour(1), "b"),
    ]


def test_points_span_the_plot_area_from_lowest_to_highest():
    svg = plot(charts.line_chart("acc", {"x": [(0, 0.0), (10, 1.0)]}))
    (line,) = svg.findall(f"{SVG}polyline")
    (x0, y0), (x1, y1) = (map(float, p.split(",")) for p in line.get("points").split())
    assert (x0, y0) == (charts.LEFT, charts.HEIGHT - charts.BOTTOM)
    assert (x1, y1) == (charts.WIDTH - charts.RIGHT, charts.TOP)


def test_non_finite_values_are_left_out_and_a_lone_point_is_a_dot():
    html = charts.line_chart("loss", {"x": [(0, math.nan), (1, 0.5), (2, math.inf)]})
    svg = plot(html)
    assert svg.findall(f"{SVG}polyline") == []
    assert len(svg.findall(f"{SVG}circle")) == 1


def test_a_metric_with_no_values_says_so():
    html = charts.line_chart("loss", {"x": [], "y": [(0, math.nan)]})
    assert '<p class="empty">no data</p>' in html
    assert "<svg" not in html


def test_long_series_are_thinned_but_keep_their_last_point():
    points = [(float(i), float(i % 7)) for i in range(10_001)]
    (line,) = plot(charts.line_chart("m", {"x": points})).findall(f"{SVG}polyline")
    drawn = line.get("points").split()
    assert len(drawn) <= charts.MAX_POINTS + 1
    assert drawn[-1] == "{},{}".format(*charts._Scale(0, 10_000, 0, 6).at(10_000, 10_000 % 7))


def test_a_chart_of_many_lines_shares_its_points_among_them():
    lines = {f"exp{i}": [(float(s), float(s * i)) for s in range(1000)] for i in range(100)}
    drawn = plot(charts.line_chart("m", lines)).findall(f"{SVG}polyline")
    assert len(drawn) == 100
    counts = [len(line.get("points").split()) for line in drawn]
    assert sum(counts) <= charts.CHART_POINTS + 100
    assert min(counts) >= charts.MIN_POINTS


def test_the_legend_names_at_most_ten_lines():
    lines = {f"exp{i}": [(0, i), (1, i + 1)] for i in range(25)}
    html = charts.line_chart("m", lines)
    assert html.count("<li>") == charts.LEGEND_LIMIT + 1
    assert "<li>and 15 more</li>" in html
    assert len(plot(html).findall(f"{SVG}polyline")) == 25


def test_names_and_values_are_escaped_everywhere():
    evil = "<script>alert(1)</script>"
    experiment = ExperimentStatus(
        name="r-exp0",
        run="r",
        status=State.FAILED,
        params={"tag": evil},
        argv=("python", "t.py", "--tag", evil),
        reason=evil,
        attempts=(Attempt("local", 0.0, 1.0, State.FAILED, evil),),
    )
    run = RunStatus("r", "local", 0.0, evil, 1, "grid_search", (experiment,))
    metrics = {"r-exp0": Metrics({evil: [(0, 1.0), (1, 2.0)]}, (evil,))}
    shown = [
        pages.runs_page([run]),
        pages.run_page(run, metrics),
        pages.experiment_page(experiment, [], metrics["r-exp0"], [evil + "\n"]),
        pages.error_page(404, evil),
    ]
    for html in shown:
        assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown[1]


def test_an_experiments_attempts_are_bars_in_time_order():
    attempts = (
        Attempt("i-1", 100.0, 160.0, State.INTERRUPTED, "spot reclaim"),
        Attempt("i-2", 190.0, None, State.RUNNING),
    )
    svg = ET.fromstring(
        charts.timeline(attempts, now=250.0).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1)
    )
    bars = svg.findall(f"{SVG}rect")
    assert [b.find(f"{SVG}title").text for b in bars] == [
        "0: i-1, interrupted (spot reclaim)",
        "1: i-2, running",
    ]
    first, second = (float(b.get("x")) for b in bars)
    assert first < second
    assert bars[0].get("fill") == charts.STATE_COLOURS[State.INTERRUPTED]
