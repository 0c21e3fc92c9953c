"""The node's boot script (the machine module's user data), run for real with bash on a
simulated node: what only EC2 has is stood in for by shims on PATH (``aws`` through boto3
against moto, ``systemctl`` that starts units from their files; tests/aws/shims/) and the
IMDSv2 stand-in. The agent it installs is the real one, from the wheel in the bucket, into
a real venv of the system python3; pip installs its dependencies from a wheelhouse
prepared once per session (PIP_* variables the script does not set on EC2).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from conftest import Gridctl

from gridctl.agent.core.s3store import S3Store
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
from gridctl.agent.runner.experiment import KILL_MARGIN, RunnerSettings
from gridctl.agent.runner.notice import WINDOW
from gridctl.cli.bundle import scan, upload
from gridctl.infra import environment
from gridctl.infra.wheel import REQUIRES, AgentWheel, build_agent_wheel

from .imds import MetadataService
from .test_modules import render_user_data

REGION = "us-east-1"
BUCKET = "gridctl-boot-test"
RUN = "calm-owl"
EXPERIMENT = "calm-owl-exp0"
GROUP = "gridctl-calm-owl-exp0"
MACHINE = MachineSpec(RUN, EXPERIMENT, (EXPERIMENT,), cpus=2, gpus=0, memory=4 << 30)
SHIMS = Path(__file__).parent / "shims"
UNIT_NAMES = (
    "gridctl-agent.service",
    "gridctl-failed.service",
    "gridctl-lifetime.service",
    "gridctl-lifetime.timer",
)
BOOT_TIMEOUT = 300
"""Seconds the boot script gets (a venv and a pip install on a loaded machine)."""
AGENT_TIMEOUT = 120

TRAIN = """\
import os
print("HOME", os.environ["HOME"])
print("PATH", os.environ["PATH"])
os.makedirs("out", exist_ok=True)
open("out/model.txt", "w").write("weights")
print("trained", flush=True)
"""
FOREVER = """\
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for step in range(100000):
    print("step", step, flush=True)
    time.sleep(0.1)
"""


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """The agent's dependencies as wheels, fetched once (pip's own configuration decides
    from where), so that each boot's pip install works offline and fast."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), *REQUIRES],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return folder


@pytest.fixture(scope="session")
def agent_wheel() -> AgentWheel:
    return build_agent_wheel()


