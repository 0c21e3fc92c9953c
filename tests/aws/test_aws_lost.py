"""A node whose agent is gone for good: the CLI takes a heartbeat silent for longer than
GRIDCTL_LOST_AFTER as a lost node, fails the experiment and scales its group to zero;
unless --auto_resume and EC2 no longer runs the instance, for then the group replaces it
and the replacement takes the experiment over."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Gridctl

from gridctl.agent.core.contract import StatusRecord
from gridctl.agent.core.state import LOST_REASON, Attempt, State

from .cloud import client, first_bucket, groups, running_instances
from .nodes import NodeSimulator
from .test_aws_spot import first_node, kill_with_no_notice

pytestmark = pytest.mark.e2e

SLOW = """\
import time
for i in range(100000):
    print("tick", i, flush=True)
    time.sleep(0.1)
"""


def group_instance(aws_env, group: str) -> str:
    found = client(aws_env, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group]
    )["AutoScalingGroups"]
    instances = found[0]["Instances"] if found else []
    return instances[0]["InstanceId"] if instances else ""


def test_a_silent_node_ends_its_experiment_unless_a_replacement_is_coming(
    cloud: Gridctl, aws_env, ami, project: Path, tmp_path: Path, moto: str
):
    cloud.env["GRIDCTL_LOST_AFTER"] = "15"
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    (project / "slow.py").write_text(SLOW)
    (project / "quick.py").write_text("print('done', flush=True)\n")

    # --auto_resume, and the instance reclaimed with no notice: its agent's last record
    # says running, an hour ago. No node agent runs yet, so nothing else touches it.
    run = cloud("run", "--name", "reclaimed", "--auto_resume", "quick.py", timeout=600)
    assert run.returncode == 0, run.stderr
    cloud.wait_until(lambda: group_instance(aws_env, "gridctl-default-reclaimed-exp0"), 60)
    instance = group_instance(aws_env, "gridctl-default-reclaimed-exp0")
    then = time.time() - 3600
    record = StatusRecord(
        status=State.RUNNING, instance=instance, started_at=then, heartbeat_at=then,
        attempts=(Attempt(instance, then),),
    )  # fmt: skip
    key = "runs/reclaimed/reclaimed-exp0/status.json"
    client(aws_env, "s3").put_object(Bucket=first_bucket(aws_env), Key=key, Body=record.to_json())
    client(aws_env, "ec2").terminate_instances(InstanceIds=[instance])
    waiting = cloud.experiment("reclaimed", "reclaimed-exp0")
    assert waiting["status"] == "running"
    assert waiting["reason"] == f"{instance} was lost: waiting for its replacement"
    assert groups(aws_env)["gridctl-default-reclaimed-exp0"] == 1

    nodes = NodeSimulator(moto, tmp_path / "nodes", env=aws_env)
    nodes.env.update(GRIDCTL_HEARTBEAT_INTERVAL="1", GRIDCTL_LOG_INTERVAL="1")
    with nodes:
        # The replacement takes the experiment over and finishes it.
        cloud.wait_until(lambda: cloud.status("reclaimed")["status"] == "succeeded", 300)
        assert cloud.experiment("reclaimed", "reclaimed-exp0")["resumes"] == 1

        # No --auto_resume: the agent dies mid-run while EC2 still runs its instance.
        run = cloud("run", "--name", "silent", "slow.py", timeout=600)
        assert run.returncode == 0, run.stderr
        node = first_node(nodes, "silent-exp0")
        cloud.wait_until(lambda: "tick 20" in cloud("logs", "silent-exp0").stdout, 180)
        kill_with_no_notice(node)
        cloud.wait_until(lambda: cloud.status("silent")["status"] != "running", 180)
        silent = cloud.experiment("silent", "silent-exp0")
        assert (silent["status"], silent["reason"]) == ("failed", LOST_REASON), nodes.describe()
        assert silent["attempts"][-1]["status"] == "failed"
        assert groups(aws_env)["gridctl-default-silent-exp0"] == 0
        # Reading it again changes nothing: the record is settled once.
        assert cloud.experiment("silent", "silent-exp0")["finished_at"] == silent["finished_at"]
        nodes.wait_for(lambda seen: all(n.returncode is not None for n in seen), timeout=120)
    assert running_instances(aws_env) == []
