"""End to end on AWS: the real gridctl command, real Terraform, moto, simulated nodes.

The tests share one environment (``account``: ``gridctl up`` once per module and worker),
and each starts from it up with no runs: ``make test``'s ``--dist worksteal`` may hand
them to either worker, in any grouping, so none relies on another having run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import Gridctl
from gitrepos import Upstream
from gitservers import SmartHttp
from scripts import UNTIL_TERM

from .cloud import client, default_ami, first_bucket, groups, keys_of, running_instances, user
from .emulator import aws_environment
from .nodes import NodeSimulator

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


HOLDS = """\
import os, signal, sys, time
from pathlib import Path
resume = os.environ["GRIDCTL_RESUME_COUNT"]
print("version", Path("version.txt").read_text().strip(), os.environ["GRIDCTL_GIT_COMMIT"], resume)
if "--hold" in sys.argv and resume == "0":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        print("tick", flush=True)
        time.sleep(0.5)
"""
"""Holds its first attempt until interrupted; says which commit's files each attempt ran."""
TOKEN = "glpat-private-token-nobody-may-see"


@dataclass
class Account:
    """The emulated account this module's tests share, with gridctl's environment in it."""

    env: dict[str, str]
    nodes: NodeSimulator
    home: Path
    ami: str
    is_up: bool = False
    vpcs: tuple[dict, ...] = ()
    """The account's VPCs and buckets right after the environment came up."""
    buckets: tuple[dict, ...] = ()

    def up(self, cli: Gridctl) -> None:
        done = cli("up", "--ami", self.ami, timeout=600)
        assert done.returncode == 0, done.stderr
        self.is_up = True
        self.vpcs = tuple(client(self.env, "ec2").describe_vpcs()["Vpcs"])
        self.buckets = tuple(client(self.env, "s3").list_buckets()["Buckets"])


@pytest.fixture(scope="module")
def account(moto_server, terraform_cli, tmp_path_factory) -> Iterator[Account]:
    moto_server.reset()
    env = aws_environment(moto_server, terraform_cli, dict(os.environ))
    base = tmp_path_factory.mktemp("aws-e2e")
    (base / "project").mkdir()
    with NodeSimulator(moto_server.url, base / "nodes", env=env) as nodes:
        found = Account(env, nodes, base / "home", default_ami(env))
        found.up(user(env, found.home, base / "project"))
        yield found


@pytest.fixture
def cloud(account: Account, project: Path) -> Gridctl:
    """gridctl in the module's account, which is up with no runs: it is brought up again
    after the down test, and a failed test's runs are deleted."""
    cli = user(account.env, account.home, project)
    if not account.is_up:
        account.up(cli)
    leftover = [r["run"] for r in cli.json("status")]
    if leftover:
        assert cli("delete", *leftover, timeout=900).returncode == 0
    return cli


@pytest.fixture
def aws_env(account: Account) -> dict[str, str]:
    return account.env


@pytest.fixture
def nodes(account: Account) -> NodeSimulator:
    return account.nodes


def all_ended(nodes: NodeSimulator) -> None:
    nodes.wait_for(lambda seen: all(n.returncode is not None for n in seen), timeout=60)


def bundles(aws_env: dict[str, str]) -> list[str]:
    keys = keys_of(client(aws_env, "s3"), first_bucket(aws_env))
    return [k for k in keys if k.startswith("bundles/")]


