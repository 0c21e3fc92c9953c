"""Spot interruptions end to end on AWS: the real gridctl, real Terraform, moto and
simulated nodes. A notice, a node that dies with no notice and ``gridctl interrupt`` each
end an attempt; the group's replacement instance resumes the experiment from what the
bucket holds, and the run succeeds."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import psutil
import pytest
from conftest import Gridctl
from scripts import RESUMABLE_EXAMPLE, RESUMED, SLOW_FIRST_ATTEMPT, steps_logged

from gridctl.agent.core.contract import SPOT, run_key
from gridctl.agent.core.cost import charge_cost

from .cloud import client, first_bucket, groups, running_instances
from .nodes import NODE_ACCESS_KEY, Node, NodeSimulator
from .policy import allowed, authorizations, signed_by, signer
from .test_aws_cost import charges_of
from .test_node_role import node_policy

pytestmark = pytest.mark.e2e

STEPS = 300


def first_node(nodes: NodeSimulator, experiment: str) -> Node:
    return nodes.wait_for(lambda seen: next((n for n in seen if n.experiment == experiment), None))


def kill_with_no_notice(node: Node) -> None:
    """The machine dies at once: the agent and the script, no signal to save."""
    family = [psutil.Process(node.process.pid), *node.family.values()]
    for process in family:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue


def test_interrupted_experiments_resume_on_a_replacement_instance(
    cloud: Gridctl, aws_env, ami, project: Path, tmp_path: Path, nodes: NodeSimulator, moto_server
):
    nodes.env.update(
        GRIDCTL_SYNC_INTERVAL="1",
        GRIDCTL_HEARTBEAT_INTERVAL="1",
        GRIDCTL_LOG_INTERVAL="1",
        GRIDCTL_SPOT_INTERVAL="0.5",
    )
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    shutil.copy(RESUMABLE_EXAMPLE, project / "example.py")
    (project / "train.py").write_text(SLOW_FIRST_ATTEMPT)
    moto_server.record()
    run = cloud(
        "run",
        "--name",
        "spot",
        "--use_spot",
        "--auto_resume",
        "train.py",
        "--steps",
        str(STEPS),
        "--step-seconds",
        "0.1",
        "--lr",
        "[0.5, 0.25, 0.125]",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    spot, lost, asked = (first_node(nodes, f"spot-exp{i}") for i in range(3))
    for i in range(3):
        cloud.wait_until(lambda i=i: steps_logged(cloud, f"spot-exp{i}") >= 25, 120)

    # exp2: gridctl interrupt drives the same path through the bucket, and the node ends
    # its own instance without lowering its group's capacity. It goes first: it returns at
    # once, while waiting for exp0's node below may take long enough on a loaded machine
    # for exp2 to finish before its node looks for the request.
    sent = cloud("interrupt", "spot-exp2", "--window", "30")
    assert sent.returncode == 0, sent.stderr
    # exp0: a real spot notice from the instance's metadata service. The agent SIGTERMs
    # the script, which saves; then AWS reclaims the instance and the group replaces it.
    spot.imds.notify_spot_interruption(seconds_ahead=60)
    nodes.wait_for(lambda _: spot.returncode is not None, timeout=60)
    assert spot.returncode == 0
    nodes.terminate_instance(spot.instance_id)
    # exp1: the machine dies with no notice; the last periodic sync is what survives.
    kill_with_no_notice(lost)
    nodes.terminate_instance(lost.instance_id)

    cloud.wait_until(lambda: cloud.status("spot")["status"] not in ("queued", "running"), 300)
    status = cloud.status("spot")
    assert status["status"] == "succeeded", nodes.describe()
    experiments = {e["name"]: e for e in status["experiments"]}
    reasons = {
        "spot-exp0": "spot interruption notice (terminate at ",
        "spot-exp1": "the node running it stopped reporting",
        "spot-exp2": "interrupted by gridctl interrupt",
    }
    for name, reason in reasons.items():
        experiment = experiments[name]
        assert experiment["resumes"] == 1, name
        first, second = experiment["attempts"]
        assert first["status"] == "interrupted" and first["reason"].startswith(reason), name
        assert second["status"] == "succeeded", name
        assert first["instance"] != second["instance"] == experiment["instance"], name
        # Resumed from a checkpoint restored from the bucket, not from step zero.
        assert int(RESUMED.search(cloud("logs", name).stdout).group(1)) >= 10, name
    dest = tmp_path / "artifacts"
    assert cloud("artifacts", "spot", "--dest", str(dest)).returncode == 0
    for i, lr in enumerate([0.5, 0.25, 0.125]):
        result = json.loads((dest / f"spot-exp{i}" / "out" / "result.json").read_text())
        assert (result["steps"], result["resumes"]) == (STEPS, 1)
        assert result["loss"] == pytest.approx((1 + lr) ** -STEPS)  # each step counted once
    # The notice reached the script as a file too.
    assert "SIGTERM: saved step" in cloud("logs", "spot-exp0").stdout

    # Each attempt was charged on its own instance at the spot price of its zone (moto's
    # placeholder), the one killed with no word until its last beat; the cost sums both.
    ledger = charges_of(aws_env, "spot")
    s3, bucket = client(aws_env, "s3"), first_bucket(aws_env)
    types = json.loads(s3.get_object(Bucket=bucket, Key=run_key("spot"))["Body"].read())[
        "instance_types"
    ]
    for name, experiment in experiments.items():
        charges = sorted(ledger[name], key=lambda c: c.attempt)
        assert [c.attempt for c in charges] == [0, 1], name
        assert [c.instance for c in charges] == [a["instance"] for a in experiment["attempts"]]
        for charge in charges:
            assert charge.instance_type in types, charge
            assert (charge.market, charge.price_source) == (SPOT, "spot price history"), charge
            assert charge.price_per_hour == pytest.approx(0.00001), charge
        assert (charges[0].ended_at is None) == (name == "spot-exp1"), name
        assert charges[1].ended_at is not None, name
        parts = [charge_cost(c, charges[1].ended_at) for c in charges]
        assert experiment["cost"] == pytest.approx(sum(parts), abs=1e-6), name
    # The spot price lookups are the node role's to make.
    policy = node_policy(aws_env)
    lookups = [
        call
        for entry in signed_by(moto_server.recorded(), NODE_ACCESS_KEY)
        if (signer(entry) or ("", ""))[1] == "ec2"
        for call in authorizations(entry, {}, {})
    ]
    assert len(lookups) >= 6 and all(allowed(policy, call) for call in lookups), lookups

    # Every group ends at zero and no instance is left running.
    nodes.wait_for(lambda seen: all(n.returncode is not None for n in seen), timeout=60)
    assert groups(aws_env) == {f"gridctl-default-spot-exp{i}": 0 for i in range(3)}
    assert running_instances(aws_env) == []
