"""``gridctl cost`` and the cost in ``status`` on this machine, where runs are free (SPEC
section 11): the real command on a real local run; what AWS runs cost is
tests/aws/test_aws_cost.py's."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_local_runs_cost_nothing(gridctl, project: Path):
    (project / "train.py").write_text("print('trained')\n")
    done = gridctl(
        "run", "--cloud", "local", "--name", "here", "--wait", "train.py", "--lr", "[1, 2]"
    )
    assert done.returncode == 0, done.stderr
    status = gridctl.status("here")
    assert status["cost"] == 0.0
    assert [e["cost"] for e in status["experiments"]] == [0.0, 0.0]
    report = gridctl.json("cost", "--output", "json")
    assert report["since"] is None
    (run,) = report["runs"]
    assert (run["run"], run["backend"], run["cost"], run["gpu_hours"]) == (
        "here",
        "local",
        0.0,
        0.0,
    )
    assert [(e["name"], e["cost"], e["estimate"]) for e in run["experiments"]] == [
        ("here-exp0", 0.0, False),
        ("here-exp1", 0.0, False),
    ]
    assert report["total"] == {"cost": 0.0, "gpu_hours": 0.0, "estimate": False}
    assert gridctl.json("cost", "--since", "2999-01-01T00:00", "--output", "json")["runs"] == []
    since = gridctl.json("cost", "--since", "2000-01-01", "--output", "json")
    assert since == {**report, "since": "2000-01-01T00:00:00Z"}
    table = gridctl("cost", "here")
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["here", "all", "succeeded", "0.00", "$0.00"] in rows, table.stdout
    assert ["total", "0.00", "$0.00"] in rows, table.stdout


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", ""])
def test_a_bad_since_is_one_line_and_exit_2(gridctl, since: str):
    bad = gridctl("cost", "--since", since)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"gridctl: error: --since {since!r}: not an ISO date (e.g. 2026-12-01 or 2026-12-01T09:30)"
    ]


def test_an_unknown_price_makes_every_sum_that_includes_it_unknown():
    from gridctl.agent.core.state import State
    from gridctl.cli import views
    from gridctl.cli.backends.base import ExperimentStatus, RunStatus

    def run(name: str, *costs: float | None) -> RunStatus:
        experiments = tuple(
            ExperimentStatus(f"{name}-exp{i}", name, State.SUCCEEDED, {}, (), cost=cost)
            for i, cost in enumerate(costs)
        )
        return RunStatus(name, "aws", 0.0, None, 1, "grid_search", experiments)

    known, unknown = run("known", 0.25, 0.5), run("unknown", 0.25, None)
    assert (known.cost, unknown.cost) == (0.75, None)
    report = views.cost_json([known, unknown], None)
    assert [r["cost"] for r in report["runs"]] == [0.75, None]
    assert [e["cost"] for e in report["runs"][1]["experiments"]] == [0.25, None]
    assert report["total"]["cost"] is None
    assert views.cost_json([known], None)["total"]["cost"] == 0.75
    assert views.run_json(unknown, with_experiments=False)["cost"] is None
    assert views.money(None) == "?"
