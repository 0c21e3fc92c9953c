"""The node harness itself: the IMDS stand-in behaves like IMDSv2, and the simulator starts
and ends agents exactly as moto's Auto Scaling starts and ends instances."""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import psutil
import pytest

from .imds import TOKEN_HEADER, TTL_HEADER, MetadataService
from .nodes import NodeSimulator

# A stand-in for `gridctl.agent node`: reads its identity over IMDSv2, then waits for the
# shutdown signal the way the real agent must.
DUMMY_AGENT = r"""
import json, os, signal, sys, time, urllib.request
base = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
root = os.environ["GRIDCTL_NODE_ROOT"]
def on_term(*_):
    open(os.path.join(root, "terminated"), "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
put = urllib.request.Request(
    base + "/latest/api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = urllib.request.urlopen(put).read().decode()
def get(path):
    request = urllib.request.Request(
        base + "/latest/" + path, headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(request).read().decode()
identity = {
    "instance_id": get("meta-data/instance-id"),
    "experiment": get("meta-data/tags/instance/gridctl:experiment"),
    "user_data": get("user-data"),
}
with open(os.path.join(root, "identity.tmp"), "w") as f:
    json.dump(identity, f)
os.replace(os.path.join(root, "identity.tmp"), os.path.join(root, "identity.json"))
while True:
    time.sleep(1)
"""

# An agent that ignores SIGTERM and leaves a grandchild in a session of its own.
STUBBORN_AGENT = r"""
import os, signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
open(os.path.join(os.environ["GRIDCTL_NODE_ROOT"], "child.pid"), "w").write(str(child.pid))
while True:
    time.sleep(1)
"""

