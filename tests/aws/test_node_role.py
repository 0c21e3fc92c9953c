"""The node role grants exactly what nodes call. moto does not enforce IAM, so the policy
Terraform applied is checked as a document (tests/aws/policy.py) against every request the
real agents made in a run that covers their paths (datastore, artifacts, logs, a stop, an
interrupt and a resume), recorded by moto and told apart from the CLI's by their key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Gridctl
from scripts import RESUMABLE_EXAMPLE, steps_logged
from wheels import make_wheel

from gridctl.agent.core.contract import GROUP_TAG, machine_key
from gridctl.agent.core.state import ACTIVE_STATES
from gridctl.infra.environment import ENV_STATE_KEY, INPUTS_KEY, RUNS_STATE_KEY
from gridctl.infra.runs import state_key

from .cloud import client, first_bucket
from .nodes import NODE_ACCESS_KEY, NodeSimulator
from .policy import Authorization, Group, allowed, authorizations, grants, signed_by

pytestmark = pytest.mark.e2e

BOOT_SCRIPT_ONLY = {
    "s3:GetObject bucket/wheels/*": "the boot script downloads the agent wheel before any "
    "agent runs, and simulated nodes start the agent directly",
}
"""Grants no agent request uses, and why this test cannot see them used."""
IMAGE_PULL_ONLY = {
    "ecr:GetAuthorizationToken *": "only a run with an ECR --image logs in; the agent's "
    "login is tested in test_node_images.py",
    **{
        f"ecr:{action} arn:aws:ecr:*:123456789012:repository/*": "docker's pull of an ECR "
        "image, with the agent's token: no docker daemon here"
        for action in ("BatchCheckLayerAvailability", "BatchGetImage", "GetDownloadUrlForLayer")
    },
}
"""Grants only a run with an ECR ``--image`` uses, which this test's run is not."""
SPOT_ONLY = {
    "ec2:DescribeSpotPriceHistory *": "only a spot node reads its price, and this test's run "
    "is on-demand; test_aws_spot.py checks a spot node's calls against the role",
}
"""Grants only a ``--use_spot`` run uses."""


def node_policy(aws_env) -> dict:
    iam = client(aws_env, "iam")
    (role,) = [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("gridctl-")]
    (name,) = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
    assert isinstance(document, dict), document
    return document


