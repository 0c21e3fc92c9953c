"""How a node reports: its own log lines, and each experiment's log and status record in the
bucket, from which the CLI derives everything."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from gridctl.agent.core import state
from gridctl.agent.core.contract import (
    ExperimentKeys,
    StatusRecord,
)
from gridctl.agent.core.logs import stamp
from gridctl.agent.core.s3store import S3Store
from gridctl.agent.core.state import State


class LogShipper:
    """Uploads the whole log file every few seconds while it changes, and once at the end."""

    def __init__(self, store: S3Store, key: str, path: Path, interval: float) -> None:
        self.store = store
        self.key = key
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._shipped: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def ship(self) -> None:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return
            if (st.st_size, st.st_mtime_ns) != self._shipped:
                self.store.put_file(self.key, self.path)
                self._shipped = (st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        """Stop the periodic uploads and upload what is left."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
        self.ship()

    def _loop(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self.ship()
            except Exception as exc:  # the next round tries again
                say(f"cannot upload the log: {exc}")


class BucketRecorder:
    """The runner's Recorder on a node: each change rewrites status.json, one at a time."""

    def __init__(
        self, store: S3Store, keys: ExperimentKeys, record: StatusRecord, log: LogShipper
    ) -> None:
        self.store = store
        self.keys = keys
        self.record = record
        self.log = log
        self._lock = threading.Lock()
        self._ended = False

    def starting(self) -> None:
        with self._lock:
            self._write()

    def phase(self, reason: str) -> None:
        with self._lock:
            if self.record.status == State.STARTING:
                self.record = state.phase(self.record, reason).beat(time.time())
                self._write()

    def running(self, pid: int, pid_started: float) -> None:
        with self._lock:
            now = time.time()
            record = state.running(self.record)
            # A resumed experiment started with its first attempt.
            started = record.started_at if record.resumes else now
            self.record = replace(record, heartbeat_at=now, started_at=started)
            self._write()

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None:
        self.close_log()
        with self._lock:
            self._ended = True
            now = time.time()
            self.record = state.finish(self.record, status, exit_code, reason, now).beat(now)
            self._write()

    def close_log(self) -> None:
        """The log goes up before the status: an ended experiment has all its files."""
        try:
            self.log.close()
        except Exception as exc:  # a lost log must not leave the status open
            say(f"cannot upload the final log: {exc}")

    def heartbeat(self) -> None:
        with self._lock:
            if not self._ended:
                self.record = self.record.beat(time.time())
                self._write()

    def _write(self) -> None:
        self.store.put_bytes(self.keys.status, self.record.to_json())


def heartbeat(recorder: BucketRecorder, interval: float, done: threading.Event) -> None:
    """``heartbeat_at`` moves while the agent lives, so the CLI can tell a lost node."""
    while not done.wait(interval):
        try:
            recorder.heartbeat()
        except Exception as exc:  # the next beat tries again
            say(f"cannot write the heartbeat: {exc}")


def say(message: str) -> None:
    sys.stderr.write(f"{stamp().decode()}gridctl agent: {message}\n")
    sys.stderr.flush()
