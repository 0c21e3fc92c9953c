"""What a planned run costs per hour while all its experiments run: ``run --dry-run``'s
``price_per_hour`` (SPEC section 11).

An experiment pays for its machines (``nodes`` instances), or, on a machine it shares,
its GPUs' part of it, as the ledger charges it. The sweep's total is what AWS bills per
hour for all its machines, so a shared machine that the packing left partly idle counts
whole there: the total can exceed the sum of the experiments'.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridctl.cli.backends.aws import machines_for
from gridctl.cli.plan import RunPlan
from gridctl.infra.prices import Price


@dataclass(frozen=True)
class Estimate:
    per_experiment: dict[str, float | None]
    """USD per hour of each experiment; None where the instance type's price is unknown."""
    total: float | None
    source: str | None
    """Where the price came from (``pricing api``, ``spot price history``, ``price table``);
    None locally, where nothing is charged."""


def free(plan: RunPlan) -> Estimate:
    """A local run: the machine is the user's own."""
    return Estimate({e.name: 0.0 for e in plan.experiments}, 0.0, None)


def priced(plan: RunPlan, price: Price | None) -> Estimate:
    """The estimate of an AWS run whose instance type costs ``price`` per instance-hour."""
    if price is None:
        return Estimate({e.name: None for e in plan.experiments}, None, None)
    hourly = price.usd_per_hour
    per_experiment: dict[str, float | None] = {}
    total = 0.0
    for machine in machines_for(plan):
        cost = hourly * machine.nodes
        total += cost
        for name in machine.experiments:
            shared = len(machine.experiments) > 1 and machine.gpus > 0
            share = plan.resources.gpus / machine.gpus if shared else 1.0
            per_experiment[name] = round(cost * share, 6)
    return Estimate(per_experiment, round(total, 6), price.source)
