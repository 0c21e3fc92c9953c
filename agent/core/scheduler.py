"""Which queued experiments start now: first-fit over CPUs, GPUs, memory and mount paths.

Pure functions over plain data, shared by the local backend and (for experiments that
share a machine) the node agent. Besides counting CPUs, the scheduler names the cores an
experiment gets (the least loaded ones), so that experiments pinned to cores with
``--cpus`` do not pile onto the same ones. A mount path holds one thing at a time: an
experiment that needs another datastore version where a running one has its own mounted
waits until that one ends, so nothing changes under a running script.

A gang (a multi-node experiment run whole on this machine, SPEC section 9) asks for K
nodes of the same size and gets K allocations at once or none: no rank ever holds
resources while it waits for the others, so two gangs can never deadlock each other.
Single experiments backfill past those that do not fit yet, as they always have; a gang
would be starved that way (it needs K times the room at once, which a stream of small
experiments never leaves), so a gang that cannot start holds its place instead: what it
needs is set aside from what is free, in queue order, and later experiments (gangs too)
start only in what is left beside every waiting gang's share. A waiting gang therefore
waits only for experiments that were running or ahead of it in the queue, and starts as
soon as they have ended. A gang that could not fit this machine even when empty holds
nothing (the caller refuses it at submission).
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
    nodes: int = 1
    """Ranks of a gang that start here together, each with the resources above."""


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
    rank: int = 0
    """Which node of its gang this allocation is for (0 for a single experiment)."""


def request_for(spec: ExperimentSpec, nodes: int = 1) -> Request:
    """``nodes``: how many of the experiment's ranks this machine runs (all K locally; one
    on each of a gang's own instances)."""
    mounts: tuple[Mount, ...] = ()
    if spec.datastore is not None:
        ref = spec.datastore
        content = f"datastore {ref.name} version {ref.version}"
        mounts = (Mount(os.path.normpath(ref.mount_dir), content),)
    return Request(spec.name, spec.cpus, spec.gpus, spec.memory, mounts, nodes)


def _count(amount: float, unit: str) -> str:
    """``1 GPU``, ``2 GPUs``, ``0.5 CPU``."""
    return f"{amount:g} {unit}" + ("s" if amount > 1 else "")


def _times(request: Request, amount: str) -> str:
    """``2 x 4`` for a gang of two nodes of 4 each."""
    return amount if request.nodes == 1 else f"{request.nodes} x {amount}"


