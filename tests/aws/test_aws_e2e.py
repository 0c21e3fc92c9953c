"""End to end on AWS: the real gridctl command, real Terraform, moto, simulated nodes."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from conftest import Gridctl

from .cloud import client, first_bucket, groups, keys_of, running_instances

pytestmark = pytest.mark.e2e

TRAIN = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()
os.makedirs("out", exist_ok=True)
json.dump({"lr": args.lr, "experiment": os.environ["GRIDCTL_EXPERIMENT"]},
          open("out/result.json", "w"))
print("trained", args.lr, flush=True)
"""

GPUS = """\
import os
os.makedirs("out", exist_ok=True)
open("out/gpus.txt", "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
"""

SLOW = """\
import signal, sys, time
def on_term(*_):
    open("terminated.txt", "w").write("SIGTERM")
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
for i in range(3000):
    print("tick", i, flush=True)
    time.sleep(0.1)
"""


def test_aws_lifecycle(cloud: Gridctl, aws_env, ami, project: Path, tmp_path: Path, nodes):
    # up twice: the second changes nothing and duplicates nothing.
    first = cloud("up", "--ami", ami, timeout=600)
    assert first.returncode == 0, first.stderr
    vpcs = client(aws_env, "ec2").describe_vpcs()["Vpcs"]
    buckets = client(aws_env, "s3").list_buckets()["Buckets"]
    again = cloud("up", "--ami", ami, timeout=600)
    assert again.returncode == 0, again.stderr
    assert client(aws_env, "ec2").describe_vpcs()["Vpcs"] == vpcs
    assert client(aws_env, "s3").list_buckets()["Buckets"] == buckets

    # A type the region does not offer (moto's us-east-1 has no p3) is refused up front.
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    refused = cloud("run", "--instance_type", "p3.2xlarge", "--gpus", "1", "train.py")
    assert refused.returncode == 2
    assert "not offered in us-east-1" in refused.stderr
    assert cloud.json("status") == []

    # A 2-experiment spot sweep succeeds with artifacts and logs from the bucket.
    run = cloud(
        "run",
        "--use_spot",
        "--name",
        "spot",
        "--wait",
        "--output",
        "json",
        "train.py",
        "--lr",
        "[0.1, 0.2]",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    final = json.loads(run.stdout)
    assert final["backend"] == "aws"
    assert [e["status"] for e in final["experiments"]] == ["succeeded", "succeeded"]
    assert all(e["instance"].startswith("i-") for e in final["experiments"])
    dest = tmp_path / "artifacts"
    assert cloud("artifacts", "spot", "--dest", str(dest)).returncode == 0
    for i, lr in enumerate([0.1, 0.2]):
        got = json.loads((dest / f"spot-exp{i}" / "out" / "result.json").read_text())
        assert got == {"lr": lr, "experiment": f"spot-exp{i}"}
    assert cloud("logs", "spot-exp1").stdout.rstrip().endswith("trained 0.2")
    # Every group ends at zero and no instance is left running.
    nodes.wait_for(lambda seen: all(n.returncode is not None for n in seen), timeout=60)
    assert groups(aws_env) == {"gridctl-default-spot-exp0": 0, "gridctl-default-spot-exp1": 0}
    assert running_instances(aws_env) == []

    # A teammate's fresh GRIDCTL_HOME joins the environment and sees the run.
    teammate = Gridctl(tmp_path / "teammate", project)
    teammate.env.update(aws_env)
    joined = teammate("up", timeout=600)
    assert joined.returncode == 0, joined.stderr
    assert [r["run"] for r in teammate.json("status")] == ["spot"]

    # Experiments asking for fewer GPUs than the type has share a machine (here two of four
    # T4s each: exp0 and exp1 on one instance, exp2 on another), each with its own GPUs.
    (project / "gpus.py").write_text(textwrap.dedent(GPUS))
    shared = cloud(
        "run",
        "--name",
        "shared",
        "--instance_type",
        "4_t4_16gb",
        "--gpus",
        "2",
        "--wait",
        "--output",
        "json",
        "gpus.py",
        "--trial",
        "[1, 2, 3]",
        timeout=600,
    )
    assert shared.returncode == 0, shared.stderr
    experiments = json.loads(shared.stdout)["experiments"]
    assert [e["status"] for e in experiments] == ["succeeded"] * 3
    exp0, exp1, exp2 = (e["instance"] for e in experiments)
    assert exp0 == exp1 != exp2
    nodes.wait_for(lambda seen: all(n.returncode is not None for n in seen), timeout=60)
    assert {g: n for g, n in groups(aws_env).items() if "shared" in g} == {
        "gridctl-default-shared-machine0": 0,
        "gridctl-default-shared-exp2": 0,
    }
    gpus = tmp_path / "gpus"
    assert cloud("artifacts", "shared", "--dest", str(gpus)).returncode == 0
    seen = [(gpus / f"shared-exp{i}" / "out" / "gpus.txt").read_text() for i in range(3)]
    assert seen == ["0,1", "2,3", "0,1"]

    # delete takes experiments too: a machine goes with its last experiment, the run stays.
    deleted = cloud("delete", "shared-exp1", "shared-exp2", timeout=600)
    assert deleted.returncode == 0, deleted.stderr
    assert [e["name"] for e in cloud.status("shared")["experiments"]] == ["shared-exp0"]
    assert {g for g in groups(aws_env) if "shared" in g} == {"gridctl-default-shared-machine0"}
    s3 = client(aws_env, "s3")
    bucket = first_bucket(aws_env)
    assert not [k for k in keys_of(s3, bucket) if "shared-exp1" in k or "shared-exp2" in k]
    assert cloud("delete", "shared", timeout=600).returncode == 0
    assert not [g for g in groups(aws_env) if "shared" in g]
    assert not [k for k in keys_of(s3, bucket) if "shared" in k]

    # stop mid-run scales to zero and shows stopped.
    (project / "slow.py").write_text(textwrap.dedent(SLOW))
    assert cloud("run", "--name", "slow", "slow.py", timeout=600).returncode == 0
    cloud.wait_until(lambda: cloud.experiment("slow", "slow-exp0")["status"] == "running", 120)
    # logs --follow streams from the bucket while the node runs, and ends with the experiment.
    follower = cloud.popen("logs", "slow-exp0", "--follow")
    assert "tick" in follower.stdout.readline()
    stopped = cloud("stop", "slow", "--output", "json", timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert [e["status"] for e in json.loads(stopped.stdout)] == ["stopped"]
    assert groups(aws_env)["gridctl-default-slow-exp0"] == 0
    rest, _ = follower.communicate(timeout=120)
    assert follower.returncode == 0
    assert rest.rstrip().endswith("got SIGTERM")
    kept = tmp_path / "kept"
    assert cloud("artifacts", "slow", "--dest", str(kept)).returncode == 0
    assert (kept / "slow-exp0" / "terminated.txt").read_text() == "SIGTERM"

    # delete removes the run's objects and resources.
    assert cloud("delete", "slow", timeout=600).returncode == 0
    assert "gridctl-default-slow-exp0" not in groups(aws_env)
    assert not [k for k in keys_of(s3, bucket) if "slow" in k]

    # Ctrl-C in the middle of provisioning leaves a run that delete cleans up.
    interrupted = cloud.popen("run", "--name", "cut", "train.py", start_new_session=True)
    cloud.wait_until(lambda: "runs/cut/run.json" in keys_of(s3, bucket), 60)
    time.sleep(2)  # inside terraform apply by now
    os.killpg(interrupted.pid, signal.SIGINT)
    interrupted.communicate(timeout=120)
    assert interrupted.returncode != 0
    assert cloud("delete", "cut", timeout=600).returncode == 0
    assert not [g for g in groups(aws_env) if "cut" in g]
    assert not [k for k in keys_of(s3, bucket) if "/cut/" in k]

    # A failed terraform apply marks the run failed with Terraform's own error and leaves
    # nothing running: here this machine's record points at a subnet that does not exist.
    settings_path = cloud.home / "settings.json"
    settings = json.loads(settings_path.read_text())
    broken = json.loads(json.dumps(settings))
    broken["aws"]["outputs"]["subnet_ids"] = ["subnet-00000000"]
    settings_path.write_text(json.dumps(broken))
    templates_before = client(aws_env, "ec2").describe_launch_templates()["LaunchTemplates"]
    failed = cloud("run", "--name", "broken", "train.py", timeout=600)
    settings_path.write_text(json.dumps(settings))
    assert failed.returncode == 1, failed.stderr
    assert "subnet-00000000" in failed.stderr and "Traceback" not in failed.stderr
    experiment = cloud.experiment("broken", "broken-exp0")
    assert experiment["status"] == "failed"
    assert "subnet-00000000" in experiment["reason"]
    assert not [g for g in groups(aws_env) if "broken" in g]
    after = client(aws_env, "ec2").describe_launch_templates()["LaunchTemplates"]
    assert after == templates_before
    assert running_instances(aws_env) == []
    assert cloud("delete", "broken", timeout=600).returncode == 0
    # Each deleted run's bundle went with it; the one run left keeps its own.
    assert len([k for k in keys_of(s3, bucket) if k.startswith("bundles/")]) == 1

    # down leaves no instance, group, template or bucket behind.
    down = cloud("down", "--yes", timeout=900)
    assert down.returncode == 0, down.stderr
    assert running_instances(aws_env) == []
    assert groups(aws_env) == {}
    templates = client(aws_env, "ec2").describe_launch_templates()["LaunchTemplates"]
    assert templates == []
    assert client(aws_env, "s3").list_buckets()["Buckets"] == []
