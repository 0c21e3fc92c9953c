"""The experiment state machine: its states, the moves between them, and why an experiment
ended when gridctl ended it. Every record of an experiment (the local registry, the node's
``status.json``, the CLI's writes to it) changes state through these functions alone, so
the moves below are the only ones any record can show::

    queued ──start──> starting ──running──> running
     │  ^                │                     │
     │  └─── requeue ────┴─────────────────────┤   (locally, to resume)
     │                   │        finish       │
     │                   └──────────┬──────────┘
     │                              v
     │        interrupted | succeeded | failed | stopped          (ended)
     │             │
     │             └── resume ──> starting   (on AWS, a replacement takes it over)
     ├── fail ──> failed                     (its machine could not be made)
     └── stop ──> stopped                    (also from starting and running)
    ended ── overrule ──> failed             (the failsafe, below)

``stop`` ends a started experiment too when its agent did not (the CLI's last word). An
ended experiment never changes again, with one exception: the boot script's failsafe
``overrule``s as ``failed`` an end that a failing node recorded after its failure came.
``resumes`` counts the attempts after the first: it only grows. Moves the diagram lacks
raise ``IllegalTransition``. Standard library only: the failsafe runs on a bare
interpreter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar


class State(str, Enum):
    """Str-valued, so JSON, SQLite and the CLI's output keep the plain words (``StrEnum``
    would need Python 3.11; nodes may have 3.10)."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


ACTIVE_STATES = (State.QUEUED, State.STARTING, State.RUNNING)
"""Not ended yet: waiting for room, or being run."""
STARTED_STATES = (State.STARTING, State.RUNNING)
"""An agent has the experiment: only a live agent keeps these up."""
ENDED_STATES = (State.INTERRUPTED, State.SUCCEEDED, State.FAILED, State.STOPPED)

STOPPED_BY_USER = "stopped by user"
LOST_REASON = "the node running it stopped reporting (instance lost or rebooted)"
ORPHAN_REASON = "the local agent ended unexpectedly (crash or reboot)"


class Move(str, Enum):
    """The arrows of the diagram above, one function each below."""

    START = "start"
    RUNNING = "running"
    FINISH = "finish"
    FAIL = "fail"
    REQUEUE = "requeue"
    RESUME = "resume"
    STOP = "stop"
    OVERRULE = "overrule"

    def __str__(self) -> str:
        return self.value


MOVES: dict[Move, tuple[tuple[State, ...], tuple[State, ...]]] = {
    Move.START: ((State.QUEUED,), (State.STARTING,)),
    Move.RUNNING: ((State.STARTING,), (State.RUNNING,)),
    Move.FINISH: (STARTED_STATES, ENDED_STATES),
    Move.FAIL: ((State.QUEUED,), (State.FAILED,)),
    Move.REQUEUE: (STARTED_STATES, (State.QUEUED,)),
    Move.RESUME: ((State.INTERRUPTED,), (State.STARTING,)),
    Move.STOP: (ACTIVE_STATES, (State.STOPPED,)),
    Move.OVERRULE: (ENDED_STATES, (State.FAILED,)),
}
"""Each move: the states it may leave, and those it may reach (the diagram above)."""


class IllegalTransition(ValueError):
    """A move the state machine does not allow: a bug, or a record changed under us."""


def sources(move: Move) -> tuple[State, ...]:
    """The states ``move`` may leave (the registry's SQL guards are made of these)."""
    return MOVES[move][0]


def check(move: Move, current: str, target: str) -> State:
    """``target`` as a State when ``move`` may take ``current`` there; raises otherwise."""
    leaves, reaches = MOVES[move]
    if current not in leaves or target not in reaches:
        raise IllegalTransition(f"cannot {move} an experiment from {current} to {target}")
    return State(target)


def run_state(states: Iterable[str]) -> State:
    """A run is active while any experiment is; once all ended, the worst outcome names it."""
    present = set(states)
    if present & set(STARTED_STATES):
        return State.RUNNING
    if State.QUEUED in present:
        return State.QUEUED
    for state in (State.FAILED, State.INTERRUPTED, State.STOPPED):
        if state in present:
            return state
    return State.SUCCEEDED


@dataclass(frozen=True)
class Attempt:
    """One try at an experiment: the first, or a resume after an interruption.

    ``instance`` is the EC2 instance that ran it, or ``local``."""

    instance: str
    started_at: float
    finished_at: float | None = None
    status: State = State.STARTING
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", State(self.status))


