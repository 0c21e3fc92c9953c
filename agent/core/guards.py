"""The limits a run sets itself (SPEC section 11): ``--max_runtime`` per experiment and
``--max_cost`` per run, in the words the CLI reads them and the agents stop with.

The runner stops an experiment once its attempts together have run ``max_runtime`` seconds,
counted from each attempt's start (its preparation too: the machine is paid for from then);
a node stops its run's experiments once the run's ledger reaches ``max_cost``. Either ends
the experiment ``stopped``, as ``gridctl stop`` would, with a reason naming the limit.
Standard library only: the node agent uses it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from gridctl.agent.core.contract import Charge
from gridctl.agent.core.cost import charge_cost
from gridctl.agent.core.state import Attempt

UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile("".join(f"(?:{_NUMBER}{unit})?" for unit, _ in UNITS))


class GuardError(ValueError):
    """A limit that cannot be one; the message names the value and says what would do."""


def parse_duration(text: str, flag: str = "--max_runtime") -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, or several largest first (``1h30m``): seconds. The
    unit is required, since a bare ``30`` reads as minutes to some and seconds to others."""
    value = text.strip().lower()
    match = _DURATION.fullmatch(value)
    if not value or match is None:
        shown = text if value else repr(text)
        if _bare(value):
            raise GuardError(f"{flag} {shown} needs a unit: {value}s, {value}m or {value}h")
        raise GuardError(f"{flag} {shown} is not a duration such as 90s, 30m, 2h or 1h30m")
    sizes = [size for _, size in UNITS]
    seconds = sum(float(n) * size for n, size in zip(match.groups(), sizes, strict=True) if n)
    if not seconds > 0:
        raise GuardError(f"{flag} {text} must be longer than nothing")
    return seconds


def _bare(value: str) -> bool:
    return re.fullmatch(_NUMBER, value) is not None


def check_budget(value: float, flag: str = "--max_cost") -> float:
    """USD a run may cost: a positive, finite amount."""
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise GuardError(f"{flag} must be a positive amount of USD such as 25 or 0.5, not {value}")
    return float(value)


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration``: ``5s``, ``30m``, ``2h``, ``1h30m``."""
    parts, left = [], seconds
    for unit, size in UNITS[:-1]:
        whole = int(left // size)
        if whole:
            parts.append(f"{whole}{unit}")
            left -= whole * size
    if left or not parts:
        parts.append(f"{round(left, 3):g}s")
    return "".join(parts)


def runtime_reason(limit: float) -> str:
    return f"ran longer than --max_runtime {format_duration(limit)}"


def runtime_used(attempts: Iterable[Attempt]) -> float:
    """Seconds the experiment's ended attempts ran: what a new attempt's limit is less."""
    return sum(
        max(0.0, a.finished_at - a.started_at) for a in attempts if a.finished_at is not None
    )


def spent(charges: Iterable[Charge], now: float) -> float:
    """USD the charges add up to, those with a known price: a budget is reached once that
    much is, whatever the unknown ones add."""
    costs = (charge_cost(charge, now) for charge in charges)
    return sum(cost for cost in costs if cost is not None)


def usd(amount: float) -> str:
    """``$0.01``, ``$0.0123``, ``$25``, ``$1,234.50``: cents, or finer below a dollar."""
    if amount >= 1:
        text = f"{amount:,.2f}"
        return "$" + text.removesuffix(".00")
    text = f"{amount:.4f}"
    while text.endswith("0") and len(text.partition(".")[2]) > 2:
        text = text[:-1]
    return "$" + text


def budget_reason(cap: float, spent_so_far: float) -> str:
    return f"the run's budget of {usd(cap)} was reached ({usd(spent_so_far)} spent)"
