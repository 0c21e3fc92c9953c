"""Views of command results: tables for people (``tables.Table``), stable JSON for programs."""

from __future__ import annotations

import shlex
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, overload

from gridctl.agent.core.datastore import CreateResult, Version
from gridctl.agent.core.spec import Source
from gridctl.agent.core.state import ACTIVE_STATES, State
from gridctl.agent.core.units import count, format_bytes
from gridctl.cli import jsontext
from gridctl.cli.backends.base import ExperimentStatus, RunStatus, total_of
from gridctl.cli.tables import Cell, Styled, Table

if TYPE_CHECKING:
    from gridctl.cli.commands import Teardown
    from gridctl.cli.estimate import Estimate
    from gridctl.cli.plan import RunPlan

STATE_STYLES = {
    "queued": "dim",
    "starting": "cyan",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "stopped": "yellow",
    "interrupted": "magenta",
}


@overload
def iso(ts: float) -> str: ...
@overload
def iso(ts: float | None) -> str | None: ...
def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def duration(start: float | None, end: float | None) -> float | None:
    if start is None:
        return None
    return round((end or time.time()) - start, 3)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def money(cost: float | None, active: bool = False) -> str:
    """USD as people read it: cents, or tenths of a cent below a dollar (a short run on a
    small instance costs less than one); "est." while it still grows; "?" when a price is
    unknown."""
    if cost is None:
        return "?"
    text = f"${cost:,.2f}" if cost >= 1 or cost == 0 else f"${cost:.4f}"
    return f"{text} est." if active else text


def rounded(cost: float | None) -> float | None:
    """USD in JSON: to a millionth, so sums read as sums."""
    return None if cost is None else round(cost, 6)


def params_text(params: dict[str, object]) -> str:
    from gridctl.cli.sweep import format_value  # here only: JSON views do without the sweeps

    return " ".join(f"{k}={format_value(v)}" for k, v in params.items()) or "-"


def print_json(data: object) -> None:
    sys.stdout.write(jsontext.dumps(data) + "\n")


def source_json(source: Source | None) -> dict:
    """SPEC section 10's ``source``: every key present, null where unknown."""
    found = source or Source()
    return {
        "git_url": found.git_url,
        "ref": found.ref,
        "commit": found.commit,
        "dirty": found.dirty,
    }


def source_text(source: Source | None) -> str:
    """The short commit, ``+`` when the tree held more than it; ``-`` when unknown."""
    if source is None or source.short is None:
        return "-"
    return source.short + ("+" if source.dirty else "")


def plan_json(plan: RunPlan, estimate: Estimate | None = None) -> dict:
    """With an ``estimate`` (a dry run), each experiment's and the sweep's USD per hour."""
    data: dict = {
        "run": plan.name,
        "disk_size": plan.disk_size,
        "max_runtime": plan.max_runtime,
        "max_cost": plan.max_cost,
        "source": source_json(plan.source),
        "experiments": [
            {"name": e.name, "params": e.params, "argv": list(e.argv), "nodes": plan.nodes}
            for e in plan.experiments
        ],
    }
    if estimate is not None:
        for e in data["experiments"]:
            e["price_per_hour"] = estimate.per_experiment[e["name"]]
        data["price_per_hour"] = estimate.total
        data["price_source"] = estimate.source
    return data


def experiment_json(e: ExperimentStatus) -> dict:
    return {
        "name": e.name,
        "status": e.status,
        "params": e.params,
        "nodes": e.nodes,
        "exit_code": e.exit_code,
        "resumes": e.resumes,
        "started_at": iso(e.started_at),
        "finished_at": iso(e.finished_at),
        "duration": duration(e.started_at, e.finished_at),
        "instance": e.instance,
        "reason": e.reason,
        "cost": rounded(e.cost),
        "attempts": [
            {
                "instance": a.instance,
                "status": a.status,
                "started_at": iso(a.started_at),
                "finished_at": iso(a.finished_at),
                "reason": a.reason,
            }
            for a in e.attempts
        ],
    }


def run_json(run: RunStatus, with_experiments: bool) -> dict:
    data: dict = {
        "run": run.name,
        "status": run.status,
        "backend": run.backend,
        "counts": run.counts,
        "created_at": iso(run.created_at),
        "duration": duration(run.started_at, run.finished_at),
        "cost": rounded(run.cost),
        "seed": run.seed,
        "strategy": run.strategy,
        "description": run.description,
        "source": source_json(run.source),
    }
    if with_experiments:
        data["experiments"] = [experiment_json(e) for e in run.experiments]
    return data