def scaling_groups(aws_env) -> dict[str, Group]:
    found = client(aws_env, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {
        g["AutoScalingGroupName"]: Group(
            g["AutoScalingGroupARN"], {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        )
        for g in found
    }


def boot_script_calls(bucket_arn: str, run: str, machine: str, group: Group) -> list:
    """What the boot script calls (it cannot be recorded here: simulated nodes start the
    agent directly): the agent wheel; when it fails, the machine's spec, the experiment's
    status and log, and its group scaled to zero."""
    return [
        Authorization("s3:GetObject", f"{bucket_arn}/wheels/gridctl-0.1.0-py3-none-any.whl"),
        Authorization("s3:GetObject", f"{bucket_arn}/{machine_key(run, machine)}"),
        Authorization("s3:PutObject", f"{bucket_arn}/runs/{run}/{machine}/status.json"),
        Authorization("s3:PutObject", f"{bucket_arn}/runs/{run}/{machine}/log"),
        Authorization("autoscaling:DescribeAutoScalingInstances", "*"),
        Authorization("autoscaling:SetDesiredCapacity", group.arn, group.context),
    ]


def image_pull_calls(account: str) -> list[Authorization]:
    """What an ECR ``--image`` needs: the agent's token, and docker's pull with it."""
    repository = f"arn:aws:ecr:eu-west-1:{account}:repository/team/train"
    return [
        Authorization("ecr:GetAuthorizationToken", "*"),
        Authorization("ecr:BatchCheckLayerAvailability", repository),
        Authorization("ecr:BatchGetImage", repository),
        Authorization("ecr:GetDownloadUrlForLayer", repository),
    ]


def forbidden(bucket_arn: str, group: Group) -> list[Authorization]:
    """What no node may do: the environment's record and every Terraform state, writes
    outside runs/, listing the whole bucket, other environments' groups, resizing."""
    other = Group(
        group.arn.replace("autoScalingGroupName/", "autoScalingGroupName/x"),
        {**group.tags, "gridctl:environment": "another"},
    )
    secrets = [INPUTS_KEY, ENV_STATE_KEY, RUNS_STATE_KEY, state_key("run")]
    return [
        *(
            Authorization(a, f"{bucket_arn}/{k}")
            for k in secrets
            for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
        ),
        *(
            Authorization(a, f"{bucket_arn}/{k}")
            for k in (
                "wheels/gridctl-0.1.0-py3-none-any.whl",
                "bundles/b.tar.gz",
                "datastores/d/versions/1/manifest.json",
            )
            for a in ("s3:PutObject", "s3:DeleteObject")
        ),
        Authorization("s3:DeleteObject", f"{bucket_arn}/venvs/k/manifest.json"),
        Authorization("s3:ListBucket", bucket_arn),
        *(
            Authorization("s3:ListBucket", bucket_arn, {"s3:prefix": p})
            for p in ("", "gridctl/", "env:/", "wheels/", "bundles/")
        ),
        Authorization("s3:PutBucketPolicy", bucket_arn),
        Authorization("autoscaling:SetDesiredCapacity", other.arn, other.context),
        Authorization("autoscaling:TerminateInstanceInAutoScalingGroup", other.arn, other.context),
        Authorization("autoscaling:UpdateAutoScalingGroup", group.arn, group.context),
        Authorization("autoscaling:DescribeAutoScalingGroups", "*"),
        Authorization(
            "ec2:TerminateInstances",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
            {"ec2:ResourceTag/gridctl:environment": group.tags["gridctl:environment"]},
        ),
        Authorization("ec2:DescribeInstances", "*"),
        Authorization("ec2:DescribeTags", "*"),
        # Images: never a push, a listing, nor another account's repository.
        *(
            Authorization(f"ecr:{action}", "arn:aws:ecr:us-east-1:123456789012:repository/r")
            for action in ("PutImage", "InitiateLayerUpload", "DeleteRepository", "ListImages")
        ),
        Authorization("ecr:DescribeRepositories", "*"),
        Authorization("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:999999999999:repository/r"),
    ]


def test_node_role_grants_what_nodes_call_and_nothing_else(
    cloud: Gridctl,
    aws_env,
    ami,
    project: Path,
    tmp_path: Path,
    nodes: NodeSimulator,
    moto_server,
):
    nodes.env.update(
        GRIDCTL_SYNC_INTERVAL="1",
        GRIDCTL_HEARTBEAT_INTERVAL="1",
        GRIDCTL_LOG_INTERVAL="1",
        GRIDCTL_SPOT_INTERVAL="0.5",
    )
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    policy = node_policy(aws_env)
    data = tmp_path / "data"
    data.mkdir()
    (data / "shard.txt").write_text("shard\n")
    assert cloud.json("datastore", "create", "corpus", str(data))["version"] == 1
    shutil.copy(RESUMABLE_EXAMPLE, project / "train.py")
    # A venv for its script: one node builds and shares it (venvs/), the others restore it.
    wheel = make_wheel(project / "wheels", "gridctl_role", "NAME = 'role'\n")
    (project / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")

    # From here on, every request the agents make is recorded.
    moto_server.record()
    run = cloud(
        "run",
        "--name",
        "role",
        "--auto_resume",
        "--datastore_name",
        "corpus",
        "train.py",
        "--steps",
        "600",
        "--step-seconds",
        "0.1",
        "--lr",
        "[0.5, 0.25]",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    for name in ("role-exp0", "role-exp1"):
        cloud.wait_until(lambda name=name: steps_logged(cloud, name) >= 10, 120)
    # exp1: stopped through the bucket while it runs.
    assert cloud("stop", "role-exp1", timeout=300).returncode == 0
    # exp0: interrupted, its node ends its own instance, the replacement resumes it.
    assert cloud("interrupt", "role-exp0", "--window", "30").returncode == 0

    def resumed_and_ended() -> bool:
        experiment = cloud.experiment("role", "role-exp0")
        return experiment["resumes"] == 1 and experiment["status"] not in ACTIVE_STATES

    cloud.wait_until(resumed_and_ended, 300)
    experiments = {e["name"]: e for e in cloud.status("role")["experiments"]}
    assert experiments["role-exp0"]["status"] == "succeeded", nodes.describe()
    assert experiments["role-exp0"]["resumes"] == 1, nodes.describe()
    assert experiments["role-exp1"]["status"] == "stopped", nodes.describe()
    nodes.wait_for(lambda seen: len(seen) == 3 and all(n.returncode is not None for n in seen))

    groups = scaling_groups(aws_env)
    owners = {node.instance_id: node.tags[GROUP_TAG] for node in nodes.nodes()}
    requests = signed_by(moto_server.recorded(), NODE_ACCESS_KEY)
    calls = [auth for entry in requests for auth in authorizations(entry, groups, owners)]
    assert calls, "no request of the agents was recorded"

    # Every call an agent made is allowed.
    denied = [str(call) for call in calls if not allowed(policy, call)]
    assert not denied, "\n".join(denied)

    # Every grant is used by some call, or is one the boot script alone needs.
    bucket_arn = f"arn:aws:s3:::{first_bucket(aws_env)}"
    group = groups["gridctl-default-role-exp0"]
    boot = boot_script_calls(bucket_arn, "role", "role-exp0", group)
    assert all(allowed(policy, call) for call in boot), [str(c) for c in boot]

    def label(grant) -> str:
        prefix = f" s3:prefix {grant.prefix}" if grant.prefix is not None else ""
        return f"{grant.action} {grant.resource.replace(bucket_arn, 'bucket')}{prefix}"

    unused = {
        label(grant): statement
        for grant, statement in grants(policy)
        if not any(allowed(grant.policy(statement), call) for call in calls)
    }
    assert set(unused) == set(BOOT_SCRIPT_ONLY) | set(IMAGE_PULL_ONLY) | set(SPOT_ONLY), sorted(
        unused
    )
    pulls = image_pull_calls(group.arn.split(":")[4])
    for grant, statement in grants(policy):
        if label(grant) in BOOT_SCRIPT_ONLY:
            assert any(allowed(grant.policy(statement), call) for call in boot), label(grant)
        if label(grant) in IMAGE_PULL_ONLY:
            assert any(allowed(grant.policy(statement), call) for call in pulls), label(grant)
    assert all(allowed(policy, call) for call in pulls), [str(c) for c in pulls]

    # And what no node may do is denied.
    permitted = [str(auth) for auth in forbidden(bucket_arn, group) if allowed(policy, auth)]
    assert not permitted, "\n".join(permitted)


def test_a_denied_read_of_a_missing_key_is_a_missing_key(monkeypatch):
    """What the node role may meet on AWS (moto always answers 404): a 403 for a key that is
    missing, because its ListBucket is limited to prefixes. A listing of the key itself
    tells missing from denied; a key that is there, or one it may not list, stays denied."""
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    from gridctl.agent.core.s3store import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", NODE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3Store("gridctl-bucket", "us-east-1")
    key = "runs/r/e/status.json"
    listing = {"Bucket": "gridctl-bucket", "Prefix": key, "MaxKeys": 1}
    with Stubber(store.client) as stub:
        stub.add_client_error("head_object", "403", http_status_code=403)
        stub.add_response("list_objects_v2", {"KeyCount": 0}, listing)
        assert not store.exists(key)

        stub.add_client_error("get_object", "AccessDenied", http_status_code=403)
        stub.add_response("list_objects_v2", {"KeyCount": 0}, listing)
        with pytest.raises(FileNotFoundError):
            store.get_bytes(key)

        stub.add_client_error("get_object", "AccessDenied", http_status_code=403)
        stub.add_response("list_objects_v2", {"KeyCount": 1, "Contents": [{"Key": key}]}, listing)
        with pytest.raises(ClientError):
            store.get_bytes(key)

        stub.add_client_error("head_object", "403", http_status_code=403)
        stub.add_client_error("list_objects_v2", "AccessDenied", http_status_code=403)
        with pytest.raises(ClientError):
            store.exists(INPUTS_KEY)
        stub.assert_no_pending_responses()
