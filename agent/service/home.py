"""The layout of ``GRIDCTL_HOME``: where the local service keeps its registry, store, work
directories and logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.store import LocalStore
from gridctl.agent.runner.experiment import Workspace


@dataclass(frozen=True)
class Home:
    """The layout of ``GRIDCTL_HOME``, shared by the CLI and the agent."""

    root: Path

    @property
    def registry(self) -> Path:
        return self.root / "registry.db"

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.root / "store")

    @property
    def lock(self) -> Path:
        return self.root / "agent.lock"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    @property
    def datastore_cache(self) -> Path:
        """Datastore versions materialized on this machine (``mounts/``)."""
        return self.root / "mounts"

    def workspace(self, run: str, experiment: str) -> Workspace:
        return Workspace(
            exec_dir=self.root / "work" / experiment,
            scratch_dir=self.root / "scratch" / experiment,
            log_path=self.store.path(ExperimentKeys(run, experiment).log),
            bundle_cache=self.root / "cache" / "bundles",
            notice_file=self.root / "notices" / f"{experiment}.json",
            mount_root=Path("/"),
            datastore_cache=self.datastore_cache,
        )
