"""Datastores and scratch space end to end on AWS: the real gridctl, real Terraform, moto
and simulated nodes that download, verify and mount the version read-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Gridctl
from scripts import DATASTORE_READER as READER

from .cloud import client, first_bucket, groups
from .nodes import NodeSimulator

pytestmark = pytest.mark.e2e


def launch_disks(aws_env, template_name: str) -> dict[str, dict]:
    """The EBS settings of the latest version of a launch template, by device name."""
    ec2 = client(aws_env, "ec2")
    template = ec2.describe_launch_templates(LaunchTemplateNames=[template_name])
    version = ec2.describe_launch_template_versions(
        LaunchTemplateId=template["LaunchTemplates"][0]["LaunchTemplateId"], Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    return {m["DeviceName"]: m["Ebs"] for m in version["BlockDeviceMappings"]}


def test_datastores_and_scratch_on_aws(
    cloud: Gridctl, aws_env, ami, project: Path, tmp_path: Path, nodes: NodeSimulator
):
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    source = tmp_path / "data"
    (source / "shards").mkdir(parents=True)
    for i in range(5):
        (source / "shards" / f"{i}.txt").write_text(f"shard {i}\n" * 100)
    first = cloud.json("datastore", "create", "corpus", str(source))
    assert (first["version"], first["uploaded_files"]) == (1, 5)
    (source / "shards" / "0.txt").write_text("changed\n")
    second = cloud.json("datastore", "create", "corpus", str(source))
    assert (second["version"], second["uploaded_files"], second["files"]) == (2, 1, 5)
    (listed,) = cloud.json("datastore", "list")
    assert [(v["version"], v["status"]) for v in listed["versions"]] == [
        (1, "complete"),
        (2, "complete"),
    ]

    (project / "read.py").write_text(READER)
    run = cloud(
        "run",
        "--name",
        "reader",
        "--wait",
        "--datastore_name",
        "corpus",
        "--scratch_size",
        "1",
        "--disk_size",
        "20",
        "read.py",
        "--seed",
        "[1, 2]",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr + nodes.describe()
    assert "datastore corpus version 2 mounted read-only at /opt/datastore" in run.stderr
    dest = tmp_path / "artifacts"
    assert cloud("artifacts", "reader", "--dest", str(dest)).returncode == 0
    for i in range(2):
        seen = json.loads((dest / f"reader-exp{i}" / "out" / "seen.json").read_text())
        # On a (simulated) node every absolute path lives under GRIDCTL_NODE_ROOT; the
        # cache is on the scratch space, beside the experiments' own folders.
        assert seen["datastore_dir"].endswith("/scratch/.gridctl-datastores/corpus/v2")
        assert seen["files"]["shards/0.txt"] == "changed\n"
        assert seen["files"]["shards/4.txt"] == "shard 4\n" * 100
        assert len(seen["files"]) == 5
        assert seen["write"] == "refused"
        assert seen["scratch"].endswith(f"/scratch/reader-exp{i}")  # its own folder
    # The scratch volume is part of each machine's launch template, deleted with it, and
    # so is the root disk of the size asked for.
    disks = launch_disks(aws_env, "gridctl-default-reader-exp0")
    assert disks["/dev/sdf"]["VolumeSize"] == 1
    assert disks["/dev/sdf"]["VolumeType"] == "gp3"
    assert disks["/dev/sdf"]["Encrypted"] is True
    assert disks["/dev/sdf"]["DeleteOnTermination"] is True
    assert disks["/dev/sda1"]["VolumeSize"] == 20
    # A run recorded before --disk_size existed keeps the module's default when it changes.
    s3, bucket, key = client(aws_env, "s3"), first_bucket(aws_env), "runs/reader/run.json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    del record["disk_size"]
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())
    assert cloud("delete", "reader-exp1", timeout=600).returncode == 0
    assert launch_disks(aws_env, "gridctl-default-reader-exp0")["/dev/sda1"]["VolumeSize"] == 100

    # A version in use is not deleted unless forced.
    (project / "wait.py").write_text("import time\ntime.sleep(600)\n")
    assert (
        cloud(
            "run",
            "--name",
            "user",
            "--datastore_name",
            "corpus",
            "--datastore_version",
            "1",
            "wait.py",
            timeout=600,
        ).returncode
        == 0
    )
    refused = cloud("datastore", "delete", "corpus", "--version", "1")
    assert refused.returncode == 2
    assert "datastore corpus version 1 is in use by user-exp0" in refused.stderr
    assert cloud("stop", "user", timeout=300).returncode == 0
    deleted = cloud("datastore", "delete", "corpus", "--version", "1", "--output", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deleted_versions"] == [1]
    (listed,) = cloud.json("datastore", "list")
    assert [v["version"] for v in listed["versions"]] == [2]

    # Bad input starts nothing.
    unknown = cloud("run", "--name", "nope", "--datastore_name", "missing", "read.py")
    assert unknown.returncode == 2 and "unknown datastore 'missing'" in unknown.stderr
    assert "gridctl-default-nope-exp0" not in groups(aws_env)
