"""Byte counts and counted things for people, shared by the agent and the CLI (which may
import the agent, never the other way round)."""

from __future__ import annotations

GIB = 1 << 30
"""Scratch sizes are GiB, as EBS volume sizes are."""


def format_bytes(n: int) -> str:
    """A byte count for people: `10 GiB`, `1.5 GiB`, `512 MiB`, `100 B`."""
    sign = "-" if n < 0 else ""
    size = abs(n)
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{sign}{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{sign}{size} B"


def count(n: int, noun: str) -> str:
    """``1 run``, ``2 runs``: a number with its noun, plural when it is not one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
