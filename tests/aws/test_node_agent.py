"""The node agent, run for real (``python -m gridctl.agent node``) against moto and the
IMDSv2 stand-in, as user data starts it on an instance of an Auto Scaling group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from gridctl.agent import s3store
from gridctl.agent.s3store import S3Store
from gridctl.agent.spec import ExperimentSpec, MachineSpec
from gridctl.cli.bundle import scan, upload

from .imds import MetadataService

REGION = "us-east-1"
BUCKET = "gridctl-node-test"
RUN = "bold-fox"
EXPERIMENT = "bold-fox-exp0"
GROUP = "gridctl-bold-fox-exp0"
BASE = f"runs/{RUN}/{EXPERIMENT}"
MACHINE = MachineSpec(RUN, EXPERIMENT, (EXPERIMENT,), cpus=2, gpus=0, memory=4 << 30)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

TRAIN = """\
import os, sys
print("training with", " ".join(sys.argv[1:]))
os.makedirs("out", exist_ok=True)
with open("out/model.txt", "w") as f:
    f.write("weights")
print("scratch", os.environ["GRIDCTL_SCRATCH_DIR"])
"""
FOREVER = """\
import time
for step in range(600):
    print("step", step, flush=True)
    time.sleep(0.1)
"""


@dataclass
class Cloud:
    """One experiment's AWS side in moto: bucket, group of one instance, its IMDS."""

    moto: str
    store: S3Store
    autoscaling: Any
    instance_id: str
    imds: MetadataService
    root: Path
    ca_bundle: Path

    def deploy(
        self,
        files: dict[str, str],
        argv: tuple[str, ...],
        project: Path,
        machine: MachineSpec = MACHINE,
        gpus: int = 0,
    ) -> None:
        """What ``gridctl run --cloud aws`` leaves in the bucket: a bundle, the machine's
        spec and one spec per experiment (each with ``argv`` and its own ``--index``)."""
        for name, text in files.items():
            (project / name).write_text(text)
        bundle = scan(project)
        upload(bundle, self.store)
        self.store.put_bytes(machine.key, machine.to_json().encode())
        for index, name in enumerate(machine.experiments):
            command = argv + (("--index", str(index)) if len(machine.experiments) > 1 else ())
            spec = ExperimentSpec(RUN, name, index, command, bundle.key, {"lr": 0.1}, gpus=gpus)
            self.store.put_bytes(f"runs/{RUN}/{name}/spec.json", spec.to_json().encode())

    def status(self, experiment: str = EXPERIMENT) -> dict:
        return json.loads(self.store.get_bytes(f"runs/{RUN}/{experiment}/status.json"))

    def desired_capacity(self) -> int:
        (group,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ]
        return group["DesiredCapacity"]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIP_"))}
        return {
            **env,
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.url,
            "GRIDCTL_NODE_ROOT": str(self.root),
            "GRIDCTL_GRACE_PERIOD": "3",
            "GRIDCTL_HEARTBEAT_INTERVAL": "0.5",
            "GRIDCTL_LOG_INTERVAL": "0.5",
            **extra,
        }

    def agent(self, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "gridctl.agent", "node"],
            cwd=self.root,
            env=self.env(**extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run_agent(self, **extra: str) -> tuple[int, str]:
        proc = self.agent(**extra)
        output, _ = proc.communicate(timeout=30)
        return proc.returncode, output


@pytest.fixture
def cloud(moto: str, moto_tls: Path, tmp_path: Path, monkeypatch) -> Iterator[Cloud]:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(moto_tls))
    clients = {
        name: boto3.client(name, endpoint_url=moto, region_name=REGION)
        for name in ("s3", "ec2", "autoscaling")
    }
    clients["s3"].create_bucket(Bucket=BUCKET)
    clients["ec2"].create_launch_template(
        LaunchTemplateName=f"{GROUP}-template",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    tags = {
        "gridctl:environment": "default",
        "gridctl:run": RUN,
        "gridctl:experiment": EXPERIMENT,
        "gridctl:bucket": BUCKET,
        "Name": EXPERIMENT,
    }
    autoscaling = clients["autoscaling"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": f"{GROUP}-template", "Version": "$Latest"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
    )
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    instance_id = group["Instances"][0]["InstanceId"]
    (reservation,) = clients["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance_tags = {t["Key"]: t["Value"] for t in reservation["Instances"][0]["Tags"]}
    imds = MetadataService(instance_id, tags=instance_tags).start()
    root = tmp_path / "node"
    root.mkdir()
    store = S3Store(BUCKET, REGION, moto)
    yield Cloud(moto, store, autoscaling, instance_id, imds, root, moto_tls)
    imds.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


def wait_for(predicate: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def status_is(cloud: Cloud, wanted: str, experiment: str = EXPERIMENT) -> Callable[[], bool]:
    def check() -> bool:
        key = f"runs/{RUN}/{experiment}/status.json"
        return cloud.store.exists(key) and cloud.status(experiment)["status"] == wanted

    return check


def test_a_run_succeeds_keeps_its_files_and_scales_its_group_to_zero(cloud, project):
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py", "--lr", "0.1"), project)
    code, output = cloud.run_agent()
    assert code == 0, output
    status = cloud.status()
    assert status["status"] == "succeeded"
    assert status["exit_code"] == 0
    assert status["instance"] == cloud.instance_id
    assert status["reason"] is None
    assert status["started_at"] <= status["finished_at"] <= time.time()
    assert status["resumes"] == 0
    (attempt,) = status["attempts"]
    assert attempt["instance"] == cloud.instance_id
    assert attempt["status"] == "succeeded"
    assert list(cloud.store.list(f"{BASE}/artifacts")) == [f"{BASE}/artifacts/out/model.txt"]
    assert cloud.store.get_bytes(f"{BASE}/artifacts/out/model.txt") == b"weights"
    log = cloud.store.get_bytes(f"{BASE}/log").decode().splitlines()
    assert any(line.endswith("Z training with --lr 0.1") for line in log)
    assert all(line[:4].isdigit() and line[10] == "T" for line in log)
    scratch = next(line for line in log if " scratch " in line).split(" scratch ")[1]
    assert scratch == str(cloud.root / "scratch" / EXPERIMENT)
    assert (cloud.root / "opt" / "gridctl" / "work" / EXPERIMENT / "out" / "model.txt").exists()
    assert cloud.desired_capacity() == 0


def test_a_failing_script_fails_with_its_exit_code(cloud, project):
    script = "import sys\nprint('diverged')\nsys.exit(3)\n"
    cloud.deploy({"train.py": script}, ("python", "train.py"), project)
    code, output = cloud.run_agent()
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"], status["reason"]) == ("failed", 3, "exit code 3")
    assert "diverged" in cloud.store.get_bytes(f"{BASE}/log").decode()
    assert cloud.desired_capacity() == 0


def test_requirements_that_pip_cannot_install_fail_the_experiment(cloud, project):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{closed.getsockname()[1]}/simple"
    files = {"train.py": TRAIN, "requirements.txt": "gridctl-no-such-package==1.0\n"}
    cloud.deploy(files, ("python", "train.py"), project)
    code, output = cloud.run_agent(**_offline_pip(index))
    assert code == 0, output
    status = cloud.status()
    assert status["status"] == "failed"
    assert "pip install -r requirements.txt failed" in status["reason"]
    assert "gridctl-no-such-package" in status["reason"]
    log = cloud.store.get_bytes(f"{BASE}/log").decode()
    assert "gridctl: pip install -r requirements.txt" in log
    assert "training with" not in log
    assert cloud.desired_capacity() == 0


def test_a_stop_object_stops_the_run(cloud, project):
    cloud.deploy({"train.py": FOREVER}, ("python", "train.py"), project)
    agent = cloud.agent()
    try:
        wait_for(status_is(cloud, "running"))
        first_beat = cloud.status()["heartbeat_at"]
        wait_for(lambda: b"step 3" in _log(cloud))  # shipped while running
        wait_for(lambda: cloud.status()["heartbeat_at"] > first_beat)
        cloud.store.put_bytes(f"{BASE}/control/stop", b"")
        output, _ = agent.communicate(timeout=20)
    finally:
        agent.kill()
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["reason"]) == ("stopped", "stopped by user")
    assert status["exit_code"] == 128 + signal.SIGTERM
    assert cloud.desired_capacity() == 0


def test_sigterm_to_the_agent_records_an_interruption_and_keeps_the_group(cloud, project):
    cloud.deploy({"train.py": FOREVER}, ("python", "train.py"), project)
    agent = cloud.agent()
    try:
        wait_for(status_is(cloud, "running"))
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=20)
    finally:
        agent.kill()
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["reason"]) == ("interrupted", "instance terminated")
    assert status["attempts"][-1]["status"] == "interrupted"
    assert b"step 1" in _log(cloud)
    assert cloud.desired_capacity() == 1


