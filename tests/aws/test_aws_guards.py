"""The guards end to end on AWS (SPEC section 11): the real gridctl, real Terraform, moto and
simulated nodes. ``--max_runtime`` stops a long script with its files kept; ``--max_cost``
stops a run once its ledger crosses the cap (the charge that crosses it is written here, as
a node writes its own)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import Gridctl
from scripts import UNTIL_TERM

from gridctl.agent.core.contract import Charge, ExperimentKeys, charge_key

from .cloud import client, first_bucket, groups
from .nodes import NodeSimulator

pytestmark = pytest.mark.e2e

SPENT = re.compile(r"^the run's budget of \$0\.01 was reached \(\$([\d.]+) spent\)$")


def ended(cloud: Gridctl, run: str) -> bool:
    return cloud.status(run)["status"] not in ("queued", "running")


def test_max_runtime_and_max_cost_stop_runs_on_aws(
    cloud: Gridctl, aws_env, ami, nodes: NodeSimulator, project: Path, tmp_path: Path
):
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    (project / "saves.py").write_text(UNTIL_TERM)
    capped = cloud("run", "--name", "capped", "--max_runtime", "5s", "saves.py", timeout=600)
    assert capped.returncode == 0, capped.stderr
    budget = cloud("run", "--name", "budget", "--max_cost", "0.01", "saves.py", timeout=600)
    assert budget.returncode == 0, budget.stderr
    s3, bucket = client(aws_env, "s3"), first_bucket(aws_env)

    def spec(run: str) -> dict:
        key = ExperimentKeys(run, f"{run}-exp0").spec
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    assert (spec("capped")["max_runtime"], spec("capped")["max_cost"]) == (5, None)
    assert (spec("budget")["max_runtime"], spec("budget")["max_cost"]) == (None, 0.01)

    cloud.wait_until(lambda: "tick 3" in cloud("logs", "budget-exp0").stdout, 300)
    now = time.time()
    crossing = Charge(
        experiment="budget-exp9", attempt=0, rank=0, instance="i-0earlier",
        instance_type="t2.medium", zone="us-east-1a", market="on-demand",
        price_per_hour=0.4428, price_source="price table",
        started_at=now - 200, seen_at=now - 100, ended_at=now - 100,
    )  # fmt: skip
    s3.put_object(
        Bucket=bucket, Key=charge_key("budget", "budget-exp9", 0, 0), Body=crossing.encode()
    )
    cloud.wait_until(lambda: ended(cloud, "capped") and ended(cloud, "budget"), 300)

    (runtime,) = cloud.status("capped")["experiments"]
    assert (runtime["status"], runtime["exit_code"]) == ("stopped", 0)
    assert runtime["reason"] == "ran longer than --max_runtime 5s"
    (spending,) = cloud.status("budget")["experiments"]
    assert (spending["status"], spending["exit_code"]) == ("stopped", 0)
    spent = SPENT.match(spending["reason"] or "")
    assert spent is not None, spending["reason"]
    assert float(spent.group(1)) >= 0.0123
    for run in ("capped", "budget"):
        assert cloud("logs", f"{run}-exp0").stdout.rstrip().endswith("got SIGTERM")
        kept = tmp_path / run
        assert cloud("artifacts", run, "--dest", str(kept)).returncode == 0
        assert (kept / f"{run}-exp0" / "terminated.txt").read_text() == "SIGTERM"
    nodes.wait_for(lambda seen: all(n.returncode is not None for n in seen), timeout=120)
    assert {g: n for g, n in groups(aws_env).items() if "capped" in g or "budget" in g} == {
        "gridctl-default-capped-exp0": 0,
        "gridctl-default-budget-exp0": 0,
    }