def system_python() -> str:
    """The node's python3: the system's, as on an AMI, without this venv's packages."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys._base_executable


@dataclass
class Node:
    """One instance of a group of one in moto, its disk (GRIDCTL_NODE_ROOT) and its IMDS."""

    moto: str
    ca_bundle: Path
    root: Path
    bin: Path
    imds: MetadataService
    store: S3Store
    autoscaling: Any
    wheel: AgentWheel
    wheelhouse: Path
    cli: Gridctl

    @property
    def boot_log(self) -> Path:
        return self.root / "var" / "log" / "gridctl-boot.log"

    @property
    def agent_log(self) -> Path:
        return self.root / "var" / "log" / "gridctl-agent.log"

    def unit(self, name: str) -> str:
        return (self.root / "etc" / "systemd" / "system" / name).read_text()

    def deploy(self, script: str, project: Path, *, wheel: bool = True) -> None:
        """What ``gridctl run --cloud aws`` leaves in the bucket."""
        (project / "train.py").write_text(script)
        bundle = scan(project)
        upload(bundle, self.store)
        if wheel:
            self.store.put_bytes(self.wheel.key, self.wheel.data)
        self.store.put_bytes(MACHINE.key, MACHINE.to_json().encode())
        spec = ExperimentSpec(RUN, EXPERIMENT, 0, ("python", "train.py"), bundle.key, {"lr": 0.1})
        self.store.put_bytes(f"runs/{RUN}/{EXPERIMENT}/spec.json", spec.to_json().encode())
        run = {
            "name": RUN,
            "backend": "aws",
            "created_at": time.time(),
            "description": None,
            "strategy": "grid_search",
            "seed": None,
            "bundle_id": bundle.bundle_id,
            "use_spot": False,
            "auto_resume": False,
            "scratch_size": None,
            "instance_types": ["t3.micro"],
            "agent_wheel_key": self.wheel.key,
            "experiments": [EXPERIMENT],
            "machines": {EXPERIMENT: [EXPERIMENT]},
        }
        self.store.put_bytes(f"runs/{RUN}/run.json", json.dumps(run).encode())

    def env(self, **extra: str) -> dict[str, str]:
        """What a node's boot has: root's PATH, no HOME, the seams pointed at the stand-ins."""
        return {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "GRIDCTL_NODE_ROOT": str(self.root),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.url,
            "AWS_ENDPOINT_URL": self.moto,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(self.wheelhouse),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "GRIDCTL_GRACE_PERIOD": "3",
            "GRIDCTL_HEARTBEAT_INTERVAL": "0.5",
            "GRIDCTL_LOG_INTERVAL": "0.5",
            **extra,
        }

    def boot(self, **extra: str) -> subprocess.CompletedProcess:
        user_data = self.root / "var" / "lib" / "cloud" / "part-001"
        user_data.parent.mkdir(parents=True, exist_ok=True)
        user_data.write_text(
            render_user_data(
                {
                    "bucket": BUCKET,
                    "region": REGION,
                    "agent_wheel_key": self.wheel.key,
                    "run": RUN,
                    "machine": EXPERIMENT,
                    "max_lifetime_hours": "168",
                }
            )
        )
        return subprocess.run(
            ["bash", str(user_data)],
            env=self.env(**extra),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT,
        )

    def systemctl(self, *args: str) -> subprocess.CompletedProcess:
        """What systemd would do on its own (a restart, a timer firing, OnFailure=)."""
        return subprocess.run(
            [str(self.bin / "systemctl"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT,
        )

    def calls(self, shim: str) -> list[list[str]]:
        log = self.root / "var" / "lib" / "shims" / f"{shim}.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def agent_pid(self) -> int | None:
        path = self.root / "run" / "shims" / "gridctl-agent.service.pid"
        return int(path.read_text()) if path.exists() else None

    def agent_ended(self) -> bool:
        pid = self.agent_pid()
        try:
            return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def status(self) -> dict | None:
        key = f"runs/{RUN}/{EXPERIMENT}/status.json"
        return json.loads(self.store.get_bytes(key)) if self.store.exists(key) else None

    def desired_capacity(self) -> int:
        (group,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ]
        return group["DesiredCapacity"]

    def shown(self) -> dict:
        """The experiment as the real ``gridctl status RUN`` shows it."""
        (experiment,) = self.cli.status(RUN)["experiments"]
        return experiment

    def explain(self) -> str:
        logs = [self.boot_log, self.agent_log]
        return "".join(f"\n--- {p}\n{p.read_text()[-3000:]}" for p in logs if p.exists())


def wait_for(node: Node, predicate: Callable[[], object], timeout: float = AGENT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time{node.explain()}")
        time.sleep(0.2)
    return found


@pytest.fixture
def node(moto, moto_tls, tmp_path, wheelhouse, agent_wheel, monkeypatch) -> Iterator[Node]:
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in {**credentials, "AWS_ENDPOINT_URL": moto}.items():
        monkeypatch.setenv(name, value)

    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=moto,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    client("s3").create_bucket(Bucket=BUCKET)
    client("ec2").create_launch_template(
        LaunchTemplateName=GROUP,
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    tags = {"gridctl:run": RUN, "gridctl:experiment": EXPERIMENT, "gridctl:bucket": BUCKET}
    autoscaling = client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": GROUP, "Version": "$Latest"},
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
    )
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    imds = MetadataService(group["Instances"][0]["InstanceId"], tags=tags).start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for shim in ("aws", "systemctl"):
        wrapper = bin_dir / shim
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SHIMS / shim}.py" "$@"\n')
        wrapper.chmod(0o755)
    (bin_dir / "python3").symlink_to(system_python())
    home = tmp_path / "home"
    home.mkdir()
    environment.save(home, environment.EnvironmentRecord("default", REGION, None, BUCKET))
    cli = Gridctl(home, tmp_path)
    cli.env.update(
        AWS_ENDPOINT_URL=moto,
        AWS_CA_BUNDLE=str(moto_tls),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    root = tmp_path / "node"
    root.mkdir()
    node = Node(
        moto,
        moto_tls,
        root,
        bin_dir,
        imds,
        S3Store(BUCKET, REGION, moto),
        autoscaling,
        agent_wheel,
        wheelhouse,
        cli,
    )
    try:
        yield node
    finally:
        for pid_file in (root / "run" / "shims").glob("*.pid"):
            with contextlib.suppress(psutil.Error, ValueError):
                process = psutil.Process(int(pid_file.read_text()))
                for member in [*process.children(recursive=True), process]:
                    member.kill()
        imds.stop()


def unit_settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_a_node_boots_installs_the_agent_and_runs_its_experiment(node: Node, project: Path):
    (node.root / "usr" / "local" / "cuda" / "bin").mkdir(parents=True)
    node.deploy(TRAIN, project)
    booted = node.boot()
    assert booted.returncode == 0, booted.stderr + node.explain()
    # Its output goes to cloud-init's log (stdout) and to the boot log.
    assert "gridctl-agent.service started" in booted.stdout
    assert "gridctl-agent.service started" in node.boot_log.read_text()

    # A venv of the system python3 with the agent from the bucket.
    venv = node.root / "opt" / "gridctl" / "venv"
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "show", "gridctl-agent"],
        capture_output=True,
        text=True,
        env=node.env(),
    )
    assert shown.returncode == 0, shown.stderr
    assert "+" in shown.stdout.split("Version: ")[1].split()[0]  # the content-hashed wheel
    assert ["s3", "cp", "--only-show-errors", f"s3://{BUCKET}/{node.wheel.key}"] == node.calls(
        "aws"
    )[0][:4]

    # Real unit files, installed and started; the lifetime timer armed before the agent.
    systemctl = node.calls("systemctl")
    assert systemctl == [
        ["daemon-reload"],
        ["start", "gridctl-lifetime.timer"],
        ["enable", "--now", "gridctl-agent.service"],
    ]
    agent = unit_settings(node.unit("gridctl-agent.service"))
    assert agent["ExecStart"] == [f"{venv}/bin/python -m gridctl.agent node"]
    assert agent["KillMode"] == ["mixed"]
    # The agent's stop: SIGTERM, its grace period and kill margin, then a final sync that
    # may take up to a spot notice's window.
    assert agent["TimeoutStopSec"] == [str(int(RunnerSettings.grace_period + KILL_MARGIN + WINDOW))]
    assert agent["Restart"] == ["on-failure"]
    assert agent["RestartSec"] == ["10"]
    assert (agent["StartLimitIntervalSec"], agent["StartLimitBurst"]) == (["600"], ["3"])
    assert agent["OnFailure"] == ["gridctl-failed.service"]
    assert agent["After"] == agent["Wants"] == ["network-online.target"]
    assert agent["StandardOutput"] == [f"append:{node.agent_log}"]
    environment_lines = dict(line.split("=", 1) for line in agent["Environment"])
    assert environment_lines["HOME"] == str(node.root / "root")
    assert environment_lines["PATH"].startswith(f"{node.root}/usr/local/cuda/bin:")
    assert environment_lines["AWS_DEFAULT_REGION"] == REGION
    timer = unit_settings(node.unit("gridctl-lifetime.timer"))
    assert timer["OnBootSec"] == ["168h"]
    handler = node.root / "opt" / "gridctl" / "bin" / "gridctl-boot"
    lifetime = unit_settings(node.unit("gridctl-lifetime.service"))
    assert lifetime["ExecStart"] == [
        f'{handler} fail "the node reached its maximum lifetime of 168 hours" {node.agent_log}'
    ]
    failed = unit_settings(node.unit("gridctl-failed.service"))
    assert failed["ExecStart"] == [f"{handler} agent-failed {node.agent_log}"]
    verify_units(node)

    # The agent runs the experiment to the end, with HOME and CUDA on the script's PATH.
    wait_for(node, lambda: node.shown()["status"] == "succeeded")
    wait_for(node, node.agent_ended)
    assert node.desired_capacity() == 0
    log = node.cli("logs", EXPERIMENT).stdout
    assert f"HOME {node.root / 'root'}" in log
    assert f"{node.root}/usr/local/cuda/bin" in log
    assert "trained" in log
    before = node.status()

    # systemd restarting the agent (Restart=on-failure) does not run it again.
    assert node.systemctl("start", "gridctl-agent.service").returncode == 0
    wait_for(node, node.agent_ended)
    assert f"{EXPERIMENT} has ended (succeeded): nothing to run" in node.agent_log.read_text()
    assert node.status() == before
    # Nor does the failure handler (OnFailure=) touch an experiment that has ended.
    assert node.systemctl("start", "gridctl-failed.service").returncode == 0
    assert node.status() == before
    assert "recorded failed: none" in node.boot_log.read_text()


def verify_units(node: Node) -> None:
    """``systemd-analyze verify`` where it runs without a running systemd."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    units = node.root / "etc" / "systemd" / "system"
    result = subprocess.run(
        [analyze, "verify", *(str(units / name) for name in UNIT_NAMES)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    ours = [line for line in result.stderr.splitlines() if "gridctl" in line]
    assert result.returncode == 0 and not ours, result.stderr


def broken_venv(node: Node) -> dict[str, str]:
    (node.root / "opt" / "gridctl").mkdir(parents=True)
    (node.root / "opt" / "gridctl" / "venv").write_text("in the way")
    return {}


def broken_pip(node: Node) -> dict[str, str]:
    empty = node.root / "empty-wheelhouse"
    empty.mkdir()
    return {"PIP_FIND_LINKS": str(empty)}


@pytest.mark.parametrize(
    ("breakage", "error"),
    [(broken_venv, "venv"), (broken_pip, "No matching distribution found for boto3")],
    ids=["venv-creation-fails", "pip-install-fails"],
)
def test_a_failed_boot_fails_the_experiment_with_the_boot_log_and_scales_to_zero(
    node: Node, project: Path, breakage, error: str
):
    node.deploy(TRAIN, project)
    booted = node.boot(**breakage(node))
    assert booted.returncode != 0, booted.stdout
    assert error in node.boot_log.read_text()
    # The agent's own record, written by its code run from the wheel by the system python3.
    shown = node.shown()
    assert shown["status"] == "failed", node.explain()
    assert shown["reason"].startswith("the node could not install the gridctl agent")
    assert "last lines of gridctl-boot.log:" in shown["reason"]
    assert error in shown["reason"]
    assert shown["instance"] == node.imds.instance_id
    # gridctl shows why, and the boot log as the experiment's log.
    table = node.cli("status", RUN)
    assert "failed (the node could not install the gridctl agent" in table.stdout
    assert error in node.cli("logs", EXPERIMENT).stdout
    assert node.desired_capacity() == 0
    assert [c[0] for c in node.calls("systemctl")] == ["daemon-reload", "start", "stop"]


def test_without_the_wheel_a_failed_boot_can_only_scale_to_zero(node: Node, project: Path):
    node.deploy(TRAIN, project, wheel=False)
    booted = node.boot()
    assert booted.returncode != 0
    log = node.boot_log.read_text()
    assert f'Key "{node.wheel.key}" does not exist' in log
    assert "no agent wheel on this node" in log
    assert node.desired_capacity() == 0
    assert node.shown()["status"] == "queued"


def test_the_maximum_lifetime_fails_what_runs_and_scales_to_zero(node: Node, project: Path):
    node.deploy(FOREVER, project)
    booted = node.boot()
    assert booted.returncode == 0, booted.stderr + node.explain()
    wait_for(node, lambda: "step 5" in node.cli("logs", EXPERIMENT).stdout)

    # OnFailure= while systemd restarts the agent (some versions fire it on every failure).
    assert node.systemctl("start", "gridctl-failed.service").returncode == 0
    assert node.shown()["status"] == "running" and not node.agent_ended()
    assert "gridctl-agent.service is active: systemd is restarting it" in node.boot_log.read_text()

    # What gridctl-lifetime.timer starts after max_lifetime_hours.
    fired = node.systemctl("start", "gridctl-lifetime.service")
    assert fired.returncode == 0, node.explain()
    assert node.agent_ended()
    shown = node.shown()
    assert shown["status"] == "failed"
    assert shown["reason"].startswith("the node reached its maximum lifetime of 168 hours")
    assert "last lines of gridctl-agent.log:" in shown["reason"]
    # The agent stopped first, so the script got its SIGTERM and the log stayed its own.
    log = node.cli("logs", EXPERIMENT).stdout
    assert "step 5" in log and "gridctl boot" not in log
    assert node.desired_capacity() == 0
