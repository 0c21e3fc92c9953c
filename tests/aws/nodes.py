"""Simulated EC2 nodes: whatever instance moto says is running gets a metadata service and
a real agent process on this machine, and loses them when moto stops reporting it, so
end-to-end tests exercise the node contract (SPEC sections 6-7) without a cloud."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import boto3
import psutil

from .imds import MetadataService

REGION = "us-east-1"
EXPERIMENT_TAG = "gridctl:experiment"
LIVE_STATES = ("pending", "running")
AGENT_COMMAND = (sys.executable, "-m", "gridctl.agent", "node")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
NODE_ACCESS_KEY = "ASIAGRIDCTLNODEROLE"
"""The agents' key (an instance role's, on AWS): their requests are told apart from the
user's (the CLI's) and the simulator's own by it."""
NODE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": NODE_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "testing"}
INTERVALS = {
    "GRIDCTL_HEARTBEAT_INTERVAL": "10",
    "GRIDCTL_LOG_INTERVAL": "5",
    "GRIDCTL_CONTROL_INTERVAL": "2",
    "GRIDCTL_BUDGET_INTERVAL": "2",
}
"""Simulated agents look at the bucket more often than real ones, whose defaults are chosen
for the S3 request bill, so that tests do not wait on them; a test's own env wins."""

T = TypeVar("T")


def loopback(index: int) -> str:
    """The ``index``-th simulated node's own address: 127.0.0.2, 127.0.0.3, ... (Linux
    answers on all of 127/8), so a gang's nodes reach each other by address."""
    return f"127.0.{(index + 2) // 256}.{(index + 2) % 256}"