def in_terraform_apply(pid: int) -> bool:
    """Whether ``terraform apply`` runs under the process: a Ctrl-C now lands mid-apply."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "apply" in child.cmdline() and "terraform" in child.name():
                    return True
    return False


def test_up_again_changes_nothing_and_duplicates_nothing(cloud, account, aws_env):
    again = cloud("up", "--ami", account.ami, timeout=600)
    assert again.returncode == 0, again.stderr
    assert tuple(client(aws_env, "ec2").describe_vpcs()["Vpcs"]) == account.vpcs
    assert tuple(client(aws_env, "s3").list_buckets()["Buckets"]) == account.buckets


def test_a_type_the_region_does_not_offer_is_refused_up_front(cloud, project):
    # moto's us-east-1 has no p3.
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    refused = cloud("run", "--instance_type", "p3.2xlarge", "--gpus", "1", "train.py")
    assert refused.returncode == 2
    assert "not offered in us-east-1" in refused.stderr
    assert cloud.json("status") == []


def test_a_spot_sweep_succeeds_with_artifacts_and_logs_and_a_teammate_sees_it(
    cloud, aws_env, nodes, project, tmp_path
):
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
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
    all_ended(nodes)
    assert groups(aws_env) == {"gridctl-default-spot-exp0": 0, "gridctl-default-spot-exp1": 0}
    assert running_instances(aws_env) == []

    # A teammate's fresh GRIDCTL_HOME joins the environment and sees the run.
    teammate = Gridctl(tmp_path / "teammate", project)
    teammate.env.update(aws_env)
    joined = teammate("up", timeout=600)
    assert joined.returncode == 0, joined.stderr
    assert [r["run"] for r in teammate.json("status")] == ["spot"]


def test_experiments_sharing_a_machine_get_their_own_gpus_and_go_one_by_one(
    cloud, aws_env, nodes, project, tmp_path
):
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
    all_ended(nodes)
    assert {g: n for g, n in groups(aws_env).items() if "shared" in g} == {
        "gridctl-default-shared-machine0": 0,
        "gridctl-default-shared-exp2": 0,
    }
    gpus = tmp_path / "gpus"
    assert cloud("artifacts", "shared", "--dest", str(gpus)).returncode == 0
    seen = [(gpus / f"shared-exp{i}" / "out" / "gpus.txt").read_text() for i in range(3)]
    assert seen == ["0,1", "2,3", "0,1"]

    # delete takes experiments too: a machine goes with its last experiment, the run stays
    # with its bundle.
    deleted = cloud("delete", "shared-exp1", "shared-exp2", timeout=600)
    assert deleted.returncode == 0, deleted.stderr
    assert [e["name"] for e in cloud.status("shared")["experiments"]] == ["shared-exp0"]
    assert {g for g in groups(aws_env) if "shared" in g} == {"gridctl-default-shared-machine0"}
    s3 = client(aws_env, "s3")
    bucket = first_bucket(aws_env)
    assert not [k for k in keys_of(s3, bucket) if "shared-exp1" in k or "shared-exp2" in k]
    assert len(bundles(aws_env)) == 1
    assert cloud("delete", "shared", timeout=600).returncode == 0
    assert not [g for g in groups(aws_env) if "shared" in g]
    assert not [k for k in keys_of(s3, bucket) if "shared" in k]


def test_stop_mid_run_scales_to_zero_and_delete_removes_the_run(cloud, aws_env, project, tmp_path):
    (project / "slow.py").write_text(UNTIL_TERM)
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
    s3 = client(aws_env, "s3")
    assert not [k for k in keys_of(s3, first_bucket(aws_env)) if "slow" in k]


def test_ctrl_c_during_provisioning_leaves_a_run_that_delete_cleans_up(cloud, aws_env, project):
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    s3 = client(aws_env, "s3")
    bucket = first_bucket(aws_env)
    interrupted = cloud.popen("run", "--name", "cut", "train.py", start_new_session=True)
    cloud.wait_until(lambda: "runs/cut/run.json" in keys_of(s3, bucket), 60)
    cloud.wait_until(lambda: in_terraform_apply(interrupted.pid), 120)
    os.killpg(interrupted.pid, signal.SIGINT)
    interrupted.communicate(timeout=120)
    assert interrupted.returncode != 0
    assert cloud("delete", "cut", timeout=600).returncode == 0
    assert not [g for g in groups(aws_env) if "cut" in g]
    assert not [k for k in keys_of(s3, bucket) if "/cut/" in k]


def test_a_failed_apply_marks_the_run_failed_and_leaves_nothing_running(cloud, aws_env, project):
    # Terraform's own error, here from this machine's record pointing at a subnet that does
    # not exist.
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    settings_path = cloud.home / "settings.json"
    settings = json.loads(settings_path.read_text())
    broken = json.loads(json.dumps(settings))
    broken["aws"]["outputs"]["subnet_ids"] = ["subnet-00000000"]
    settings_path.write_text(json.dumps(broken))
    templates_before = client(aws_env, "ec2").describe_launch_templates()["LaunchTemplates"]
    try:
        failed = cloud("run", "--name", "broken", "train.py", timeout=600)
    finally:
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
    # The deleted run's bundle went with it (the sharing test sees a run that stays keep its own).
    assert bundles(aws_env) == []


def test_down_leaves_no_instance_group_template_or_bucket_behind(cloud, account, aws_env):
    account.is_up = False  # whatever happens now, the next test needs an up
    down = cloud("down", "--yes", timeout=900)
    assert down.returncode == 0, down.stderr
    assert running_instances(aws_env) == []
    assert groups(aws_env) == {}
    templates = client(aws_env, "ec2").describe_launch_templates()["LaunchTemplates"]
    assert templates == []
    assert client(aws_env, "s3").list_buckets()["Buckets"] == []


def test_a_commit_of_a_private_repository_resumes_as_itself_and_no_token_is_kept(
    cloud,
    aws_env,
    upstream: Upstream,
):
    first = upstream.commit({"holds.py": HOLDS})
    s3 = client(aws_env, "s3")
    bucket = first_bucket(aws_env)
    with SmartHttp(upstream.bare.parent, "ada", TOKEN) as private:
        url = private.url(upstream.name)
        secret = url.replace("http://", f"http://ada:{TOKEN}@")
        run = cloud(
            "run", "--name", "fromgit", "--use_spot", "--auto_resume", "--git", f"{secret}@main",
            "holds.py", "--hold", timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        cloud.wait_until(lambda: "tick" in cloud("logs", "fromgit").stdout, 300)
        # The branch moves on; the interrupted experiment must still resume the commit it ran.
        upstream.commit({"version.txt": "2\n"})
        assert cloud("interrupt", "fromgit-exp0", "--window", "30").returncode == 0
        cloud.wait_until(
            lambda: cloud.status("fromgit")["status"] not in ("queued", "running"), 300
        )
        status = cloud.status("fromgit")
        assert status["status"] == "succeeded"
        assert status["experiments"][0]["resumes"] == 1
        assert status["source"] == {"git_url": url, "ref": "main", "commit": first, "dirty": False}
        assert f"version 1 {first} 1" in cloud("logs", "fromgit").stdout

        # The same commit again (by id) ships the bundle already in the bucket.
        (bundle,) = bundles(aws_env)
        uploaded = s3.head_object(Bucket=bucket, Key=bundle)["LastModified"]
        again = cloud("run", "--name", "again", "--wait", "--git", f"{secret}@{first[:10]}",
                      "holds.py", timeout=600)  # fmt: skip
        assert again.returncode == 0, again.stderr
    assert bundles(aws_env) == [bundle]
    assert s3.head_object(Bucket=bucket, Key=bundle)["LastModified"] == uploaded
    assert f"version 1 {first} 0" in cloud("logs", "again").stdout

    # No credential anywhere: output, this machine's GRIDCTL_HOME, every object in the bucket
    # (specs, logs, records, Terraform's state).
    shown = run.stdout + run.stderr + again.stdout + again.stderr
    assert TOKEN not in shown + cloud("status", "fromgit").stdout
    for path in cloud.home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path
    for key in keys_of(s3, bucket):
        assert TOKEN.encode() not in s3.get_object(Bucket=bucket, Key=key)["Body"].read(), key
