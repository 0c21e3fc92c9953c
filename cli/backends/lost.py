"""When the CLI takes a node for lost: its agent stopped writing its heartbeat long ago.

The agent rewrites ``heartbeat_at`` in ``status.json`` every GRIDCTL_HEARTBEAT_INTERVAL
seconds while it lives. A node whose agent is gone for good (killed, out of memory, a hung
instance) never records an end, and its group would keep the instance billing. After
``GRIDCTL_LOST_AFTER`` seconds of silence (default 10 minutes, generous for a slow network
or a loaded node) the CLI ends the experiment itself. Deciding needs only the record the
CLI has already read, so reading runs stays as cheap as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gridctl.agent.core.contract import StatusRecord
from gridctl.agent.core.state import STARTED_STATES
from gridctl.cli.errors import GridctlError

LOST_AFTER_VARIABLE = "GRIDCTL_LOST_AFTER"
DEFAULT_LOST_AFTER = 600.0
GONE_INSTANCE_STATES = ("shutting-down", "terminated")


def lost_after(env: Mapping[str, str]) -> float:
    """Seconds of heartbeat silence after which a node counts as lost."""
    text = env.get(LOST_AFTER_VARIABLE, "").strip()
    if not text:
        return DEFAULT_LOST_AFTER
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise GridctlError(f"{LOST_AFTER_VARIABLE}={text}: give a number of seconds above 0")
    return seconds


def is_stale(record: StatusRecord, now: float, after: float) -> bool:
    """An experiment a node should be running whose heartbeat is older than ``after``
    (queued has no node yet)."""
    beat = record.heartbeat_at
    if record.status not in STARTED_STATES or beat is None:
        return False
    return now - beat > after


def instance_gone(state: str | None) -> bool:
    """``state`` is the instance's EC2 state, None when EC2 no longer knows it."""
    return state is None or state in GONE_INSTANCE_STATES