@dataclass
class Node:
    """One simulated instance: its metadata service, its filesystem root and its agent."""

    instance_id: str
    tags: dict[str, str]
    imds: MetadataService
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    started_at: float
    ended_at: float | None = None
    """When moto stopped reporting the instance pending/running (the machine went away)."""
    returncode: int | None = None
    """The agent's exit status once it has exited (negative: killed by that signal)."""
    kill_at: float | None = field(default=None, repr=False)
    """When the grace after SIGTERM runs out (monotonic clock)."""
    family: dict[int, psutil.Process] = field(default_factory=dict, repr=False)
    """Every descendant of the agent seen so far, killed with it like a real shutdown."""

    @property
    def experiment(self) -> str | None:
        return self.tags.get(EXPERIMENT_TAG)

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class NodeSimulator:
    """Polls moto for tagged instances and runs one agent per live instance.

    The agent runs as a process group of its own, with env pointing boto3 at moto and
    the metadata service at its own IMDS. When the instance leaves pending/running the
    agent gets SIGTERM, then SIGKILL after `grace` seconds, as on a real shutdown.
    """

    def __init__(
        self,
        moto_url: str,
        base: Path,
        command: Sequence[str] = AGENT_COMMAND,
        env: Mapping[str, str] | None = None,
        *,
        grace: float = 5.0,
        poll_interval: float = 0.5,
    ) -> None:
        self.moto_url = moto_url
        self.base = Path(base)
        self.command = list(command)
        self.env = dict(os.environ if env is None else env)
        self.grace = grace
        self.poll_interval = poll_interval
        self.errors: list[str] = []
        self._ec2 = boto3.client(
            "ec2",
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self._autoscaling = boto3.client(
            "autoscaling",
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self._nodes: dict[str, Node] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> NodeSimulator:
        if self._thread is None:
            self.base.mkdir(parents=True, exist_ok=True)
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="node-simulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """End every agent (SIGTERM, then SIGKILL after the grace) and every server."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        with self._lock:
            nodes = list(self._nodes.values())
        now = time.monotonic()
        for node in nodes:
            if node.returncode is None:
                self._signal(node, signal.SIGTERM)
                node.kill_at = now + self.grace
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.0, (node.kill_at or now) - time.monotonic()))
            self._finish(node)

    def __enter__(self) -> NodeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def nodes(self) -> list[Node]:
        """Every node seen so far, oldest first."""
        with self._lock:
            return sorted(self._nodes.values(), key=lambda n: n.started_at)

    def node_for(self, experiment: str) -> Node | None:
        """The newest node of an experiment (after a replacement, the replacement)."""
        matching = [n for n in self.nodes() if n.experiment == experiment]
        return matching[-1] if matching else None

    def wait_for(self, predicate: Callable[[list[Node]], T], timeout: float = 30) -> T:
        """Poll `predicate(nodes)` until it is truthy and return its value; on timeout,
        raise with each node's agent log so the failure explains itself."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self.nodes())
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout} s\n{self.describe()}")
            time.sleep(0.1)

    def terminate_instance(self, instance_id: str) -> None:
        """Terminate an instance in moto, like a spot reclaim (its group replaces it)."""
        self._ec2.terminate_instances(InstanceIds=[instance_id])

    def describe(self) -> str:
        """Every node's state and agent log tail, and any polling errors: for failures."""
        lines = [f"poll errors: {self.errors[-3:]}"] if self.errors else []
        for node in self.nodes():
            lines.append(
                f"--- {node.instance_id} {node.experiment} ended_at={node.ended_at} "
                f"returncode={node.returncode}\n{node.read_log()[-2000:]}"
            )
        return "\n".join(lines)

    # The polling thread.

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sync()
            except Exception as error:  # keep polling: a test reports via wait_for
                self.errors.append(repr(error))
            self._stopping.wait(self.poll_interval)

    def _sync(self) -> None:
        pages = self._ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag-key", "Values": [EXPERIMENT_TAG]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )
        live = {
            instance["InstanceId"]: instance
            for page in pages
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        }
        for instance_id, description in live.items():
            if instance_id not in self._nodes and not self._stopping.is_set():
                self._launch(description)
        now = time.monotonic()
        for node in self.nodes():
            if node.returncode is not None and node.ended_at is not None:
                continue
            self._track_family(node)
            if node.ended_at is None and node.instance_id not in live:
                node.ended_at = time.time()
                node.kill_at = now + self.grace
                self._signal(node, signal.SIGTERM)
            exited = node.process.poll() is not None
            if node.ended_at is not None and (exited or now >= (node.kill_at or now)):
                self._finish(node)
            elif exited:
                node.returncode = node.process.returncode

    def _launch(self, description: dict) -> None:
        instance_id = description["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in description.get("Tags", [])}
        attribute = self._ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="userData"
        )
        encoded = attribute.get("UserData", {}).get("Value")
        launched_type = self._launched_type(description, tags)
        if not launched_type:
            return  # moto tags a new instance one tag at a time: look again next poll
        imds = MetadataService(
            instance_id,
            instance_type=launched_type,
            region=REGION,
            availability_zone=description["Placement"]["AvailabilityZone"],
            ami_id=description["ImageId"],
            tags=tags,
            user_data=base64.b64decode(encoded) if encoded else None,
            local_ipv4=loopback(len(self._nodes)),
        ).start()
        root = self.base / instance_id
        root.mkdir(parents=True, exist_ok=True)
        log = root / "agent.log"
        env = {
            **INTERVALS,
            **self.env,
            **NODE_CREDENTIALS,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
            "GRIDCTL_NODE_ROOT": str(root),
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
        try:
            with log.open("ab") as out:
                process = subprocess.Popen(
                    self.command,
                    cwd=root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except BaseException:
            imds.stop()
            raise
        with self._lock:
            self._nodes[instance_id] = Node(
                instance_id, tags, imds, root, process, log, started_at=time.time()
            )

    def _launched_type(self, description: dict, tags: dict[str, str]) -> str:
        """The type AWS launches for the instance's group: a spot group's launch template
        names none, and its mixed instances policy the types, of which AWS launches one;
        moto describes it with an empty type there instead. Empty while the instance is
        seen before its group's tag is."""
        group = tags.get("aws:autoscaling:groupName")
        if group is None:
            return description["InstanceType"]
        found = self._autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        policies = [g.get("MixedInstancesPolicy") for g in found["AutoScalingGroups"]]
        overrides = [
            o["InstanceType"]
            for policy in policies
            if policy
            for o in policy["LaunchTemplate"].get("Overrides", [])
            if "InstanceType" in o
        ]
        return overrides[0] if overrides else description["InstanceType"]

    # Ending agents without leaving anything behind.

    def _track_family(self, node: Node) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(node.process.pid).children(recursive=True):
                node.family.setdefault(child.pid, child)

    def _signal(self, node: Node, signum: int) -> None:
        """Signal the agent's process group (its scripts may have groups of their own)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.process.pid, signum)

    def _finish(self, node: Node) -> None:
        """The machine is gone: kill whatever of the agent is left, stop its IMDS."""
        self._track_family(node)
        self._signal(node, signal.SIGKILL)
        for member in node.family.values():
            with contextlib.suppress(psutil.Error):
                member.kill()
        returncode = node.process.wait()
        node.imds.stop()
        node.returncode = returncode  # last: tests wait on it to see the node fully ended
