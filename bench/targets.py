"""How every benchmark states a figure against its target, ``(target <= 1.5: met)`` or
``(target <= 1.5: MISSED)``, so that ``make bench`` reads, and greps, the same throughout."""

from __future__ import annotations


def verdict(value: float, target: float, unit: str = "", *, strictly: bool = False) -> str:
    """``strictly``: the figure must stay below the target, not reach it."""
    met = value < target if strictly else value <= target
    sign = "<" if strictly else "<="
    return f"(target {sign} {target:g}{unit}: {'met' if met else 'MISSED'})"