class _Free:
    """What is left of a machine once ``running`` has taken its share, and what of it is
    held for the waiting gangs."""

    def __init__(self, running: Sequence[Allocation], capacity: Capacity) -> None:
        self.capacity = capacity
        self.cpus = capacity.cpus - sum(a.cpus for a in running)
        self.memory = capacity.memory - sum(a.memory for a in running)
        used = {gpu for a in running for gpu in a.gpu_ids}
        self.gpus = [gpu for gpu in range(capacity.gpus) if gpu not in used]
        self.load = [0.0] * max(1, int(capacity.cpus))
        self.mounts: dict[str, tuple[str, str]] = {}
        self.held_cpus = 0.0
        self.held_gpus = 0
        self.held_memory = 0
        self.held_mounts: dict[str, tuple[str, str]] = {}
        self.holders: list[str] = []
        for allocation in running:
            self._hold(allocation)

    def _hold(self, allocation: Allocation) -> None:
        for core in allocation.cpu_ids:
            if core < len(self.load):
                self.load[core] += allocation.cpus / len(allocation.cpu_ids)
        for mount in allocation.mounts:
            self.mounts.setdefault(mount.path, (mount.content, allocation.name))

    @staticmethod
    def _mount_clash(request: Request, mounts: dict[str, tuple[str, str]]) -> str | None:
        for mount in request.mounts:
            content, holder = mounts.get(mount.path, (mount.content, ""))
            if content != mount.content:
                return f"waiting for {mount.path}: {holder} has {content} mounted there"
        return None

    def _short(self, request: Request, cpus: float, gpus: int, memory: int) -> str | None:
        """Which resource is short for all of the request's nodes, if any, and how much of
        the machine's is free (what is held beyond what is free counts as none free)."""
        k, c = request.nodes, self.capacity
        cpus, gpus, memory = max(cpus, 0.0), max(gpus, 0), max(memory, 0)
        if request.gpus * k > gpus:
            wanted = _times(request, _count(request.gpus, "GPU"))
            return f"waiting for {wanted}: {gpus} of {c.gpus} free"
        if request.cpus * k > cpus + 1e-9:
            wanted = _times(request, _count(request.cpus, "CPU"))
            return f"waiting for {wanted}: {cpus:g} of {c.cpus:g} free"
        if request.memory * k > memory:
            wanted = _times(request, format_bytes(request.memory))
            free = f"{format_bytes(memory)} of {format_bytes(c.memory)}"
            return f"waiting for {wanted} of memory: {free} free"
        return None

    def blocker(self, request: Request) -> str | None:
        """Why the request cannot start now, or None when it can."""
        clash = self._mount_clash(request, self.mounts)
        short = clash or self._short(request, self.cpus, len(self.gpus), self.memory)
        if short is not None:
            return short
        if self._mount_clash(request, self.held_mounts) or self._short(
            request,
            self.cpus - self.held_cpus,
            len(self.gpus) - self.held_gpus,
            self.memory - self.held_memory,
        ):
            return f"waiting behind {self.holders[0]}: a gang that waits for room starts first"
        return None

    def could_ever_fit(self, request: Request) -> bool:
        c = self.capacity
        return self._short(request, c.cpus, c.gpus, c.memory) is None

    def set_aside(self, request: Request) -> None:
        """Hold a waiting gang's share, so that later requests leave it free."""
        self.held_cpus += request.cpus * request.nodes
        self.held_gpus += request.gpus * request.nodes
        self.held_memory += request.memory * request.nodes
        for mount in request.mounts:
            self.held_mounts.setdefault(mount.path, (mount.content, request.name))
        self.holders.append(request.name)

    def take(self, request: Request) -> list[Allocation]:
        """The request's allocations, one per node."""
        return [self._take_one(request, rank) for rank in range(request.nodes)]

    def _take_one(self, request: Request, rank: int) -> Allocation:
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
            rank,
        )
        self._hold(allocation)
        return allocation


def _plan(
    queued: Sequence[Request], running: Sequence[Allocation], capacity: Capacity
) -> tuple[list[Allocation], dict[str, str | None]]:
    """In queue order: what starts, and why each of the others waits.

    A sweep queues many requests alike: while what is free stays the same, each kind's
    reason is worked out once, so that a tick over a long queue costs little per request."""
    free = _Free(running, capacity)
    started: list[Allocation] = []
    reasons: dict[str, str | None] = {}
    known: dict[tuple[float, int, int, tuple[Mount, ...], int], str | None] = {}
    for request in queued:
        kind = (request.cpus, request.gpus, request.memory, request.mounts, request.nodes)
        why = known[kind] if kind in known else free.blocker(request)
        reasons[request.name] = why
        if why is None:
            started += free.take(request)
            known.clear()
        elif request.nodes > 1 and free.could_ever_fit(request):
            free.set_aside(request)
            known.clear()
        else:
            known[kind] = why
    return started, reasons


def schedule(
    queued: Sequence[Request], running: Sequence[Allocation], capacity: Capacity
) -> list[Allocation]:
    """Allocate as many queued requests as fit, in queue order: a gang's nodes all at once
    (one allocation per rank) or not at all.

    A single request that does not fit now is skipped and later ones may start (backfill);
    a gang that does not fit holds its share (see the module's docstring). A request that
    can never fit is the caller's job to refuse at submission.
    """
    return _plan(queued, running, capacity)[0]


def waiting(
    queued: Sequence[Request], running: Sequence[Allocation], capacity: Capacity
) -> dict[str, str | None]:
    """Why each queued request cannot start beside ``running`` (None: it could, before the
    ones after it), for ``status`` to show."""
    return _plan(queued, running, capacity)[1]


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
