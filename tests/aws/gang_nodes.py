"""A gang's test harness: the real agent (``python -m gridctl.agent node``) on each
simulated instance of an Auto Scaling group of K in moto, each with its own IMDSv2
stand-in, node root and loopback address (127.0.0.2, 127.0.0.3, ...), so that real
torch.distributed traffic flows between the simulated nodes as between instances.

The bucket gets what ``gridctl run --cloud aws --nodes K`` leaves there (a bundle, a
``MachineSpec(nodes=K)`` and the experiment's spec), written directly. A reclaim is AWS's:
the group ends the instance and, its capacity unchanged, launches another, which the test
boots with a fresh root and address.
"""

from __future__ import annotations

import contextlib
import json
import os
import site
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.s3store import S3Store
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
from gridctl.cli.bundle import scan, upload

from .imds import MetadataService
from .nodes import loopback
from .single_node import group_of, vanish

REGION = "us-east-1"
BUCKET = "gridctl-gang-test"
RUN = "two-owls"
EXPERIMENT = "two-owls-exp0"
GROUP = "gridctl-two-owls-exp0"
KEYS = ExperimentKeys(RUN, EXPERIMENT)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
TYPE = "t3.micro"
"""What the nodes' metadata services say they are."""
PRICE = 0.0104
"""The on-demand price the CLI gave the machine for it (USD/h)."""
AGENT_TIMEOUT = 180
"""Seconds an agent gets to end by itself before a test gives up on it (torch imports
are slow on a loaded 2-core machine)."""


@dataclass
class SimNode:
    """One simulated instance of the group: its metadata service, disk and agent."""

    instance_id: str
    imds: MetadataService
    root: Path
    agent: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.imds.local_ipv4

    @property
    def log(self) -> Path:
        return self.root / "agent.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ended(self, timeout: float = AGENT_TIMEOUT) -> int:
        """The agent's exit status once it has exited by itself."""
        assert self.agent is not None
        try:
            return self.agent.wait(timeout)
        except subprocess.TimeoutExpired:
            why = f"{self.instance_id}'s agent did not end:\n{self.output()}"
            raise AssertionError(why) from None


@dataclass
class Gang:
    """One gang experiment's AWS side in moto: bucket, group of K, and its nodes."""

    moto: str
    store: S3Store
    autoscaling: Any
    ec2: Any
    ca_bundle: Path
    base: Path
    nodes: list[SimNode] = field(default_factory=list)
    """Every node booted so far, in boot order."""

    def deploy(
        self,
        files: dict[str, str],
        argv: tuple[str, ...],
        project: Path,
        *,
        nodes: int = 2,
        framework: str | None = None,
        auto_resume: bool = False,
        max_runtime: float | None = None,
    ) -> None:
        for name, text in files.items():
            (project / name).write_text(text)
        bundle = scan(project)
        upload(bundle, self.store)
        machine = MachineSpec(
            RUN, EXPERIMENT, (EXPERIMENT,), 2, 0, 4 << 30, nodes=nodes, prices={TYPE: PRICE}
        )
        self.store.put_bytes(machine.key, machine.to_json().encode())
        spec = ExperimentSpec(
            RUN,
            EXPERIMENT,
            0,
            argv,
            bundle.key,
            auto_resume=auto_resume,
            nodes=nodes,
            framework=framework,
            max_runtime=max_runtime,
        )
        self.store.put_bytes(KEYS.spec, spec.to_json().encode())

    def instances(self) -> dict[str, str]:
        """The group's instances: id -> lifecycle state."""
        return {i["InstanceId"]: i["LifecycleState"] for i in self.group()["Instances"]}

    def group(self) -> dict:
        (group,) = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ]
        return group

    def desired_capacity(self) -> int:
        return self.group()["DesiredCapacity"]

    def boot(self, instance_id: str) -> SimNode:
        """A new instance's metadata service and disk, with the next loopback address."""
        (reservation,) = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        tags = {t["Key"]: t["Value"] for t in reservation["Instances"][0]["Tags"]}
        imds = MetadataService(
            instance_id, instance_type=TYPE, tags=tags, local_ipv4=loopback(len(self.nodes))
        )
        root = self.base / f"node-{len(self.nodes)}"
        root.mkdir(parents=True)
        framework_python(root)
        node = SimNode(instance_id, imds.start(), root)
        self.nodes.append(node)
        return node

    def start(self, node: SimNode, **extra: str) -> SimNode:
        """The node's agent, as its user data starts it."""
        with node.log.open("ab") as out:
            node.agent = subprocess.Popen(
                [sys.executable, "-m", "gridctl.agent", "node"],
                cwd=node.root,
                env=self.env(node, **extra),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return node

    def env(self, node: SimNode, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIP_"))}
        return {
            **env,
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": node.imds.url,
            "GRIDCTL_NODE_ROOT": str(node.root),
            "GRIDCTL_GRACE_PERIOD": "3",
            "GRIDCTL_HEARTBEAT_INTERVAL": "2",
            "GRIDCTL_LOG_INTERVAL": "0.5",
            "GRIDCTL_CONTROL_INTERVAL": "1",
            **extra,
        }

    def reclaim(self, node: SimNode) -> str:
        """What AWS does with a reclaimed instance: ends it and launches another in its
        group; returns the new instance's id."""
        before = set(self.instances())
        self.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=node.instance_id, ShouldDecrementDesiredCapacity=False
        )
        (replacement,) = set(self.instances()) - before
        return replacement

    def status(self) -> dict:
        return json.loads(self.store.get_bytes(KEYS.status))

    def has_status(self, wanted: str) -> Callable[[], bool]:
        return lambda: self.store.exists(KEYS.status) and self.status()["status"] == wanted

    def artifact(self, rank: int, path: str) -> bytes:
        return self.store.get_bytes(f"{KEYS.artifacts_of(rank)}/{path}")

    def log(self, rank: int) -> bytes:
        key = KEYS.log_of(rank)
        return self.store.get_bytes(key) if self.store.exists(key) else b""

    def vanish_all(self) -> None:
        for node in self.nodes:
            if node.agent is not None:
                vanish(node.agent)  # type: ignore[arg-type]
            node.imds.stop()


def framework_python(root: Path) -> None:
    """The Deep Learning AMI's ``/opt/pytorch`` under the node's root, which the node's
    scripts run on: a venv that sees the test interpreter's packages, torch among them."""
    framework = root / "opt" / "pytorch"
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", "--without-pip", str(framework)], check=True)
    (packages,) = framework.glob("lib/python3.*/site-packages")
    lines = [f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages()]
    (packages / "_test_framework.pth").write_text("".join(lines))


@contextlib.contextmanager
def gang_group(moto: str, ca_bundle: Path, base: Path, nodes: int = 2) -> Iterator[Gang]:
    """A bucket, a launch template and a group of ``nodes`` instances in moto, with
    boto3's credentials and endpoint in this process's environment (the caller's job);
    every agent started is ended (SIGKILL) on the way out."""
    clients = group_of(moto, BUCKET, RUN, EXPERIMENT, nodes)
    gang = Gang(
        moto=moto,
        store=S3Store(BUCKET, REGION, moto),
        autoscaling=clients["autoscaling"],
        ec2=clients["ec2"],
        ca_bundle=ca_bundle,
        base=base,
    )
    try:
        yield gang
    finally:
        gang.vanish_all()


def wait_for(predicate: Callable[[], object], timeout: float = 60, why: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time {why}")
        time.sleep(0.1)
