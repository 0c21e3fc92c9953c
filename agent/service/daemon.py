"""The local scheduler: a background process that runs queued experiments on this machine.

It is started by the CLI when there is work, holds ``agent.lock`` while alive (so there is
at most one per ``GRIDCTL_HOME``), runs each experiment through ``ExperimentRunner`` in a
thread, and exits once nothing is queued or running. Whoever takes the lock while
experiments are marked started knows their agent died (crash, kill, reboot): it queues the
``--auto_resume`` ones again as resumes and marks the others failed. An interrupted
``--auto_resume`` experiment is queued again the same way.

A gang of K nodes (SPEC section 9) runs here as K runner threads started together, one
per rank, each a ``GangMember`` of the attempt's rendezvous over the home's store (ranks
"local-<R>" at 127.0.0.1, rank 0's port a free one): the same protocol as on AWS, so a
failing rank stops its peers, and the rank that ends last records the one outcome.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gridctl.agent.core import datastore
from gridctl.agent.core.contract import ExperimentKeys, InterruptRequest
from gridctl.agent.core.gang import Rendezvous, node_name
from gridctl.agent.core.guards import runtime_used
from gridctl.agent.core.resources import Capacity, machine_capacity
from gridctl.agent.core.scheduler import Allocation, Request, request_for, schedule, waiting
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import ORPHAN_REASON, STARTED_STATES, State
from gridctl.agent.runner.experiment import (
    BeforeLaunch,
    ExperimentRunner,
    RunnerSettings,
    resolve_interpreter,
)
from gridctl.agent.runner.gang import GangMember, GangSettings
from gridctl.agent.runner.notice import REQUESTED_REASON, interruption
from gridctl.agent.runner.venv import Venvs
from gridctl.agent.service.home import Home
from gridctl.agent.service.registry import ExperimentRecord, Registry

TICK = 0.2
IDLE_EXIT = 2.0
LOOPBACK = "127.0.0.1"
GANG_SETTINGS = GangSettings(interval=0.2, stale_beats=None)
"""A gang's ranks are threads of this process: a look every 0.2 s costs a directory listing,
and no rank can be lost while its peers live (a busy machine must not make one look so)."""


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
    orphans = registry.experiments(statuses=STARTED_STATES)
    if orphans:
        import psutil  # only then: every local command reconciles, and most find none
    for record in orphans:
        processes = set(record.processes)
        if record.pid:
            processes.add((record.pid, record.pid_started or 0.0))
        for pid, started in processes:
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - started) < 1:
                    os.killpg(pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass
        if record.spec.datastore is not None:
            for rank in range(record.spec.nodes):
                holder = node_name(record.name, rank)
                datastore.release(home.datastore_cache, record.spec.datastore.name, holder)
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
            queued = bool(registry.queue())
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


class _Connections:
    """Each runner thread's own registry connection, opened at its first report and closed
    as the thread ends: a connection of its own for each report (connect, schema script,
    migration transaction: 0.4 ms) cost a short experiment more than its reports did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def registry(self) -> Registry:
        registry: Registry | None = getattr(self._local, "registry", None)
        if registry is None:
            registry = self._local.registry = Registry(self.path)
        return registry

    def close(self) -> None:
        """The calling thread's, if it opened one."""
        registry: Registry | None = getattr(self._local, "registry", None)
        if registry is not None:
            del self._local.registry
            registry.close()


class _RegistryRecorder:
    """Reports one experiment's progress to the registry from its runner thread."""

    def __init__(self, connections: _Connections, name: str, auto_resume: bool) -> None:
        self.connections = connections
        self.name = name
        self.auto_resume = auto_resume

    def phase(self, reason: str) -> None:
        self.connections.registry().phase(self.name, reason)

    def running(self, pid: int, pid_started: float) -> None:
        self.connections.registry().mark_running(self.name, pid, pid_started)

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None:
        registry = self.connections.registry()
        if status == State.INTERRUPTED and self.auto_resume:
            registry.requeue(self.name, reason)
        else:
            registry.finish(self.name, status, exit_code, reason)


