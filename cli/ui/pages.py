"""The web view's HTML pages, built from the data ``gridctl status`` shows.

Pure functions of plain data: the server gathers it, these only lay it out. Every value is
escaped here; tables sort in the browser (``ui.js``) by each cell's ``data-value``, and a
page whose runs are active is fetched again every few seconds and its ``<main>`` swapped.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

from gridctl.agent.core.state import ACTIVE_STATES
from gridctl.agent.core.units import format_bytes
from gridctl.cli.backends.base import ExperimentStatus, RunStatus
from gridctl.cli.commands import Artifact
from gridctl.cli.metrics import Metrics
from gridctl.cli.sweep import format_value
from gridctl.cli.ui import charts
from gridctl.cli.views import duration, human_duration, iso, money, params_text, source_text

Cell = tuple[str, object]
"""A table cell: its HTML, and the value it sorts by."""


def runs_page(runs: Sequence[RunStatus]) -> str:
    rows = [
        (
            (_link(f"/runs/{quote(r.name)}", r.name), r.name),
            _state(r.status),
            (escape(r.backend), r.backend),
            (escape(_counts(r)), len(r.experiments)),
            _duration(r.started_at, r.finished_at),
            _cost(r.cost, r.status in ACTIVE_STATES),
            (escape(source_text(r.source)), source_text(r.source)),
            (escape(iso(r.created_at) or "-"), r.created_at),
        )
        for r in reversed(runs)
    ]
    table = _table(
        "runs",
        ("run", "status", "backend", "experiments", "duration", "cost", "commit", "created"),
        rows,
    )
    body = table if runs else '<p class="empty">No runs yet: start one with gridctl run.</p>'
    active = any(r.status in ACTIVE_STATES for r in runs)
    return _page("runs", (), f"<h1>Runs</h1>{body}", active)


def run_page(run: RunStatus, metrics: dict[str, Metrics]) -> str:
    """The sweep at a glance: a row per experiment with its params and the last value of
    each metric, then a chart per metric with every experiment's line."""
    names = [e.name for e in run.experiments]
    params = _keys(e.params for e in run.experiments)
    metric_names = _keys(metrics[n].series for n in names)
    rows = []
    for index, e in enumerate(run.experiments):
        last = metrics[e.name].last()
        rows.append(
            (
                (charts.swatch(index) + _link(_experiment_url(e.name), e.name), index),
                _state(e.status, e.reason),
                *((_value(e.params.get(k)), e.params.get(k)) for k in params),
                (str(e.resumes), e.resumes),
                _duration(e.started_at, e.finished_at),
                _cost(e.cost, e.status in ACTIVE_STATES),
                *((_number(last.get(m)), last.get(m)) for m in metric_names),
            )
        )
    table = _table(
        "experiments",
        ("experiment", "status", *params, "resumes", "duration", "cost", *metric_names),
        rows,
    )
    plots = "".join(
        charts.line_chart(m, {n: metrics[n].series.get(m, ()) for n in names}, names)
        for m in metric_names
    )
    commit = source_text(run.source)
    summary = " · ".join(
        [run.status, run.backend, _counts(run), f"seed {run.seed}"]
        + ([f"commit {commit}"] if commit != "-" else [])
    )
    body = (
        f'<h1>{escape(run.name)}</h1><p class="summary">{escape(summary)}</p>'
        f"{_description(run.description)}{table}"
        f"<h2>Metrics</h2>{_charts(plots, metrics.values())}"
    )
    active = run.status in ACTIVE_STATES
    return _page(run.name, ((f"/runs/{quote(run.name)}", run.name),), body, active)


