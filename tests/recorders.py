"""What tests that drive an ExperimentRunner directly give it: a stand-in for its Recorder
(the registry or the bucket) and a workspace below the test's folder."""

from __future__ import annotations

import threading
from pathlib import Path

from gridctl.agent.runner.experiment import Workspace


class Recorded:
    """The runner's Recorder: what it reported, and when the script started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.outcome: tuple[str, int | None, str | None] | None = None

    def running(self, pid: int, pid_started: float) -> None:
        self.started.set()

    def finished(self, status: str, exit_code: int | None, reason: str | None) -> None:
        self.outcome = (status, exit_code, reason)

    def phase(self, reason: str | None) -> None:
        """What a starting experiment is doing: no record to keep it in."""


def workspace_in(tmp_path: Path) -> Workspace:
    """Experiment ``r-exp0``'s folders, all below ``tmp_path``."""
    return Workspace(
        exec_dir=tmp_path / "work",
        scratch_dir=tmp_path / "scratch",
        log_path=tmp_path / "log",
        bundle_cache=tmp_path / "cache",
        notice_file=tmp_path / "notices" / "r-exp0.json",
        mount_root=tmp_path / "root",
        datastore_cache=tmp_path / "mounts",
    )
