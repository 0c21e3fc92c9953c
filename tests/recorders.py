"""A stand-in for the runner's Recorder (the registry or the bucket), for tests that drive
an ExperimentRunner directly."""

from __future__ import annotations

import threading


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
