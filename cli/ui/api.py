"""The web view's data as JSON (SPEC section 12): the objects ``gridctl status --output json``
prints, plus what only the web view shows (artifacts, metrics)."""

from __future__ import annotations

from pathlib import Path

from gridctl.cli import commands, views


def runs(home: Path) -> list[dict]:
    return [views.run_json(r, with_experiments=False) for r in commands.runs(home)]


def run(home: Path, name: str) -> dict:
    """The run with its experiments, each with the last value of every metric."""
    found = commands.run_status(home, name)
    metrics = commands.run_metrics(home, found)
    data = views.run_json(found, with_experiments=True)
    for e in data["experiments"]:
        e["last_metrics"] = metrics[e["name"]].last()
    return data


def experiment(home: Path, name: str) -> dict:
    found = commands.experiment(home, name)
    return {
        "run": found.run,
        **views.experiment_json(found),
        "argv": list(found.argv),
        "source": views.source_json(found.source),
        "artifacts": [{"path": a.path, "size": a.size} for a in commands.artifact_list(home, name)],
    }


def metrics(home: Path, name: str) -> dict[str, list[list[float]]]:
    """``{"METRIC": [[step, value], ...]}``."""
    found = commands.metrics(home, name)  # a run's name is not an experiment's
    return {metric: [list(p) for p in points] for metric, points in found.series.items()}