def experiment_page(
    e: ExperimentStatus, artifacts: Sequence[Artifact], metrics: Metrics, log: Sequence[str]
) -> str:
    active = e.status in ACTIVE_STATES
    fields = [
        ("status", _state(e.status, e.reason)[0]),
        ("params", escape(params_text(e.params))),
        ("command", f"<code>{escape(shlex.join(e.argv))}</code>"),
        ("nodes", str(e.nodes)),
        ("exit code", "-" if e.exit_code is None else str(e.exit_code)),
        ("resumes", str(e.resumes)),
        ("started", escape(iso(e.started_at) or "-")),
        ("finished", escape(iso(e.finished_at) or "-")),
        ("duration", _duration(e.started_at, e.finished_at)[0]),
        ("cost", _cost(e.cost, active)[0]),
        ("instance", escape(e.instance or "-")),
    ]
    details = "".join(
        f'<tr><th>{name}</th><td data-field="{name}">{value}</td></tr>' for name, value in fields
    )
    attempts = _table(
        "attempts",
        ("attempt", "status", "instance", "started", "finished", "duration", "reason"),
        [
            (
                (str(i), i),
                _state(a.status),
                (escape(a.instance or "-"), a.instance),
                (escape(iso(a.started_at) or "-"), a.started_at),
                (escape(iso(a.finished_at) or "-"), a.finished_at),
                _duration(a.started_at, a.finished_at),
                (escape(a.reason or "-"), a.reason),
            )
            for i, a in enumerate(e.attempts)
        ],
    )
    files = _table(
        "artifacts",
        ("artifact", "size"),
        [
            (
                (_link(_file_url(e.name, a.path), a.path, download=True), a.path),
                (escape(format_bytes(a.size)), a.size),
            )
            for a in artifacts
        ],
    )
    plots = "".join(
        charts.line_chart(m, {e.name: points}, [e.name]) for m, points in metrics.series.items()
    )
    following = " (following)" if active else ""
    body = (
        f'<h1>{escape(e.name)}</h1><table class="fields">{details}</table>'
        f"<h2>Attempts</h2>{charts.timeline(e.attempts, time.time())}"
        f"{attempts if e.attempts else _none('no attempt yet')}"
        f'<h2>Log{following}</h2><pre id="log">{escape("".join(log))}</pre>'
        f"<h2>Artifacts</h2>{files if artifacts else _none('no artifacts yet')}"
        f"<h2>Metrics</h2>{_charts(plots, [metrics])}"
    )
    trail = ((f"/runs/{quote(e.run)}", e.run), (_experiment_url(e.name), e.name))
    return _page(e.name, trail, body, active)


def error_page(status: int, message: str) -> str:
    return _page(str(status), (), f'<h1>{status}</h1><p class="error">{escape(message)}</p>', False)


def _page(title: str, trail: Iterable[tuple[str, str]], body: str, active: bool) -> str:
    crumbs = "".join(f" / {_link(url, text)}" for url, text in trail)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · gridctl</title>"
        '<link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script>'
        f'</head><body data-active="{str(active).lower()}">'
        f'<header><a href="/">gridctl</a>{crumbs}</header><main>{body}</main></body></html>'
    )


def _table(name: str, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    head = "".join(f'<th data-sort="{i}">{escape(c)}</th>' for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(f'<td data-value="{_key(v)}">{html}</td>' for html, v in row) + "</tr>"
        for row in rows
    )
    return (
        f'<table class="sortable" id="{name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _key(value: object) -> str:
    """What a cell sorts by: numbers as numbers (the script sorts those that parse), the
    rest as text; unknown values sort first."""
    if value is None:
        return ""
    return escape(str(value))


def _keys(mappings: Iterable[Iterable[str]]) -> list[str]:
    """Every key, in the order first seen."""
    return list(dict.fromkeys(k for m in mappings for k in m))


def _link(url: str, text: str, download: bool = False) -> str:
    extra = " download" if download else ""
    return f'<a href="{escape(url)}"{extra}>{escape(text)}</a>'


def _experiment_url(name: str) -> str:
    return f"/experiments/{quote(name)}"


def _file_url(experiment: str, path: str) -> str:
    return f"/files/{quote(experiment)}/{quote(path)}"


def _state(status: str, reason: str | None = None) -> Cell:
    why = f' <span class="reason">({escape(reason)})</span>' if reason else ""
    return f'<span class="state state-{escape(status)}">{escape(status)}</span>{why}', status


def _counts(run: RunStatus) -> str:
    return ", ".join(f"{n} {state}" for state, n in run.counts.items()) or "-"


def _duration(start: float | None, end: float | None) -> Cell:
    seconds = duration(start, end)
    return escape(human_duration(seconds)), seconds


def _cost(cost: float | None, active: bool) -> Cell:
    return escape(money(cost, active)), cost


def _value(value: object) -> str:
    return "-" if value is None else escape(format_value(value))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _charts(plots: str, metrics: Iterable[Metrics]) -> str:
    said = dict.fromkeys(note for m in metrics for note in m.notes)
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in said)
    found = plots or _none(
        "no metrics yet: write metrics.csv, metrics.jsonl or TensorBoard event files"
        " among the artifacts"
    )
    return f'<div class="charts">{found}</div>{notes}'


def _description(text: str | None) -> str:
    return f'<p class="description">{escape(text)}</p>' if text else ""


def _none(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'
