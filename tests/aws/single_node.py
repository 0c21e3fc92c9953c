"""The node agent's test harness: the real agent (``python -m gridctl.agent node``) on one
simulated instance of an Auto Scaling group of one in moto, with the IMDSv2 stand-in as its
metadata service, as user data starts it on an instance.

A replacement is the agent started again on a fresh node root, with the stand-in answering
for the instance the group launched instead, as a new instance would after a reclaim.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil

from gridctl.agent.core.s3store import S3Store
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
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
AGENT_TIMEOUT = 60
"""Seconds an agent gets to end by itself before a test gives up on it."""


@dataclass
class Cloud:
    """One experiment's AWS side in moto: bucket, group of one instance, its IMDS."""

    moto: str
    store: S3Store
    autoscaling: Any
    ec2: Any
    instance_id: str
    """The instance the group started with."""
    imds: MetadataService
    root: Path
    """The first node's root (GRIDCTL_NODE_ROOT); replacements get fresh ones."""
    ca_bundle: Path
    roots: list[Path] = field(default_factory=list)

    def deploy(
        self,
        files: dict[str, str],
        argv: tuple[str, ...],
        project: Path,
        machine: MachineSpec = MACHINE,
        gpus: int = 0,
        auto_resume: bool = False,
        image: str | None = None,
        max_runtime: float | None = None,
        max_cost: float | None = None,
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
            spec = ExperimentSpec(
                RUN,
                name,
                index,
                command,
                bundle.key,
                {"lr": 0.1},
                gpus=gpus,
                auto_resume=auto_resume,
                image=image,
                max_runtime=max_runtime,
                max_cost=max_cost,
            )
            self.store.put_bytes(f"runs/{RUN}/{name}/spec.json", spec.to_json().encode())

    def status(self, experiment: str = EXPERIMENT) -> dict:
        return json.loads(self.store.get_bytes(f"runs/{RUN}/{experiment}/status.json"))

    def artifact(self, path: str) -> bytes:
        return self.store.get_bytes(f"{BASE}/artifacts/{path}")

    def artifacts(self) -> list[str]:
        prefix = f"{BASE}/artifacts/"
        return sorted(key[len(prefix) :] for key in self.store.list(prefix))

    def group(self) -> dict:
        (group,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ]
        return group

    def desired_capacity(self) -> int:
        return self.group()["DesiredCapacity"]

    def instances(self) -> dict[str, str]:
        """The group's instances: id -> lifecycle state."""
        return {i["InstanceId"]: i["LifecycleState"] for i in self.group()["Instances"]}

    def instance_state(self, instance_id: str) -> str:
        (reservation,) = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservation["Instances"][0]["State"]["Name"]

    def replace_instance(self) -> str:
        """What AWS does with a reclaimed or lost instance: the group ends it and, its
        capacity unchanged, launches another; the stand-in then answers for that one."""
        self.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=self.imds.instance_id, ShouldDecrementDesiredCapacity=False
        )
        (replacement,) = self.instances()
        return self.boot(replacement)

    def boot(self, instance_id: str) -> str:
        """The stand-in becomes a new instance's metadata service: no notice on it yet."""
        self.imds.instance_id = instance_id
        self.imds.spot_action_time = self.imds.rebalance_time = None
        return instance_id

    def fresh_root(self) -> Path:
        """A new node's disk: nothing of the previous node's exec dir, cache or log."""
        root = self.root.with_name(f"{self.root.name}-{len(self.roots) + 1}")
        root.mkdir()
        self.roots.append(root)
        return root

    def env(self, root: Path | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIP_"))}
        return {
            **env,
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.url,
            "GRIDCTL_NODE_ROOT": str(root or self.root),
            "GRIDCTL_GRACE_PERIOD": "3",
            "GRIDCTL_HEARTBEAT_INTERVAL": "0.5",
            "GRIDCTL_LOG_INTERVAL": "0.5",
            "GRIDCTL_CONTROL_INTERVAL": "1",
            **extra,
        }

    def agent(self, root: Path | None = None, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "gridctl.agent", "node"],
            cwd=root or self.root,
            env=self.env(root, **extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run_agent(self, root: Path | None = None, **extra: str) -> tuple[int, str]:
        with started(self, root, **extra) as proc:
            output = ended(proc)
        return proc.returncode, output


@contextlib.contextmanager
def started(cloud: Cloud, root: Path | None = None, **extra: str) -> Iterator[subprocess.Popen]:
    """An agent in the background; whatever the test does, it and its scripts end with it."""
    agent = cloud.agent(root, **extra)
    try:
        yield agent
    finally:
        vanish(agent)


def ended(agent: subprocess.Popen[str], timeout: float = AGENT_TIMEOUT) -> str:
    """The agent's output once it has exited by itself."""
    output, _ = agent.communicate(timeout=timeout)
    return output


def vanish(agent: subprocess.Popen[str]) -> None:
    """The node dies with no notice: SIGKILL to the agent and to every script it started
    (each in its own process group)."""
    if agent.poll() is None:  # not reaped yet, so agent.pid is still the agent's
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(agent.pid).children(recursive=True)
            agent.kill()
            for child in children:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)  # a script leads its own group
                with contextlib.suppress(psutil.Error):
                    child.kill()
    agent.kill()
    if agent.stdout is not None and not agent.stdout.closed:
        agent.communicate()
    agent.wait()


def group_of(moto: str, bucket: str, run: str, experiment: str, nodes: int) -> dict[str, Any]:
    """The bucket, launch template and group of ``nodes`` instances that a run's apply
    makes for one machine, in moto; its s3, ec2 and autoscaling clients."""
    group = f"gridctl-{experiment}"
    clients = {
        name: boto3.client(name, endpoint_url=moto, region_name=REGION)
        for name in ("s3", "ec2", "autoscaling")
    }
    clients["s3"].create_bucket(Bucket=bucket)
    clients["ec2"].create_launch_template(
        LaunchTemplateName=f"{group}-template",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    tags = {
        "gridctl:environment": "default",
        "gridctl:run": run,
        "gridctl:experiment": experiment,
        "gridctl:bucket": bucket,
        "Name": experiment,
    }
    clients["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": f"{group}-template", "Version": "$Latest"},
        MinSize=0,  # as modules/machine makes it: the agent's SetDesiredCapacity(0) needs it
        MaxSize=nodes,
        DesiredCapacity=nodes,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
    )
    return clients


@contextlib.contextmanager
def one_node(moto: str, moto_tls: Path, tmp_path: Path, monkeypatch) -> Iterator[Cloud]:
    """A bucket, a launch template and a group of one instance in moto, and the instance's
    IMDS: what an agent on that instance finds before ``deploy`` puts a run in the bucket."""
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(moto_tls))
    clients = group_of(moto, BUCKET, RUN, EXPERIMENT, nodes=1)
    autoscaling = clients["autoscaling"]
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
    try:
        yield Cloud(
            moto=moto,
            store=store,
            autoscaling=autoscaling,
            ec2=clients["ec2"],
            instance_id=instance_id,
            imds=imds,
            root=root,
            ca_bundle=moto_tls,
        )
    finally:
        imds.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 30) -> None:
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


def logged(cloud: Cloud, text: str) -> Callable[[], bool]:
    return lambda: text.encode() in log_of(cloud)


def synced_step(cloud: Cloud) -> int:
    """The step of the checkpoint in the bucket, 0 while there is none."""
    key = f"{BASE}/artifacts/ckpt.txt"
    return int(cloud.store.get_bytes(key)) if cloud.store.exists(key) else 0


def log_of(cloud: Cloud, experiment: str = EXPERIMENT) -> bytes:
    """The experiment's log as the agent has shipped it so far."""
    key = f"runs/{RUN}/{experiment}/log"
    return cloud.store.get_bytes(key) if cloud.store.exists(key) else b""