@dataclass(frozen=True, kw_only=True)
class History:
    """What the state machine changes in an experiment's record; backends add their own
    fields (the node's instance and heartbeat, the registry's process)."""

    status: State = State.QUEUED
    exit_code: int | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    resumes: int = 0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", State(self.status))


H = TypeVar("H", bound=History)


def _closed(
    attempts: tuple[Attempt, ...], status: State, reason: str | None, now: float, *,
    again: bool = False,
) -> tuple[Attempt, ...]:  # fmt: skip
    """The attempts with the latest one ended, unless it had ended already (``again``: its
    end is rewritten). A record from before attempts has none."""
    if not attempts or (attempts[-1].finished_at is not None and not again):
        return attempts
    last = dataclasses.replace(attempts[-1], status=status, reason=reason, finished_at=now)
    return (*attempts[:-1], last)


def start(record: H, instance: str, now: float) -> H:
    """A new attempt; a resumed experiment keeps the start of its first one."""
    check(Move.START, record.status, State.STARTING)
    return dataclasses.replace(
        record,
        status=State.STARTING,
        reason=None,
        started_at=record.started_at if record.started_at is not None else now,
        attempts=(*record.attempts, Attempt(instance, now)),
    )


def phase(record: H, reason: str | None) -> H:
    """What a starting experiment is doing (``building environment``): no move, only its
    reason and its latest attempt's; ``running`` clears both."""
    if record.status != State.STARTING:
        raise IllegalTransition(f"a {record.status} experiment has no starting phase")
    attempts = record.attempts
    if attempts:
        attempts = (*attempts[:-1], dataclasses.replace(attempts[-1], reason=reason))
    return dataclasses.replace(record, reason=reason, attempts=attempts)


def running(record: H) -> H:
    """The script has been launched."""
    check(Move.RUNNING, record.status, State.RUNNING)
    attempts = record.attempts
    if attempts:
        last = dataclasses.replace(attempts[-1], status=State.RUNNING, reason=None)
        attempts = (*attempts[:-1], last)
    return dataclasses.replace(record, status=State.RUNNING, reason=None, attempts=attempts)


def finish(record: H, status: str, exit_code: int | None, reason: str | None, now: float) -> H:
    """End a started experiment and its latest attempt."""
    state = check(Move.FINISH, record.status, status)
    return _ended(record, state, exit_code, reason, now)


def _ended(
    record: H, state: State, exit_code: int | None, reason: str | None, now: float, *,
    again: bool = False,
) -> H:  # fmt: skip
    return dataclasses.replace(
        record,
        status=state,
        exit_code=exit_code,
        reason=reason,
        finished_at=now,
        attempts=_closed(record.attempts, state, reason, now, again=again),
    )


def fail(record: H, reason: str, now: float) -> H:
    """End an experiment that never started (its machine could not be made)."""
    check(Move.FAIL, record.status, State.FAILED)
    return _ended(record, State.FAILED, None, reason, now)


def stop(record: H, now: float) -> H:
    """``gridctl stop``: a queued experiment never starts; a started one whose agent did
    not end it is recorded stopped all the same."""
    check(Move.STOP, record.status, State.STOPPED)
    return _ended(record, State.STOPPED, record.exit_code, STOPPED_BY_USER, now)


def requeue(record: H, reason: str | None, now: float) -> H:
    """Locally, an interrupted ``--auto_resume`` attempt ends and the next one queues."""
    check(Move.REQUEUE, record.status, State.QUEUED)
    return _again(record, State.QUEUED, _closed(record.attempts, State.INTERRUPTED, reason, now))


def resume(record: H, instance: str, now: float) -> H:
    """On AWS, a replacement instance takes an interrupted experiment over."""
    check(Move.RESUME, record.status, State.STARTING)
    attempts = (*record.attempts, Attempt(instance, now))
    return dataclasses.replace(_again(record, State.STARTING, attempts), finished_at=None)


def _again(record: H, status: State, attempts: tuple[Attempt, ...]) -> H:
    """The record of a resume: one more, with nothing of the previous attempt's end."""
    return dataclasses.replace(
        record,
        status=status,
        resumes=record.resumes + 1,
        exit_code=None,
        reason=None,
        attempts=attempts,
    )


def overrule(record: H, reason: str, now: float) -> H:
    """The failsafe's word over an end the failing node recorded after its failure."""
    check(Move.OVERRULE, record.status, State.FAILED)
    return _ended(record, State.FAILED, None, reason, now, again=True)