class _RankRecorder:
    """Reports one rank of a gang: rank 0's script makes the experiment running, every
    rank's is kept for orphan cleanup, and the rank whose end completes the gang's records
    the experiment's outcome (the others only their own end, in the store)."""

    def __init__(self, experiment: _RegistryRecorder, member: GangMember) -> None:
        self.experiment = experiment
        self.member = member
        self.runner: ExperimentRunner | None = None
        """Set once made: the rank's end is dated by its script's exit."""

    def phase(self, reason: str) -> None:
        self.experiment.phase(reason)

    def running(self, pid: int, pid_started: float) -> None:
        if self.member.rank == 0:
            self.experiment.running(pid, pid_started)
            return
        self.experiment.connections.registry().add_process(self.experiment.name, pid, pid_started)

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None:
        exited_at = self.runner.exited_at if self.runner is not None else None
        outcome = self.member.finish(status, exit_code, reason, exited_at)
        if outcome is not None:
            self.experiment.finished(*outcome)


def free_port() -> int:
    """A port nothing listens on now, for rank 0's script to listen on (MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _preparing(venvs: Venvs, spec: ExperimentSpec, member: GangMember | None) -> BeforeLaunch:
    """The script's venv (over the ``python`` its submitter's PATH finds), then a rank's
    registration: the gang's barrier then stands for every rank's preparation, and rank
    0's port is picked just before it is used. A gang's ranks share one venv per key."""

    def prepare(exec_dir: Path, log: BinaryIO, phase: Callable[[str], None]) -> dict[str, str]:
        python = resolve_interpreter("python", spec.env.get("PATH"))
        additions = venvs.prepare(exec_dir, spec, python, log, phase)
        if member is not None:
            rank = member.rank
            port = free_port() if rank == 0 else None
            if member.rendezvous.register(want=rank, port=port) != rank:
                raise RuntimeError(f"rank {rank} of this attempt is held by another node")
        return additions

    return prepare


@dataclass
class _Job:
    """One experiment at work: a runner per rank (one for a single experiment)."""

    allocations: Sequence[Allocation]
    runners: list[ExperimentRunner] = field(default_factory=list)
    members: list[GangMember] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    ended: list[ExperimentRunner] = field(default_factory=list)
    """The runners that have returned, each added before it wakes the scheduler: the tick it
    wakes then sees its slot free, where its thread may still be alive for a moment."""
    interrupted: bool = False
    """It has had the interruption ``gridctl interrupt`` asked for."""

    def alive(self) -> bool:
        return len(self.ended) < len(self.runners)

    def stop(self) -> None:
        for runner in self.runners:
            runner.request_stop()

    def interrupt(self, window: float) -> None:
        """Every rank at once. A gang's alarm goes first, so that failures the signals cause
        count as the interruption's; it is no node's (none of them goes away)."""
        self.interrupted = True
        notice = interruption(REQUESTED_REASON, window)
        if self.members:
            attempt = self.members[0].rendezvous
            request = InterruptRequest(window, time.time(), None, attempt.attempt, REQUESTED_REASON)
            attempt.raise_alarm(request)
        for runner in self.runners:
            runner.notice(notice)


class Dispatcher:
    def __init__(self, home: Home, capacity: Capacity, settings: RunnerSettings) -> None:
        self.home = home
        self.capacity = capacity
        self.settings = settings
        self.registry = Registry(home.registry)
        self.wake = threading.Event()
        self.active: dict[str, _Job] = {}
        self.venvs = Venvs(None, home.venvs)
        self.connections = _Connections(home.registry)
        self._requests: dict[str, Request] = {}
        """Each queued experiment's request, read from its spec once: a spec never changes."""

    def tick(self) -> bool:
        """One round of reaping, stopping and starting; False once there is nothing to do."""
        for name in [n for n, job in self.active.items() if not job.alive()]:
            del self.active[name]
        for record in self.registry.experiments(statuses=STARTED_STATES):
            job = self.active.get(record.name)
            if job is None:
                continue
            if record.stop_requested:
                job.stop()
            if record.interrupt_window is not None and not job.interrupted:
                job.interrupt(record.interrupt_window)
        # A resume is queued before its previous attempt's threads have quite finished.
        queued = {n: why for n, why in self.registry.queue().items() if n not in self.active}
        requests = [r for r in map(self._request, queued) if r is not None]
        started: dict[str, list[Allocation]] = {}
        for alloc in schedule(requests, self._running(), self.capacity):
            started.setdefault(alloc.name, []).append(alloc)
        for name, allocs in started.items():
            gpu_ids = [gpu for alloc in allocs for gpu in alloc.gpu_ids]
            found = self.registry.get_experiment(name)
            if found is not None and self.registry.claim(name, gpu_ids):
                self._start(found, allocs)
        left = [request for request in requests if request.name not in self.active]
        reasons = waiting(left, self._running(), self.capacity)
        changed = {n: why for n, why in reasons.items() if why != queued[n]}
        if changed:
            self.registry.wait(changed)
        return bool(self.active) or bool(queued)

    def _request(self, name: str) -> Request | None:
        """None for an experiment deleted since the queue was read."""
        request = self._requests.get(name)
        if request is None:
            record = self.registry.get_experiment(name)
            if record is None:
                return None
            request = self._requests[name] = request_for(record.spec, record.spec.nodes)
        return request

    def _running(self) -> list[Allocation]:
        return [alloc for job in self.active.values() for alloc in job.allocations]

    def _start(self, record: ExperimentRecord, allocs: Sequence[Allocation]) -> None:
        # Queued again (a resume), it is read again: the cache holds the queue alone.
        self._requests.pop(record.name, None)
        job = _Job(allocs)
        experiment = _RegistryRecorder(self.connections, record.name, record.spec.auto_resume)
        for alloc in sorted(allocs, key=lambda a: a.rank):
            member = None
            recorder: _RegistryRecorder | _RankRecorder = experiment
            if record.spec.nodes > 1:
                member = self._member(record, alloc.rank)
                recorder = _RankRecorder(experiment, member)
                job.members.append(member)
            runner = ExperimentRunner(
                record.spec,
                self.home.store,
                self.home.workspace(record.run, record.name, alloc.rank),
                recorder,
                gpu_ids=alloc.gpu_ids,
                cpu_ids=alloc.cpu_ids,
                settings=self.settings,
                before_launch=_preparing(self.venvs, record.spec, member),
                resume_count=record.resumes,
                gang=member,
                runtime_used=runtime_used(record.attempts),
            )
            if isinstance(recorder, _RankRecorder):
                recorder.runner = runner
            job.runners.append(runner)
            name = node_name(record.name, alloc.rank)
            job.threads.append(
                threading.Thread(
                    target=self._work, args=(job, runner, member), name=name, daemon=True
                )
            )
        self.active[record.name] = job
        for thread in job.threads:
            thread.start()

    def _member(self, record: ExperimentRecord, rank: int) -> GangMember:
        """Rank ``rank`` of the attempt: attempt numbers count resumes, as on AWS."""
        rendezvous = Rendezvous(
            self.home.store,
            ExperimentKeys(record.run, record.name),
            record.spec.nodes,
            record.resumes,
            f"local-{rank}",
            LOOPBACK,
        )
        return GangMember(rendezvous, rank, record.spec, GANG_SETTINGS)

    def _work(self, job: _Job, runner: ExperimentRunner, member: GangMember | None) -> None:
        done = threading.Event()
        if member is not None:
            watch = threading.Thread(target=member.watch, args=(runner, done), daemon=True)
            watch.start()
        try:
            runner.run()
            shutil.rmtree(runner.workspace.exec_dir, ignore_errors=True)
        finally:
            self.connections.close()
            done.set()
            job.ended.append(runner)
            self.wake.set()


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
                if not scheduler.registry.queue():
                    return 0
                if not lock.try_acquire():
                    return 0
                idle_since = None
        scheduler.wake.wait(TICK)
        scheduler.wake.clear()
