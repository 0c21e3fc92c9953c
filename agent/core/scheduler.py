"""Which queued experiments start now: first-fit over CPUs, GPUs, memory and mount paths.

Pure functions over plain data, shared by the local backend and (for experiments that
share a machine) the node agent. Besides counting CPUs, the scheduler names the cores an
experiment gets (the least loaded ones), so that experiments pinned to cores with
``--cpus`` do not pile onto the same ones. A mount path holds one thing at a time: an
experiment that needs another datastore version where a running one has its own mounted
waits until that one ends, so nothing changes under a running script.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from gridctl.agent.core.limits import cores_for
from gridctl.agent.core.resources import Capacity
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.units import format_bytes


@dataclass(frozen=True)
class Mount:
    """What an experiment needs to find at an absolute ``path`` while it runs."""

    path: str
    content: str


@dataclass(frozen=True)
class Request:
    name: str
    cpus: float
    gpus: int
    memory: int
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True)
class Allocation:
    name: str
    cpus: float
    memory: int
    gpu_ids: tuple[int, ...]
    cpu_ids: tuple[int, ...] = ()
    """Core numbers, 0 to the capacity's CPU count; the runner maps them onto the cores
    this process may use."""
    mounts: tuple[Mount, ...] = ()


def request_for(spec: ExperimentSpec) -> Request:
    mounts: tuple[Mount, ...] = ()
    if spec.datastore is not None:
        ref = spec.datastore
        content = f"datastore {ref.name} version {ref.version}"
        mounts = (Mount(os.path.normpath(ref.mount_dir), content),)
    return Request(spec.name, spec.cpus, spec.gpus, spec.memory, mounts)


class _Free:
    """What is left of a machine once ``running`` has taken its share."""

    def __init__(self, running: Sequence[Allocation], capacity: Capacity) -> None:
        self.cpus = capacity.cpus - sum(a.cpus for a in running)
        self.memory = capacity.memory - sum(a.memory for a in running)
        used = {gpu for a in running for gpu in a.gpu_ids}
        self.gpus = [gpu for gpu in range(capacity.gpus) if gpu not in used]
        self.load = [0.0] * max(1, int(capacity.cpus))
        self.mounts: dict[str, tuple[str, str]] = {}
        for allocation in running:
            self._hold(allocation)

    def _hold(self, allocation: Allocation) -> None:
        for core in allocation.cpu_ids:
            if core < len(self.load):
                self.load[core] += allocation.cpus / len(allocation.cpu_ids)
        for mount in allocation.mounts:
            self.mounts.setdefault(mount.path, (mount.content, allocation.name))

    def blocker(self, request: Request) -> str | None:
        """Why the request cannot start now, or None when it can."""
        for mount in request.mounts:
            content, holder = self.mounts.get(mount.path, (mount.content, ""))
            if content != mount.content:
                return f"waiting for {mount.path}: {holder} has {content} mounted there"
        if request.gpus > len(self.gpus):
            return f"waiting for {request.gpus} GPU(s): {len(self.gpus)} free"
        if request.cpus > self.cpus + 1e-9:
            return f"waiting for {request.cpus:g} CPU(s): {max(self.cpus, 0):g} free"
        if request.memory > self.memory:
            free = format_bytes(max(self.memory, 0))
            return f"waiting for {format_bytes(request.memory)} of memory: {free} free"
        return None

    def take(self, request: Request) -> Allocation:
        gpu_ids = tuple(self.gpus[: request.gpus])
        del self.gpus[: request.gpus]
        self.cpus -= request.cpus
        self.memory -= request.memory
        cores = min(len(self.load), cores_for(request.cpus))
        least_loaded = sorted(range(len(self.load)), key=lambda core: (self.load[core], core))
        allocation = Allocation(
            request.name,
            request.cpus,
            request.memory,
            gpu_ids,
            tuple(sorted(least_loaded[:cores])),
            request.mounts,
        )
        self._hold(allocation)
        return allocation


def schedule(
    queued: Sequence[Request], running: Sequence[Allocation], capacity: Capacity
) -> list[Allocation]:
    """Allocate as many queued requests as fit, in queue order.

    A request that does not fit now is skipped and later ones may start (backfill); a
    request that can never fit is the caller's job to refuse at submission.
    """
    free = _Free(running, capacity)
    return [free.take(request) for request in queued if free.blocker(request) is None]


def waiting(
    queued: Sequence[Request], running: Sequence[Allocation], capacity: Capacity
) -> dict[str, str | None]:
    """Why each queued request cannot start beside ``running`` (None: it could), for
    ``status`` to show."""
    free = _Free(running, capacity)
    return {request.name: free.blocker(request) for request in queued}


def pack(requests: Sequence[Request], capacity: Capacity) -> list[list[Allocation]]:
    """Fill machines of ``capacity`` one after another, first-fit in request order: the
    groups of experiments that run together, each with the GPUs it would get."""
    machines: list[list[Allocation]] = []
    remaining = list(requests)
    while remaining:
        placed = schedule(remaining, [], capacity)
        if not placed:
            raise ValueError(f"{remaining[0].name} does not fit a machine of {capacity}")
        machines.append(placed)
        names = {a.name for a in placed}
        remaining = [r for r in remaining if r.name not in names]
    return machines
