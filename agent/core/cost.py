"""What instances cost (SPEC section 11): each charge of the ledger is billed per second
with AWS's minimum of a minute per instance, and an experiment, a run or a budget is the
sum of its charges. Pure and standard library only: a node sums its run's budget with it.
"""

from __future__ import annotations

from collections.abc import Iterable

from gridctl.agent.core.contract import Charge

MINIMUM_SECONDS = 60.0
"""EC2 bills Linux instances per second, but at least a minute each time one starts."""
STALE_BEATS = 3
"""Rewrites of ``seen_at`` a node may miss before its open charge counts as ended then."""


def is_open(charge: Charge, now: float) -> bool:
    """The instance still runs for the experiment: its cost is an estimate that grows."""
    return charge.ended_at is None and now - charge.seen_at <= STALE_BEATS * charge.beat_interval


def end_of(charge: Charge, now: float) -> float:
    """Until when the charge is billed: its end; else now while its node speaks; else the
    node's last word (a node lost without a word is billed no further)."""
    if charge.ended_at is not None:
        end = charge.ended_at
    elif is_open(charge, now):
        end = max(now, charge.seen_at)
    else:
        end = charge.seen_at
    return max(end, charge.started_at)


def billed_seconds(charge: Charge, now: float) -> float:
    return max(MINIMUM_SECONDS, end_of(charge, now) - charge.started_at)


def charge_cost(charge: Charge, now: float) -> float | None:
    """USD of the experiment's share of the instance; None when its price is unknown."""
    if charge.price_per_hour is None:
        return None
    return charge.price_per_hour * charge.share * billed_seconds(charge, now) / 3600


def total_cost(charges: Iterable[Charge], now: float) -> float | None:
    """The charges' sum; None when any price is unknown, since a sum missing a part would
    look like the whole."""
    total = 0.0
    for charge in charges:
        cost = charge_cost(charge, now)
        if cost is None:
            return None
        total += cost
    return total


def gpu_hours(charges: Iterable[Charge], now: float) -> float:
    """Hours of the experiment's GPUs, as used (no minimum: it is not a bill)."""
    return sum(c.gpus * (end_of(c, now) - c.started_at) for c in charges) / 3600