def test_an_ended_experiment_is_not_run_again(cloud, project):
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project)
    ended = {"status": "succeeded", "exit_code": 0, "reason": None, "instance": "i-0old"}
    cloud.store.put_bytes(f"{BASE}/status.json", json.dumps(ended).encode())
    code, output = cloud.run_agent()
    assert code == 0, output
    assert cloud.status() == ended
    assert list(cloud.store.list(f"{BASE}/artifacts")) == []
    assert not (cloud.root / "opt" / "gridctl" / "work" / EXPERIMENT).exists()
    assert cloud.desired_capacity() == 0


def test_a_missing_spec_is_recorded_as_a_failure(cloud):
    cloud.store.put_bytes(MACHINE.key, MACHINE.to_json().encode())
    code, output = cloud.run_agent()
    assert code != 0
    assert "no experiment spec" in output
    status = cloud.status()
    assert status["status"] == "failed"
    assert "no experiment spec" in status["reason"]
    assert status["instance"] == cloud.instance_id
    assert cloud.desired_capacity() == 0


def test_a_node_without_a_machine_spec_says_so_and_scales_to_zero(cloud):
    code, output = cloud.run_agent()
    assert code == 1
    assert f"no machine spec at s3://{BUCKET}/runs/{RUN}/machines/{EXPERIMENT}.json" in output
    assert not cloud.store.exists(f"{BASE}/status.json")
    assert cloud.desired_capacity() == 0


