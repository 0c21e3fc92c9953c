"""Two homes on one AWS environment: `down` asks before deleting the team's work, and the
home whose environment a teammate destroyed keeps working locally and says so."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import GRIDCTL, Gridctl

from .cloud import client, first_bucket, keys_of

pytestmark = pytest.mark.e2e

TRAIN = "print('trained', flush=True)\n"


def answered(cli: Gridctl, answer: str, *args: str) -> subprocess.CompletedProcess:
    """``cli(*args)`` with a terminal on stdin, to which ``answer`` is typed."""
    main, terminal = pty.openpty()
    try:
        os.write(main, answer.encode())
        return subprocess.run(
            [GRIDCTL, *args],
            cwd=cli.cwd,
            env=cli.env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.close(main)
        os.close(terminal)


def notice_only(result: subprocess.CompletedProcess, name: str = "default") -> None:
    """stderr holds exactly one line about the destroyed environment, and no internal error."""
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "was destroyed" in line]
    assert len(lines) == 1, result.stderr
    assert f"AWS environment {name} was destroyed" in lines[0]
    assert "'gridctl up' recreates it" in lines[0]
    assert lines[0].endswith("'gridctl down' forgets it on this machine")


def test_a_teammates_down(cloud: Gridctl, aws_env, ami, project: Path, tmp_path: Path):
    up = cloud("up", "--ami", ami, timeout=600)
    assert up.returncode == 0, up.stderr
    # Without a terminal, up says what it does line by line (a CI log shows progress).
    steps = up.stderr.splitlines()
    assert "gridctl up: checking credentials, region and Terraform" in steps
    assert any(s.startswith("gridctl up: creating environment default") for s in steps)
    assert any(re.fullmatch(r"  \S*aws_s3_bucket\.\S+ created", s) for s in steps), up.stderr

    teammate = Gridctl(tmp_path / "teammate", project)
    teammate.env.update(aws_env)
    joined = teammate("up", timeout=600)
    assert joined.returncode == 0, joined.stderr

    # The team's work: a run on AWS (queued: no node picks it up), a datastore, and a run
    # on this machine only.
    (project / "train.py").write_text(TRAIN)
    assert cloud("run", "--name", "shared", "train.py", timeout=600).returncode == 0
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.txt").write_text("a\n" * 1000)
    assert cloud.json("datastore", "create", "corpus", str(source))["version"] == 1
    mine = cloud("run", "--cloud", "local", "--name", "mine", "--wait", "train.py")
    assert mine.returncode == 0, mine.stderr
    s3 = client(aws_env, "s3")
    bucket = first_bucket(aws_env)
    stored = sorted(keys_of(s3, bucket))

    # No terminal and no --yes: one line naming what would go, exit 2, nothing deleted.
    active = teammate("down", "--yes")
    assert active.returncode == 2 and "runs still active: shared" in active.stderr
    refused = teammate("down", "--force")
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.startswith("gridctl: error: gridctl down would delete environment default")
    assert "1 run, 1 datastore (1 version)" in line and "pass --yes" in line
    # On a terminal it lists the runs and datastores and asks; "n" deletes nothing.
    declined = answered(teammate, "n\n", "down", "--force")
    assert declined.returncode == 1, declined.stderr
    assert "  run shared: queued, 1 experiment" in declined.stdout.splitlines()
    assert "  datastore corpus: 1 version (1)" in declined.stdout.splitlines()
    assert "nothing deleted" in declined.stderr
    assert sorted(keys_of(s3, bucket)) == stored
    assert [r["run"] for r in cloud.json("status")] == ["shared", "mine"]
    assert [d["name"] for d in cloud.json("datastore", "list")] == ["corpus"]

    gone = teammate("down", "--force", "--yes", timeout=900)
    assert gone.returncode == 0, gone.stderr
    assert "  run shared: queued, 1 experiment" in gone.stdout.splitlines()
    assert "gridctl down: deleting run shared" in gone.stderr.splitlines()
    assert "gridctl down: destroying environment default" in gone.stderr.splitlines()
    assert s3.list_buckets()["Buckets"] == []

    # The other home: local runs listed and usable, one line about the environment.
    status = cloud("status", "--output", "json")
    assert status.returncode == 0, status.stderr
    assert [r["run"] for r in json.loads(status.stdout)] == ["mine"]
    notice_only(status)
    logs = cloud("logs", "mine-exp0")
    assert logs.returncode == 0 and logs.stdout.rstrip().endswith("trained")
    notice_only(logs)
    # A run bound for AWS is refused with that line, starting nothing.
    refused_run = cloud("run", "--name", "lost", "train.py")
    assert refused_run.returncode == 2
    assert refused_run.stderr.splitlines()[0].startswith("gridctl: error: AWS environment")
    notice_only(refused_run)
    again = cloud("run", "--cloud", "local", "--name", "again", "--wait", "train.py")
    assert again.returncode == 0, again.stderr
    notice_only(again)
    assert [r["run"] for r in cloud.json("status")] == ["mine", "again"]

    # A third home in the same situation forgets the environment with down, exit 0.
    third = Gridctl(tmp_path / "third", project)
    third.env.update(aws_env)
    third.home.mkdir()
    shutil.copy(cloud.home / "settings.json", third.home / "settings.json")
    shutil.copytree(cloud.home / "terraform", third.home / "terraform")
    forgot = third("down")
    assert forgot.returncode == 0, forgot.stderr
    assert "default was already destroyed; forgot it" in forgot.stdout
    assert json.loads((third.home / "settings.json").read_text()) == {"default_cloud": "local"}
    assert not (third.home / "terraform" / "default").exists()
    assert third.json("status") == []

    # And this one recreates it with up: AWS is its default again, and nothing is said.
    recreated = cloud("up", "--ami", ami, timeout=600)
    assert recreated.returncode == 0, recreated.stderr
    assert s3.list_buckets()["Buckets"][0]["Name"] == bucket
    after = cloud("status", "--output", "json")
    assert after.returncode == 0 and "destroyed" not in after.stderr
    assert [r["run"] for r in json.loads(after.stdout)] == ["mine", "again"]
    planned = cloud("run", "--dry-run", "train.py")
    assert planned.returncode == 0 and "1 experiment(s) on aws" in planned.stdout
    assert "destroyed" not in planned.stderr


def test_only_a_missing_bucket_is_a_destroyed_environment(aws_env, monkeypatch):
    from botocore.config import Config
    from botocore.exceptions import ClientError, EndpointConnectionError
    from botocore.stub import Stubber

    from gridctl.agent.core.s3store import BucketMissing, S3Store

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(name, aws_env[name])
    missing = S3Store("gridctl-nobody-here", "us-east-1")
    with pytest.raises(BucketMissing):
        missing.check_bucket()
    with pytest.raises(BucketMissing):
        missing.get_bytes("runs/x/run.json")
    with pytest.raises(BucketMissing):
        list(missing.list("runs"))
    with pytest.raises(BucketMissing):
        missing.put_bytes("a", b"a")

    client(aws_env, "s3").create_bucket(Bucket="gridctl-here")
    present = S3Store("gridctl-here", "us-east-1")
    present.check_bucket()
    with pytest.raises(FileNotFoundError):
        present.get_bytes("runs/x/run.json")
    present.put_bytes("a", b"abc")
    assert present.usage() == (1, 3)

    # Access denied is not "destroyed"; neither is an endpoint that does not answer.
    with Stubber(present.client) as stub:
        stub.add_client_error("head_bucket", "403", http_status_code=403)
        with pytest.raises(ClientError):
            present.check_bucket()
    import boto3

    present.client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(EndpointConnectionError):
        present.check_bucket()
