"""The order the suite runs in under xdist's worksteal: each worker's share heaviest first.

worksteal hands worker i the i-th contiguous slice of the collection and later moves tests
from the end of a busy worker's queue to an idle one. In collection order the Terraform and
moto tests (tests/aws/, first by name) all fell to one worker and were stolen late, so the
suite ended on a few long tests started last. Here each slice gets its share of the heavy
tests at its start, dealt by weight; a module's tests stay together within a slice, so its
module fixtures are set up once there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def slices(count: int, workers: int) -> list[int]:
    """The sizes of worksteal's initial slices, computed as it computes them."""
    sizes, left = [], count
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    return sizes


def spread(items: Sequence[T], weights: Sequence[float], groups: Sequence[str], workers: int):
    """``items`` reordered: ``workers`` consecutive slices of worksteal's sizes, each with a
    fair part of the weight, heaviest first, a group's items together within a slice."""
    if workers < 2 or len(items) < workers:
        return list(items)
    sizes = slices(len(items), workers)
    loads = [0.0] * workers
    shares: list[list[int]] = [[] for _ in range(workers)]
    for index in sorted(range(len(items)), key=lambda i: (-weights[i], i)):
        open_ = [w for w in range(workers) if len(shares[w]) < sizes[w]]
        target = min(open_, key=lambda w: (loads[w], w))
        shares[target].append(index)
        loads[target] += weights[index]
    order: list[T] = []
    for share in shares:
        heaviest = {}
        for i in share:
            heaviest[groups[i]] = max(heaviest.get(groups[i], 0.0), weights[i])
        first = {g: n for n, g in enumerate(dict.fromkeys(groups[i] for i in sorted(share)))}
        share.sort(key=lambda i: (-heaviest[groups[i]], first[groups[i]], i))
        order += [items[i] for i in share]
    return order
