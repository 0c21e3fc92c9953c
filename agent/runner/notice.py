"""Notices: what tells a running experiment that it must save and stop, whatever sent it.

A spot interruption warning or rebalance hint (read by the node from the metadata service),
``gridctl interrupt`` and an instance that is going away all produce the same ``Notice``, so
every path an interruption can take ends in the same place: ``ExperimentRunner.notice``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

INTERRUPTION = "interruption"
REBALANCE = "rebalance"
INTERRUPTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
WINDOW = 120.0
"""Seconds between an interruption notice and the reclaim, as AWS gives them."""
REQUESTED_REASON = "interrupted by gridctl interrupt"


@dataclass(frozen=True)
class Notice:
    """``deadline`` (epoch seconds) is when the instance goes; None for a rebalance hint."""

    kind: str
    seen_at: float
    deadline: float | None
    reason: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def interruption(reason: str, window: float, now: float | None = None) -> Notice:
    """An interruption that leaves ``window`` seconds, from whatever source."""
    seen = time.time() if now is None else now
    return Notice(INTERRUPTION, seen, seen + window, reason)