SHARED = MachineSpec(
    RUN, f"{RUN}-machine0", tuple(f"{RUN}-exp{i}" for i in range(3)), 8, 4, 16 << 30
)
SHOW_GPUS = """\
import os, pathlib, sys, time
with open("gpus.txt", "w") as f:
    f.write(os.environ["CUDA_VISIBLE_DEVICES"])
# Every experiment's scratch dir has the same parent: wait there until all three run.
shared = pathlib.Path(os.environ["GRIDCTL_SCRATCH_DIR"]).parent
(shared / os.environ["GRIDCTL_EXPERIMENT"]).with_suffix(".ready").touch()
deadline = time.monotonic() + 30
while len(list(shared.glob("*.ready"))) < 3:
    if time.monotonic() > deadline:
        sys.exit("the other experiments never ran alongside")
    time.sleep(0.05)
"""


def test_experiments_sharing_a_machine_each_get_their_own_gpus(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    cloud.deploy({"train.py": SHOW_GPUS}, ("python", "train.py"), project, SHARED, gpus=1)
    code, output = cloud.run_agent()
    assert code == 0, output
    seen = {}
    for name in SHARED.experiments:
        status = cloud.status(name)
        assert (status["status"], status["instance"]) == ("succeeded", cloud.instance_id), name
        seen[name] = cloud.store.get_bytes(f"runs/{RUN}/{name}/artifacts/gpus.txt").decode()
    assert sorted(seen.values()) == ["0", "1", "2"]
    assert cloud.desired_capacity() == 0


def test_a_machine_installs_requirements_once_for_all_its_experiments(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{closed.getsockname()[1]}/simple"
    files = {"train.py": TRAIN, "requirements.txt": "gridctl-no-such-package==1.0\n"}
    cloud.deploy(files, ("python", "train.py"), project, SHARED, gpus=1)
    code, output = cloud.run_agent(**_offline_pip(index))
    assert code == 0, output
    installs = 0
    for name in SHARED.experiments:
        status = cloud.status(name)
        assert status["status"] == "failed"
        assert "gridctl-no-such-package" in status["reason"]
        installs += _log(cloud, name).count(b"gridctl: pip install -r requirements.txt")
    assert installs == 1
    assert cloud.desired_capacity() == 0


def test_stopping_one_experiment_leaves_its_machine_to_the_others(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    cloud.deploy({"train.py": FOREVER}, ("python", "train.py"), project, SHARED, gpus=1)
    first, second, third = SHARED.experiments
    agent = cloud.agent()
    try:
        wait_for(lambda: all(status_is(cloud, "running", e)() for e in SHARED.experiments))
        cloud.store.put_bytes(f"runs/{RUN}/{first}/control/stop", b"")
        wait_for(status_is(cloud, "stopped", first))
        assert cloud.status(second)["status"] == cloud.status(third)["status"] == "running"
        assert cloud.desired_capacity() == 1
        for name in (second, third):
            cloud.store.put_bytes(f"runs/{RUN}/{name}/control/stop", b"")
        output, _ = agent.communicate(timeout=20)
    finally:
        agent.kill()
    assert agent.returncode == 0, output
    assert [cloud.status(e)["status"] for e in SHARED.experiments] == ["stopped"] * 3
    assert cloud.desired_capacity() == 0


def _log(cloud: Cloud, experiment: str = EXPERIMENT) -> bytes:
    key = f"runs/{RUN}/{experiment}/log"
    return cloud.store.get_bytes(key) if cloud.store.exists(key) else b""


def _offline_pip(index: str) -> dict[str, str]:
    """pip pointed at a closed port, so it fails fast and installs nothing."""
    return {
        "PIP_INDEX_URL": index,
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }


# S3Store against the same moto server.


def test_the_store_round_trips_files_and_bytes(cloud, tmp_path):
    store = cloud.store
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(3000))
    sent: list[int] = []
    store.put_file("runs/r/e/artifacts/model.bin", source, progress=sent.append)
    assert sum(sent) == 3000
    assert store.exists("runs/r/e/artifacts/model.bin")
    store.get_file("runs/r/e/artifacts/model.bin", tmp_path / "back" / "model.bin")
    assert (tmp_path / "back" / "model.bin").read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "back").iterdir()] == ["model.bin"]
    store.put_bytes("runs/r/e/status.json", b"{}")
    assert store.get_bytes("runs/r/e/status.json") == b"{}"


def test_the_store_says_what_is_missing(cloud, tmp_path):
    assert not cloud.store.exists("runs/r/e/status.json")
    with pytest.raises(FileNotFoundError):
        cloud.store.get_bytes("runs/r/e/status.json")
    with pytest.raises(FileNotFoundError):
        cloud.store.get_file("runs/r/e/log", tmp_path / "log")
    assert not (tmp_path / "log").exists()
    with pytest.raises(ValueError):
        cloud.store.exists("runs/../secrets")


def test_the_store_lists_and_deletes_folders(cloud, monkeypatch):
    monkeypatch.setattr(s3store, "_DELETE_BATCH", 2)
    store = cloud.store
    for key in ("runs/a/x/log", "runs/a/x/artifacts/m", "runs/a/y/log", "runs/ab/x/log"):
        store.put_bytes(key, b"1")
    assert sorted(store.list("runs/a")) == ["runs/a/x/artifacts/m", "runs/a/x/log", "runs/a/y/log"]
    store.delete_prefix("runs/a/")
    assert list(store.list("runs")) == ["runs/ab/x/log"]
    store.delete_prefix("runs/ab/x/log")
    assert list(store.list("")) == []
