"""Holding an experiment to its ``--cpus`` and ``--memory``.

``--cpus N`` pins the script to N cores (the scheduler names them) and sets the
thread-count variables that numerical libraries read at start, unless the user set them:
pinning alone leaves torch or OpenBLAS starting one thread per core of the machine.

``--memory`` is enforced by the kernel where this machine lets the agent make a memory
cgroup (cgroup v2 with the memory controller delegated to the agent's own cgroup, or
cgroup v1's memory hierarchy, typically as root); elsewhere a watchdog sums the resident
memory of the script's process tree twice a second and kills the tree when it goes over.
Either way the experiment fails with a reason naming the limit. The script is moved into
its cgroup as soon as it has started, before Python has run a line of it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gridctl.agent.core.units import format_bytes

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
)
"""What OpenMP (torch, numpy's BLAS), MKL, OpenBLAS, numexpr, Accelerate and BLIS read."""
WATCH_INTERVAL = 0.5
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cores_for(cpus: float) -> int:
    """Whole cores an experiment asking for ``cpus`` is pinned to."""
    return max(1, math.ceil(cpus - 1e-9))


def thread_variables(cpus: float, user_env: Mapping[str, str]) -> dict[str, str]:
    """The thread counts to set for ``--cpus``, leaving alone those the user set."""
    count = str(cores_for(cpus))
    return {name: count for name in THREAD_VARIABLES if name not in user_env}


def usable_cores() -> list[int]:
    """The cores this process may run on, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin(pid: int, cpu_ids: Sequence[int]) -> list[int]:
    """Pin ``pid`` (and the threads and children it makes from now on) to the scheduler's
    cores, mapped onto the usable ones (a simulated node may offer more than the machine
    has); the cores it got, none where this system cannot pin."""
    usable = usable_cores()
    cores = sorted({usable[i % len(usable)] for i in cpu_ids})
    if not cores or not hasattr(os, "sched_setaffinity"):
        return []
    with contextlib.suppress(ProcessLookupError):
        os.sched_setaffinity(pid, cores)
    return cores


class MemoryLimit(Protocol):
    kind: str
    """How the limit is enforced, for the experiment's log."""

    def attach(self, pid: int) -> None:
        """Start holding the just-started process ``pid`` (a process group leader)."""

    def exceeded(self) -> str | None:
        """Why the processes were killed for memory, if they were."""

    def close(self) -> None:
        """Stop enforcing; call once the processes have ended."""


def limit_memory(pid: int, limit: int, name: str) -> MemoryLimit:
    """Hold the just-started ``pid`` to ``limit`` bytes: in a cgroup where this machine
    offers one, else with the watchdog."""
    cgroup = Cgroup.create(CGROUP_ROOT, Path("/proc/self/cgroup"), limit, name)
    if cgroup is not None:
        try:
            cgroup.attach(pid)
            return cgroup
        except OSError:
            cgroup.close()
    watchdog = Watchdog(limit)
    watchdog.attach(pid)
    return watchdog


def _over(limit: int, how: str) -> str:
    return f"exceeded --memory {format_bytes(limit)} ({how})"


@dataclass(frozen=True)
class _Layout:
    """The files of one cgroup version's memory controller."""

    limit: str
    swap: str
    """Written after the limit so that swap cannot stretch it: 0 (v2) or the limit (v1)."""
    events: str
    """Where the kernel counts its out-of-memory kills."""


_V2 = _Layout("memory.max", "memory.swap.max", "memory.events")
_V1 = _Layout("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control")


@dataclass
class Cgroup:
    """A memory cgroup of the experiment's own, below the agent's cgroup."""

    path: Path
    limit: int
    layout: _Layout
    kind: str = "by the kernel (a memory cgroup)"

    @classmethod
    def create(cls, root: Path, membership: Path, limit: int, name: str) -> Cgroup | None:
        """The cgroup, made and limited; None where this machine does not let us."""
        try:
            lines = membership.read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _id, controllers, own = line.split(":", 2)
            if controllers == "" and (root / "cgroup.controllers").is_file():
                parent, layout, swap = root / own.lstrip("/"), _V2, 0
            elif "memory" in controllers.split(","):
                parent, layout, swap = root / "memory" / own.lstrip("/"), _V1, limit
            else:
                continue
            path = parent / f"gridctl-{name}-{uuid.uuid4().hex[:8]}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / layout.limit).write_text(str(limit))
            except OSError:  # the memory controller is not ours to use here
                path.rmdir()
                continue
            with contextlib.suppress(OSError):  # absent where swap is not accounted
                (path / layout.swap).write_text(str(swap))
            return cls(path, limit, layout)
        return None

    def attach(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def exceeded(self) -> str | None:
        try:
            lines = (self.path / self.layout.events).read_text().splitlines()
        except OSError:
            return None
        counts = dict(line.split(maxsplit=1) for line in lines if " " in line)
        if counts.get("oom_kill", "0").strip() != "0":
            return _over(self.limit, "stopped by the kernel's out-of-memory killer")
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


class Watchdog:
    """Kills the process tree once its resident memory goes over the limit."""

    kind = "by a watchdog over its processes' resident memory"

    def __init__(self, limit: int, interval: float = WATCH_INTERVAL) -> None:
        self.limit = limit
        self.interval = interval
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, pid: int) -> None:
        self._thread = threading.Thread(
            target=self._watch, args=(pid,), name="memory-watchdog", daemon=True
        )
        self._thread.start()

    def _watch(self, pid: int) -> None:
        import psutil

        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        while not self._done.wait(self.interval):
            tree = [root]
            with contextlib.suppress(psutil.Error):
                tree += root.children(recursive=True)
            used = 0
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    used += process.memory_info().rss
            if used > self.limit:
                self.reason = _over(self.limit, f"its processes used {format_bytes(used)}")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                for process in tree:
                    with contextlib.suppress(psutil.Error):
                        process.kill()
                return
            if not root.is_running():
                return

    def exceeded(self) -> str | None:
        return self.reason

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
