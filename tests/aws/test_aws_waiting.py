"""Why an experiment waits on AWS: its group's latest scaling activity, when a launch failed.

moto records activities as AWS does (motoserver.py): here a group whose AMI was deregistered
after ``gridctl up`` fails its launch, and ``status`` shows AWS's message while the
experiment is queued."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from conftest import Gridctl

from .cloud import client, groups
from .emulator import REGION, free_port

pytestmark = pytest.mark.e2e


def activity_calls(entries: list[dict]) -> list[str]:
    """The groups whose scaling activities the recorded requests asked for."""
    asked = []
    for entry in entries:
        body = entry.get("body") or ""
        text = base64.b64decode(body).decode() if entry.get("body_encoded") else body
        params = dict(parse_qsl(text))
        if params.get("Action") == "DescribeScalingActivities":
            asked.append(params.get("AutoScalingGroupName", ""))
    return asked


def one_line(text: str) -> str:
    """A table's text with its wrapping undone."""
    return " ".join(text.split())


def test_status_shows_why_a_group_cannot_launch(
    cloud: Gridctl, aws_env, ami, project: Path, moto_server
):
    ec2 = client(aws_env, "ec2")
    own = ec2.copy_image(SourceImageId=ami, SourceRegion=REGION, Name="team-image")["ImageId"]
    assert cloud("up", "--ami", own, timeout=600).returncode == 0, "up failed"
    (project / "train.py").write_text("print('trained')\n")

    # While the AMI exists, the group launches (no node agent runs here: the experiment
    # stays queued) and its latest activity, a success, says nothing.
    fine = cloud("run", "--name", "fine", "train.py", timeout=600)
    assert fine.returncode == 0, fine.stderr
    assert cloud.experiment("fine", "fine-exp0")["reason"] is None

    # The AMI is deregistered: the next run's group cannot launch, and says why.
    ec2.deregister_image(ImageId=own)
    stuck = cloud("run", "--name", "stuck", "train.py", timeout=600)
    assert stuck.returncode == 0, stuck.stderr
    assert groups(aws_env)["gridctl-default-stuck-exp0"] == 1
    why = (
        f"waiting for an instance: The image id '[{own}]' does not exist."
        " Launching EC2 instance failed."
    )
    moto_server.record()
    experiment = cloud.experiment("stuck", "stuck-exp0")
    assert (experiment["status"], experiment["reason"]) == ("queued", why)
    assert activity_calls(moto_server.recorded()) == ["gridctl-default-stuck-exp0"]
    assert f"queued ({why})" in one_line(cloud("status", "stuck").stdout)
    assert f"queued ({why})" in one_line(cloud("status", "stuck-exp0").stdout)
    alone = cloud.json("status", "stuck-exp0")
    assert (alone["status"], alone["reason"]) == ("queued", why)
    assert cloud.experiment("fine", "fine-exp0")["reason"] is None

    # The list of runs shows no reasons, so it asks nothing.
    moto_server.record()
    assert {run["run"] for run in cloud.json("status")} == {"fine", "stuck"}
    assert activity_calls(moto_server.recorded()) == []

    # Auto Scaling out of reach: status still answers, without the activity.
    unreachable = {**cloud.env, "AWS_ENDPOINT_URL_AUTO_SCALING": f"https://127.0.0.1:{free_port()}"}
    shown = cloud("status", "stuck", "--output", "json", env=unreachable)
    assert shown.returncode == 0, shown.stderr
    (experiment,) = json.loads(shown.stdout)["experiments"]
    assert (experiment["status"], experiment["reason"]) == ("queued", None)

    # Stopped, it no longer waits: no reason, no call.
    assert cloud("stop", "stuck", timeout=300).returncode == 0
    moto_server.record()
    stopped = cloud.experiment("stuck", "stuck-exp0")
    assert stopped["status"] == "stopped" and "image id" not in str(stopped["reason"])
    assert activity_calls(moto_server.recorded()) == []
