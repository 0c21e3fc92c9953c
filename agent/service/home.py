"""The layout of ``GRIDCTL_HOME``: where the local service keeps its registry, store, work
directories and logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.gang import node_name
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
    def venvs(self) -> Path:
        """The scripts' Python environments, one folder per key (``runner.venv``)."""
        return self.root / "venvs"

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

    def workspace(self, run: str, experiment: str, rank: int = 0) -> Workspace:
        """Rank R > 0 of a gang has its own exec dir, scratch dir, notice file and log, beside
        rank 0's (each is emptied on its own)."""
        own = node_name(experiment, rank)
        return Workspace(
            exec_dir=self.root / "work" / own,
            scratch_dir=self.root / "scratch" / own,
            log_path=self.store.path(ExperimentKeys(run, experiment).log_of(rank)),
            bundle_cache=self.root / "cache" / "bundles",
            notice_file=self.root / "notices" / f"{own}.json",
            mount_root=Path("/"),
            datastore_cache=self.datastore_cache,
        )