USER_DATA = "#!/bin/bash\npython3 -m gridctl.agent node\n"


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None):
    """(status, body) without raising on HTTP errors."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def token(imds: MetadataService, ttl: int = 60) -> str:
    status, body = call(f"{imds.url}/latest/api/token", "PUT", {TTL_HEADER: str(ttl)})
    assert status == 200
    return body.decode()


def get(imds: MetadataService, path: str, tok: str) -> tuple[int, bytes]:
    return call(f"{imds.url}/latest/{path}", headers={TOKEN_HEADER: tok})


def test_tokens_are_required(metadata_service: MetadataService):
    url = metadata_service.url
    assert call(f"{url}/latest/meta-data/instance-id")[0] == 401
    assert call(f"{url}/latest/meta-data/instance-id", headers={TOKEN_HEADER: "forged"})[0] == 401
    assert call(f"{url}/latest/api/token", "PUT")[0] == 400
    for bad in ("0", "21601", "soon"):
        assert call(f"{url}/latest/api/token", "PUT", {TTL_HEADER: bad})[0] == 400
    forwarded = {TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.1"}
    assert call(f"{url}/latest/api/token", "PUT", forwarded)[0] == 403

    tok = token(metadata_service)
    assert get(metadata_service, "meta-data/instance-id", tok) == (200, b"i-0123456789abcdef0")
    assert get(metadata_service, "meta-data/no-such-thing", tok)[0] == 404
    assert get(metadata_service, "user-data", tok)[0] == 404
    assert metadata_service.count("/latest/meta-data/instance-id", token=False) == 2
    assert metadata_service.count("/latest/meta-data/instance-id", token=True) == 1


def test_tokens_expire(metadata_service: MetadataService):
    tok = token(metadata_service, ttl=1)
    assert get(metadata_service, "meta-data/ami-id", tok)[0] == 200
    time.sleep(1.2)
    assert get(metadata_service, "meta-data/ami-id", tok)[0] == 401


def test_identity_tags_and_user_data():
    imds = MetadataService(
        "i-0abc",
        instance_type="c5.large",
        availability_zone="us-east-1b",
        tags={"gridctl:run": "r1", "gridctl:experiment": "r1-exp0"},
        user_data=b"\x00binary",
    )
    with imds:
        tok = token(imds)
        assert get(imds, "meta-data/tags/instance", tok) == (
            200,
            b"gridctl:run\ngridctl:experiment",
        )
        assert get(imds, "meta-data/tags/instance/gridctl%3Aexperiment", tok) == (200, b"r1-exp0")
        assert get(imds, "meta-data/tags/instance/missing", tok)[0] == 404
        assert get(imds, "meta-data/placement/availability-zone", tok) == (200, b"us-east-1b")
        assert get(imds, "meta-data/placement/region", tok) == (200, b"us-east-1")
        assert get(imds, "user-data", tok) == (200, b"\x00binary")
        document = json.loads(get(imds, "dynamic/instance-identity/document", tok)[1])
        assert document["instanceId"] == "i-0abc"
        assert document["instanceType"] == "c5.large"
        assert document["accountId"] == "123456789012"
    assert not imds.running


def test_notices_appear_only_when_posted(metadata_service: MetadataService):
    tok = token(metadata_service)
    assert get(metadata_service, "meta-data/spot/instance-action", tok)[0] == 404
    assert get(metadata_service, "meta-data/events/recommendations/rebalance", tok)[0] == 404

    metadata_service.recommend_rebalance()
    status, body = get(metadata_service, "meta-data/events/recommendations/rebalance", tok)
    assert status == 200 and json.loads(body)["noticeTime"].endswith("Z")

    metadata_service.notify_spot_interruption(30)
    status, body = get(metadata_service, "meta-data/spot/instance-action", tok)
    notice = json.loads(body)
    assert status == 200 and notice["action"] == "terminate"
    when = datetime.strptime(notice["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(when - datetime.now(timezone.utc) - timedelta(seconds=30)) < timedelta(seconds=3)


# The simulator against moto's Auto Scaling.


@pytest.fixture
def aws(moto: str):
    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=moto,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client("ec2"), client("autoscaling")


def make_group(aws, name: str, experiment: str) -> None:
    """What the machine module creates: a launch template with user data and a group
    of one whose gridctl tags propagate to its instance."""
    ec2, autoscaling = aws
    template = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={
            "ImageId": "ami-12c6146b",
            "InstanceType": "t3.micro",
            "UserData": base64.b64encode(USER_DATA.encode()).decode(),
            "MetadataOptions": {"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
        },
    )["LaunchTemplate"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
        Tags=[
            {"Key": "gridctl:run", "Value": "r1", "PropagateAtLaunch": True},
            {"Key": "gridctl:experiment", "Value": experiment, "PropagateAtLaunch": True},
        ],
    )


def identity(root: Path) -> dict[str, str] | None:
    path = root / "identity.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def simulator(moto: str, aws_env: dict[str, str], tmp_path: Path):
    command = [sys.executable, "-c", DUMMY_AGENT]
    with NodeSimulator(moto, tmp_path, command, aws_env, grace=2) as sim:
        yield sim


def test_group_runs_one_agent_until_scaled_to_zero(simulator: NodeSimulator, aws):
    make_group(aws, "g-r1-exp0", "r1-exp0")
    node = simulator.wait_for(lambda _: simulator.node_for("r1-exp0"))
    seen = simulator.wait_for(lambda _: identity(node.root))
    assert seen == {
        "instance_id": node.instance_id,
        "experiment": "r1-exp0",
        "user_data": USER_DATA,
    }
    assert node.tags["aws:autoscaling:groupName"] == "g-r1-exp0"
    assert node.imds.count("/latest/user-data", token=True) == 1
    assert all(hit.token for hit in node.imds.hits if hit.method == "GET")
    time.sleep(1)  # a few more polls must not start a second agent
    assert simulator.nodes() == [node] and node.returncode is None

    aws[1].update_auto_scaling_group(AutoScalingGroupName="g-r1-exp0", DesiredCapacity=0)
    simulator.wait_for(lambda _: node.returncode is not None)
    assert node.returncode == 0 and node.ended_at is not None
    assert (node.root / "terminated").exists()
    assert not node.imds.running


def test_terminated_instance_is_replaced(simulator: NodeSimulator, aws):
    make_group(aws, "g-r1-exp1", "r1-exp1")
    first = simulator.wait_for(lambda _: simulator.node_for("r1-exp1"))
    simulator.wait_for(lambda _: identity(first.root))

    simulator.terminate_instance(first.instance_id)
    second = simulator.wait_for(lambda nodes: len(nodes) == 2 and nodes[1])
    assert second.experiment == "r1-exp1" and second.instance_id != first.instance_id
    assert simulator.wait_for(lambda _: identity(second.root))["instance_id"] == second.instance_id
    simulator.wait_for(lambda _: first.returncode is not None)
    assert (first.root / "terminated").exists() and second.returncode is None
    assert simulator.node_for("r1-exp1") is second


def test_stubborn_agent_and_its_descendants_are_killed(moto, aws_env, aws, tmp_path: Path):
    make_group(aws, "g-r1-exp2", "r1-exp2")
    command = [sys.executable, "-c", STUBBORN_AGENT]
    with NodeSimulator(moto, tmp_path, command, aws_env, grace=0.5) as sim:
        node = sim.wait_for(lambda nodes: nodes and nodes[0])
        pid_file = node.root / "child.pid"
        sim.wait_for(lambda _: pid_file.exists() and pid_file.read_text())
        child = psutil.Process(int(pid_file.read_text()))
        sim.wait_for(lambda _: child.pid in node.family)  # seen by a poll

        sim.terminate_instance(node.instance_id)
        sim.wait_for(lambda _: node.returncode is not None, timeout=10)
        assert node.returncode == -9
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


# moto's Auto Scaling, patched by motoserver.py to record launches as AWS does.


def test_scaling_activities_are_recorded_as_aws_records_them(aws):
    ec2, autoscaling = aws
    gone = ec2.copy_image(SourceImageId="ami-12c6146b", SourceRegion="us-east-1", Name="gone")
    ec2.deregister_image(ImageId=gone["ImageId"])
    for name, image in (("good", "ami-12c6146b"), ("bad", gone["ImageId"])):
        ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
        )
        # A launch that fails does not fail the call: the group is made, short of capacity.
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": name},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=1,
            AvailabilityZones=["us-east-1a"],
        )
    autoscaling.set_desired_capacity(AutoScalingGroupName="good", DesiredCapacity=2)

    def activities(group: str, **more) -> list[dict]:
        found = autoscaling.describe_scaling_activities(AutoScalingGroupName=group, **more)
        return found["Activities"]

    (failed,) = activities("bad")
    message = f"The image id '[{gone['ImageId']}]' does not exist. Launching EC2 instance failed."
    assert (failed["StatusCode"], failed["StatusMessage"]) == ("Failed", message)
    assert failed["Description"] == f"Launching a new EC2 instance.  Status Reason: {message}"
    assert "increasing the capacity from 0 to 1" in failed["Cause"]
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["bad"])
    assert found["AutoScalingGroups"][0]["Instances"] == []

    # Newest first, one per instance launched, MaxRecords honoured.
    instances = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["good"])
    launched = [i["InstanceId"] for i in instances["AutoScalingGroups"][0]["Instances"]]
    newest_first = [f"Launching a new EC2 instance: {i}" for i in reversed(launched)]
    assert [a["Description"] for a in activities("good")] == newest_first
    assert {a["StatusCode"] for a in activities("good")} == {"Successful"}
    assert [a["Description"] for a in activities("good", MaxRecords=1)] == newest_first[:1]

    # A deleted group's activities are gone unless asked for.
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName="bad", ForceDelete=True)
    assert activities("bad") == []
    assert len(activities("bad", IncludeDeletedGroups=True)) == 1
