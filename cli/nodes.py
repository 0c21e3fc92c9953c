"""How many machines ("nodes") one experiment spans, and the GPUs each of them gets (SPEC
section 9).

``--gpus`` is the experiment's total, as on Grid; ``--cpus`` and ``--memory`` are each node's.
The node count K is ``--nodes`` when given, else Grid's derived rule: ``--gpus N`` above the
GPU count g of the named ``--instance_type`` spreads over K = N / g nodes of it. Every count
that would not split evenly, or would not fit the type, is refused here, before anything
starts, with the counts that would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridctl.agent.core.units import count
from gridctl.cli.errors import GridctlError
from gridctl.cli.machines import InstanceType

MAX_NODES = 64
"""A guard against typos (``--nodes 800`` meant ``--gpus 800``?), far above what the docs'
own examples ask, and well inside what the rendezvous reads in one look: one bucket LIST of
an attempt (up to 1000 keys) shows every rank's member, beat and end (3 keys per rank)."""


@dataclass(frozen=True)
class Shape:
    """An experiment's nodes and the GPUs of each (0: a CPU gang or a CPU experiment)."""

    nodes: int
    gpus_per_node: int


def shape(
    gpus: int, nodes: int | None, itype: InstanceType | None, type_label: str | None = None
) -> Shape:
    """K and N / K for ``--gpus gpus`` (the total), ``--nodes nodes`` (None: not given) and the
    named instance type (None: none named); ``type_label`` is the type as the user spelt it."""
    label = type_label or (itype.name if itype else "")
    if nodes is not None:
        return _given(gpus, nodes, itype, label)
    if itype is None or itype.gpus == 0 or gpus <= itype.gpus:
        return Shape(1, gpus)
    return _derived(gpus, itype, label)


def check_count(nodes: int, flag: str = "--nodes") -> int:
    """A node count from 1 to ``MAX_NODES``; ``flag`` names where it came from."""
    if nodes < 1:
        raise GridctlError(f"{flag} {nodes}: an experiment runs on at least 1 node")
    if nodes > MAX_NODES:
        raise GridctlError(f"{flag} {nodes}: an experiment runs on at most {MAX_NODES} nodes")
    return nodes


def _given(gpus: int, nodes: int, itype: InstanceType | None, label: str) -> Shape:
    check_count(nodes)
    most = math.ceil(gpus / nodes)
    if itype is not None and most > itype.gpus:
        if itype.gpus == 0:
            raise GridctlError(
                f"--gpus {gpus}: {label} has no GPUs: name a GPU type with --instance_type, or"
                " leave --gpus out for nodes of CPUs only"
            )
        fewer = _fewest_nodes(gpus, itype.gpus)
        hint = f": use --nodes {fewer}" if fewer is not None else ""
        raise GridctlError(
            f"--gpus {gpus} over --nodes {nodes} needs {count(most, 'GPU')} per node, more than"
            f" {label} has ({itype.gpus}){hint}"
        )
    if gpus % nodes:
        lower = gpus // nodes * nodes
        counts = [c for c in (lower, lower + nodes) if c > 0]
        raise GridctlError(
            f"--gpus {gpus} does not divide over --nodes {nodes}: use "
            + " or ".join(f"--gpus {c}" for c in counts)
        )
    return Shape(nodes, gpus // nodes)


def _derived(gpus: int, itype: InstanceType, label: str) -> Shape:
    per_node = itype.gpus
    nodes = math.ceil(gpus / per_node)
    if nodes > MAX_NODES:
        raise GridctlError(
            f"--gpus {gpus} on {label} ({per_node} GPUs each) needs {nodes} nodes; an experiment"
            f" runs on at most {MAX_NODES}: use --gpus {MAX_NODES * per_node} or less"
        )
    if gpus % per_node:
        lower = gpus // per_node * per_node
        raise GridctlError(
            f"--gpus {gpus} does not divide into nodes of {per_node} GPUs ({label} has"
            f" {per_node}): use --gpus {lower} or --gpus {lower + per_node}"
        )
    return Shape(nodes, per_node)


def _fewest_nodes(gpus: int, per_type: int) -> int | None:
    """The fewest nodes over which ``gpus`` divide evenly into at most ``per_type`` each."""
    for nodes in range(math.ceil(gpus / per_type), MAX_NODES + 1):
        if gpus % nodes == 0:
            return nodes
    return None