def cost_json(runs: list[RunStatus], since: float | None) -> dict:
    """``gridctl cost``'s JSON (its help describes it)."""
    return {
        "since": iso(since),
        "runs": [
            {
                "run": r.name,
                "backend": r.backend,
                "status": r.status,
                "created_at": iso(r.created_at),
                "cost": rounded(r.cost),
                "gpu_hours": round(r.gpu_hours, 6),
                "estimate": r.status in ACTIVE_STATES,
                "experiments": [
                    {
                        "name": e.name,
                        "status": e.status,
                        "cost": rounded(e.cost),
                        "gpu_hours": round(e.gpu_hours, 6),
                        "estimate": e.status in ACTIVE_STATES,
                    }
                    for e in r.experiments
                ],
            }
            for r in runs
        ],
        "total": {
            "cost": rounded(total_of(r.cost for r in runs)),
            "gpu_hours": round(sum(r.gpu_hours for r in runs), 6),
            "estimate": any(r.status in ACTIVE_STATES for r in runs),
        },
    }


def cost_table(runs: list[RunStatus]) -> Table:
    """A row per experiment, a row per run with its sum, and the total."""
    table = Table(("run", "experiment", "status", "GPU-hours", "cost"))
    for r in runs:
        for e in r.experiments:
            active = e.status in ACTIVE_STATES
            table.add_row(
                r.name, e.name, _state(e.status), f"{e.gpu_hours:.2f}", money(e.cost, active)
            )
        active = r.status in ACTIVE_STATES
        table.add_row(
            r.name,
            Styled("all", "bold"),
            _state(r.status),
            f"{r.gpu_hours:.2f}",
            money(r.cost, active),
        )
    table.add_row(
        Styled("total", "bold"),
        "",
        "",
        f"{sum(r.gpu_hours for r in runs):.2f}",
        money(total_of(r.cost for r in runs), any(r.status in ACTIVE_STATES for r in runs)),
    )
    return table


def _state(state: str) -> Styled:
    return Styled(state, STATE_STYLES.get(state, ""))


def runs_table(runs: list[RunStatus]) -> Table:
    table = Table(
        ("run", "status", "backend", "experiments", "duration", "cost", "commit", "created")
    )
    for run in runs:
        counts = ", ".join(f"{n} {state}" for state, n in run.counts.items()) or "-"
        table.add_row(
            run.name,
            _state(run.status),
            run.backend,
            counts,
            human_duration(duration(run.started_at, run.finished_at)),
            money(run.cost, run.status in ACTIVE_STATES),
            source_text(run.source),
            iso(run.created_at),
        )
    return table


def run_table(run: RunStatus) -> Table:
    title = (
        f"{run.name} (",
        _state(run.status),
        f", {run.backend}, seed {run.seed}{_commit_hint(run.source)})",
    )
    table = Table(
        ("experiment", "status", "params", "exit", "resumes", "duration", "cost", "instance"),
        title=title,
    )
    for e in run.experiments:
        why = (
            f" ({e.reason})"
            if e.status in (State.FAILED, State.QUEUED, State.STARTING) and e.reason
            else ""
        )
        table.add_row(
            e.name + _nodes_hint(e.nodes),
            (_state(e.status), why),
            params_text(e.params),
            "-" if e.exit_code is None else str(e.exit_code),
            str(e.resumes),
            human_duration(duration(e.started_at, e.finished_at)),
            money(e.cost, e.status in ACTIVE_STATES),
            e.instance or "-",
        )
    return table


def experiment_table(e: ExperimentStatus) -> Table:
    """One experiment, a field per line, with each attempt."""
    table = Table(("", ""), title=f"{e.name} (run {e.run})", show_header=False)
    rows: list[tuple[str, Cell]] = [
        ("status", (_state(e.status), f" ({e.reason})" if e.reason else "")),
        ("params", params_text(e.params)),
        ("nodes", str(e.nodes)),
        ("command", shlex.join(e.argv)),
        ("exit code", "-" if e.exit_code is None else str(e.exit_code)),
        ("resumes", str(e.resumes)),
        ("started", iso(e.started_at) or "-"),
        ("finished", iso(e.finished_at) or "-"),
        ("duration", human_duration(duration(e.started_at, e.finished_at))),
        ("cost", money(e.cost, e.status in ACTIVE_STATES)),
        ("GPU-hours", f"{e.gpu_hours:.2f}"),
        ("instance", e.instance or "-"),
    ]
    for i, a in enumerate(e.attempts):
        ended = f" (until {iso(a.finished_at)})" if a.finished_at else ""
        why = f": {a.reason}" if a.reason else ""
        rows.append((f"attempt {i}", (_state(a.status), f"{why} on {a.instance}{ended}")))
    for field, value in rows:
        table.add_row(field, value)
    return table


