"""How a node agent is configured: its root, its intervals, where each experiment's files go."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.gang import GANG_TIMEOUT, MASTER_PORT
from gridctl.agent.runner.experiment import RunnerSettings, Workspace
from gridctl.agent.runner.scratch import Disks


class NodeError(RuntimeError):
    """This node cannot start its experiment; the message says why."""


@dataclass(frozen=True)
class NodeSettings:
    root: Path
    runner: RunnerSettings
    # Each look at the bucket is a billed request; these defaults cost at most 840 requests
    # per experiment-hour (README, "Before your first real run"). Spot notices come from
    # the metadata service, which is free, and keep their one-second interval.
    heartbeat_interval: float = 30.0
    """Seconds between status writes that tell the CLI the agent lives (one PUT each)."""
    log_interval: float = 10.0
    """Seconds between log uploads while the log grows (one PUT each)."""
    control_interval: float = 10.0
    """Seconds between looks for ``gridctl stop``/``interrupt`` requests (one LIST each)."""
    spot_interval: float = 1.0
    endpoint_url: str | None = None
    tags_timeout: float = 180.0
    """Seconds to wait for the instance's tags to show in IMDS, which lags behind a boot."""
    gang_timeout: float = GANG_TIMEOUT
    """Seconds a gang's nodes wait for each other before the attempt fails."""
    gang_interval: float = 1.0
    """Seconds between a gang node's looks at its attempt's folder (one LIST each): how soon
    a peer's failure or interruption reaches every node."""
    master_port: int = MASTER_PORT
    """The port rank 0 offers the gang (``MASTER_PORT``)."""
    budget_interval: float = 60.0
    """Seconds between looks at the run's ledger when it has a budget (``--max_cost``): one
    LIST and a GET per open charge each, and how far past the cap a run may go."""

    @classmethod
    def from_env(cls, runner: RunnerSettings) -> NodeSettings:
        env = os.environ
        return cls(
            root=Path(env.get("GRIDCTL_NODE_ROOT") or "/"),
            runner=runner,
            heartbeat_interval=float(env.get("GRIDCTL_HEARTBEAT_INTERVAL", cls.heartbeat_interval)),
            log_interval=float(env.get("GRIDCTL_LOG_INTERVAL", cls.log_interval)),
            control_interval=float(env.get("GRIDCTL_CONTROL_INTERVAL", cls.control_interval)),
            spot_interval=float(env.get("GRIDCTL_SPOT_INTERVAL", cls.spot_interval)),
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            tags_timeout=float(env.get("GRIDCTL_TAGS_TIMEOUT", cls.tags_timeout)),
            gang_timeout=float(env.get("GRIDCTL_GANG_TIMEOUT", cls.gang_timeout)),
            gang_interval=float(env.get("GRIDCTL_GANG_INTERVAL", cls.gang_interval)),
            master_port=int(env.get("GRIDCTL_MASTER_PORT", cls.master_port)),
            budget_interval=float(env.get("GRIDCTL_BUDGET_INTERVAL", cls.budget_interval)),
        )

    def workspace(self, experiment: str, disks: Disks | None = None) -> Workspace:
        """Every path under the node root, so several simulated nodes share a machine."""
        opt = self.root / "opt" / "gridctl"
        disks = disks or Disks()
        return Workspace(
            exec_dir=opt / "work" / experiment,
            scratch_dir=self.root / "scratch" / experiment,
            log_path=opt / "logs" / f"{experiment}.log",
            bundle_cache=opt / "cache",
            notice_file=opt / "notices" / f"{experiment}.json",
            mount_root=self.root,
            datastore_cache=disks.datastore_cache(opt / "datastores"),
            scratch_disk=disks.scratch_disk is not None,
        )

    @property
    def docker_config(self) -> Path:
        """The node's docker logins (ECR tokens), the agent's alone."""
        return self.root / "opt" / "gridctl" / "docker"

    @property
    def instance_store(self) -> Path:
        """Where the instance store is mounted when the instance has one."""
        return self.root / "opt" / "gridctl" / "instance-store"
