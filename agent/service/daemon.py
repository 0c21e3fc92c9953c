"""The local scheduler: a background process that runs queued experiments on this machine.

It is started by the CLI when there is work, holds ``agent.lock`` while alive (so there is
at most one per ``GRIDCTL_HOME``), runs each experiment through ``ExperimentRunner`` in a
thread, and exits once nothing is queued or running. Whoever takes the lock while
experiments are marked started knows their agent died (crash, kill, reboot): it queues the
``--auto_resume`` ones again as resumes and marks the others failed. An interrupted
``--auto_resume`` experiment is queued again the same way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gridctl.agent.core import datastore
from gridctl.agent.core.resources import Capacity, machine_capacity
from gridctl.agent.core.scheduler import Allocation, request_for, schedule, waiting
from gridctl.agent.core.state import ORPHAN_REASON, STARTED_STATES, State
from gridctl.agent.runner.experiment import ExperimentRunner, RunnerSettings
from gridctl.agent.runner.notice import REQUESTED_REASON, interruption
from gridctl.agent.service.home import Home
from gridctl.agent.service.registry import ExperimentRecord, Registry

TICK = 0.2
IDLE_EXIT = 2.0


class AgentLock:
    """An flock on ``agent.lock``: held by the live scheduler, free when none runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


def mark_orphans(home: Home, registry: Registry) -> list[str]:
    """Experiments marked started whose agent is gone: end their leftovers, let go of their
    datastores, then resume them (``--auto_resume``) or mark them failed.

    Call only while holding the agent lock.
    """
    import psutil

    orphans = registry.experiments(statuses=STARTED_STATES)
    for record in orphans:
        if record.pid:
            try:
                proc = psutil.Process(record.pid)
                if abs(proc.create_time() - (record.pid_started or 0)) < 1:
                    os.killpg(record.pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass
        if record.spec.datastore is not None:
            datastore.release(home.datastore_cache, record.spec.datastore.name, record.name)
        if record.spec.auto_resume:
            registry.requeue(record.name, ORPHAN_REASON)
        else:
            registry.finish(record.name, State.FAILED, None, ORPHAN_REASON)
    return [r.name for r in orphans]


def reconcile(home: Home) -> None:
    """Mark orphans and make sure a scheduler runs when anything is queued."""
    lock = AgentLock(home.lock)
    try:
        if not lock.try_acquire():
            return
        registry = Registry(home.registry)
        try:
            mark_orphans(home, registry)
            queued = bool(registry.experiments(statuses=(State.QUEUED,)))
        finally:
            registry.close()
        lock.release()
        if queued:
            spawn(home)
    finally:
        lock.close()


def spawn(home: Home) -> None:
    """Start the scheduler in its own session so it outlives the terminal and the CLI."""
    home.root.mkdir(parents=True, exist_ok=True)
    with home.agent_log.open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "gridctl.agent", "local", "--home", str(home.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )


class _RegistryRecorder:
    """Reports one experiment's progress to the registry from its runner thread."""

    def __init__(self, home: Home, name: str, auto_resume: bool) -> None:
        self.home = home
        self.name = name
        self.auto_resume = auto_resume

    def running(self, pid: int, pid_started: float) -> None:
        registry = Registry(self.home.registry)
        try:
            registry.mark_running(self.name, pid, pid_started)
        finally:
            registry.close()

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None:
        registry = Registry(self.home.registry)
        try:
            if status == State.INTERRUPTED and self.auto_resume:
                registry.requeue(self.name, reason)
            else:
                registry.finish(self.name, status, exit_code, reason)
        finally:
            registry.close()


class Dispatcher:
    def __init__(self, home: Home, capacity: Capacity, settings: RunnerSettings) -> None:
        self.home = home
        self.capacity = capacity
        self.settings = settings
        self.registry = Registry(home.registry)
        self.wake = threading.Event()
        self.active: dict[str, tuple[ExperimentRunner, Allocation, threading.Thread]] = {}
        self.interrupted: set[str] = set()
        """Experiments whose runner has had the interruption ``gridctl interrupt`` asked for."""

    def tick(self) -> bool:
        """One round of reaping, stopping and starting; False once there is nothing to do."""
        for name in [n for n, (_, _, t) in self.active.items() if not t.is_alive()]:
            del self.active[name]
            self.interrupted.discard(name)
        for record in self.registry.experiments(statuses=STARTED_STATES):
            if record.name not in self.active:
                continue
            runner = self.active[record.name][0]
            if record.stop_requested:
                runner.request_stop()
            if record.interrupt_window is not None and record.name not in self.interrupted:
                self.interrupted.add(record.name)
                runner.notice(interruption(REQUESTED_REASON, record.interrupt_window))
        # A resume is queued before its previous attempt's thread has quite finished.
        queued = [
            r
            for r in self.registry.experiments(statuses=(State.QUEUED,))
            if r.name not in self.active
        ]
        running = [alloc for _, alloc, _ in self.active.values()]
        records = {r.name: r for r in queued}
        requests = [request_for(r.spec) for r in queued]
        for alloc in schedule(requests, running, self.capacity):
            if self.registry.claim(alloc.name, alloc.gpu_ids):
                self._start(records[alloc.name], alloc)
        running = [alloc for _, alloc, _ in self.active.values()]
        left = [request for request in requests if request.name not in self.active]
        reasons = waiting(left, running, self.capacity)
        changed = {n: why for n, why in reasons.items() if why != records[n].reason}
        if changed:
            self.registry.wait(changed)
        return bool(self.active) or bool(queued)

    def _start(self, record: ExperimentRecord, alloc: Allocation) -> None:
        runner = ExperimentRunner(
            record.spec,
            self.home.store,
            self.home.workspace(record.run, record.name),
            _RegistryRecorder(self.home, record.name, record.spec.auto_resume),
            gpu_ids=alloc.gpu_ids,
            cpu_ids=alloc.cpu_ids,
            settings=self.settings,
            resume_count=record.resumes,
        )

        def work() -> None:
            try:
                runner.run()
                shutil.rmtree(runner.workspace.exec_dir, ignore_errors=True)
            finally:
                self.wake.set()

        thread = threading.Thread(target=work, name=record.name, daemon=True)
        self.active[record.name] = (runner, alloc, thread)
        thread.start()


def serve(home: Home, settings: RunnerSettings | None = None) -> int:
    lock = AgentLock(home.lock)
    if not lock.try_acquire():
        return 0
    registry = Registry(home.registry)
    mark_orphans(home, registry)
    registry.close()
    scheduler = Dispatcher(home, machine_capacity(), settings or RunnerSettings())
    idle_since: float | None = None
    while True:
        if scheduler.tick():
            idle_since = None
        else:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > IDLE_EXIT:
                # Release first, then look again: a CLI that queued work after our last
                # look either sees the lock free and spawns a scheduler, or we see its work.
                lock.release()
                if not scheduler.registry.experiments(statuses=(State.QUEUED,)):
                    return 0
                if not lock.try_acquire():
                    return 0
                idle_since = None
        scheduler.wake.wait(TICK)
        scheduler.wake.clear()