def _commit_hint(source: Source | None) -> str:
    """``, commit abc1234`` in a run's title when the commit is known."""
    text = source_text(source)
    return "" if text == "-" else f", commit {text}"


def _nodes_hint(nodes: int) -> str:
    """`` (2 nodes)`` after a multi-node experiment's name; nothing after a single one's."""
    return f" ({nodes} nodes)" if nodes > 1 else ""


def plan_table(plan: RunPlan, estimate: Estimate) -> Table:
    """One row per experiment with its price per hour, then the sweep's (and where prices
    came from)."""
    table = Table(
        ("experiment", "price", "command"),
        title=f"{plan.name}: {len(plan.experiments)} experiment(s) on {plan.cloud}",
    )
    for e in plan.experiments:
        table.add_row(
            e.name + _nodes_hint(plan.nodes),
            _hourly(estimate.per_experiment[e.name]),
            shlex.join(e.argv),
        )
    source = f"({estimate.source})" if estimate.source else ""
    table.add_row("all", _hourly(estimate.total), source)
    return table


def _hourly(usd: float | None) -> str:
    """``$0.526/h``; ``price unknown`` where no price was found."""
    return "price unknown" if usd is None else f"${usd:.4g}/h"


def datastore_created(result: CreateResult) -> str:
    if result.unchanged:
        return (
            f"{result.name} version {result.version} already holds exactly these"
            f" {result.files} file(s): no new version made"
        )
    return (
        f"{result.name} version {result.version}: {result.files} file(s),"
        f" {format_bytes(result.bytes)}; uploaded {result.uploaded_files} file(s),"
        f" {format_bytes(result.uploaded_bytes)}"
    )


def datastore_created_json(result: CreateResult) -> dict:
    return {
        "name": result.name,
        "version": result.version,
        "files": result.files,
        "bytes": result.bytes,
        "uploaded_files": result.uploaded_files,
        "uploaded_bytes": result.uploaded_bytes,
        "skipped": list(result.skipped),
        "unchanged": result.unchanged,
    }


def datastores_json(found: list[tuple[str, list[Version]]]) -> list[dict]:
    return [
        {
            "name": name,
            "versions": [
                {
                    "version": v.version,
                    "files": v.files,
                    "bytes": v.bytes,
                    "status": "complete" if v.complete else "incomplete",
                    "created_at": iso(v.created_at),
                }
                for v in versions
            ],
        }
        for name, versions in found
    ]


def datastores_table(found: list[tuple[str, list[Version]]]) -> Table:
    """One row per datastore: its versions, and the newest version's figures."""
    table = Table(("name", "versions", "files", "size", "status", "created"))
    for name, versions in found:
        newest = versions[-1]
        table.add_row(
            name,
            ", ".join(str(v.version) for v in versions),
            str(newest.files),
            format_bytes(newest.bytes),
            "complete" if newest.complete else "incomplete",
            iso(newest.created_at),
        )
    return table


def teardown_summary(doomed: Teardown) -> str:
    """One line: environment X with 2 runs, 1 datastore (3 versions) and 1.2 MB in s3://B."""
    versions = sum(len(v) for _, v in doomed.datastores)
    return (
        f"environment {doomed.environment} with {count(len(doomed.runs), 'run')},"
        f" {count(len(doomed.datastores), 'datastore')} ({count(versions, 'version')}) and"
        f" {format_bytes(doomed.bytes)} in s3://{doomed.bucket}"
    )


def teardown_listing(doomed: Teardown) -> str:
    """Every run and datastore that goes, one per line, for the whole team."""
    lines = [f"gridctl down destroys environment {doomed.environment} and deletes, for everyone:"]
    lines += [
        f"  run {r.name}: {r.status}, {count(len(r.experiments), 'experiment')}"
        for r in doomed.runs
    ]
    lines += [
        f"  datastore {name}: {count(len(versions), 'version')} ({', '.join(map(str, versions))})"
        for name, versions in doomed.datastores
    ]
    lines.append(
        f"  {format_bytes(doomed.bytes)} in {count(doomed.objects, 'object')}"
        f" in s3://{doomed.bucket} (artifacts, logs, bundles, datastores, Terraform state)"
    )
    return "\n".join(lines)
