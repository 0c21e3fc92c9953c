"""Which queued experiments start now: first-fit over CPUs, GPUs and memory.

Pure functions over plain data, shared by the local backend and (for experiments that
share a machine) the node agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridctl.agent.resources import Capacity


@dataclass(frozen=True)
class Request:
    name: str
    cpus: float
    gpus: int
    memory: int


@dataclass(frozen=True)
class Allocation:
    name: str
    cpus: float
    memory: int
    gpu_ids: tuple[int, ...]


def schedule(
    queued: Sequence[Request], running: Sequence[Allocation], capacity: Capacity
) -> list[Allocation]:
    """Allocate as many queued requests as fit, in queue order.

    A request that does not fit now is skipped and later ones may start (backfill); a
    request that can never fit is the caller's job to refuse at submission.
    """
    free_cpus = capacity.cpus - sum(a.cpus for a in running)
    free_memory = capacity.memory - sum(a.memory for a in running)
    used = {gpu for a in running for gpu in a.gpu_ids}
    free_gpus = [gpu for gpu in range(capacity.gpus) if gpu not in used]
    started: list[Allocation] = []
    for request in queued:
        if (
            request.cpus <= free_cpus + 1e-9
            and request.memory <= free_memory
            and request.gpus <= len(free_gpus)
        ):
            gpu_ids = tuple(free_gpus[: request.gpus])
            del free_gpus[: request.gpus]
            free_cpus -= request.cpus
            free_memory -= request.memory
            started.append(Allocation(request.name, request.cpus, request.memory, gpu_ids))
    return started


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
