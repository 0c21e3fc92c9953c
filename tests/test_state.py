"""The experiment state machine: random sequences of events, on a bare record and on the
local registry, never record a move the diagram lacks; ``resumes`` only grows; an ended
experiment changes no more (but for the failsafe's overrule); illegal moves raise."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.agent.core import state
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import (
    ENDED_STATES,
    MOVES,
    STARTED_STATES,
    History,
    IllegalTransition,
    Move,
    State,
)
from gridctl.agent.service.registry import Registry, RunRecord

FINAL = (State.SUCCEEDED, State.FAILED, State.STOPPED)
"""Ended for good: only ``interrupted`` may resume."""
Q, S, R = State.QUEUED, State.STARTING, State.RUNNING
ALLOWED = {
    (Q, S), (S, R), (S, Q), (R, Q), (State.INTERRUPTED, S), (Q, State.FAILED), (Q, State.STOPPED),
    *((started, end) for started in STARTED_STATES for end in ENDED_STATES),
    *((end, State.FAILED) for end in ENDED_STATES if end != State.FAILED),
}  # fmt: skip
"""The diagram in agent/core/state.py, written out apart from the table the code obeys."""


def apply(record: History, move: Move, target: State, now: float) -> History:
    """The state machine's function for ``move`` (``target`` is the end, for finish)."""
    match move:
        case Move.START:
            return state.start(record, "i-1", now)
        case Move.RUNNING:
            return state.running(record)
        case Move.FINISH:
            return state.finish(record, target, None, "why", now)
        case Move.FAIL:
            return state.fail(record, "why", now)
        case Move.REQUEUE:
            return state.requeue(record, "notice", now)
        case Move.RESUME:
            return state.resume(record, "i-2", now)
        case Move.STOP:
            return state.stop(record, now)
        case Move.OVERRULE:
            return state.overrule(record, "why", now)
    raise AssertionError(move)


def check_step(before: History, after: History) -> None:
    """What holds between any two records of one experiment, one move apart."""
    if after.status != before.status:
        assert (before.status, after.status) in ALLOWED
    assert after.resumes >= before.resumes
    if before.status in FINAL:
        assert after == before or after.status == State.FAILED
    check_record(after)


def check_record(record: History) -> None:
    """Only the latest attempt may be open, and exactly while an agent has the
    experiment; each resume made one attempt more."""
    assert all(a.finished_at is not None for a in record.attempts[:-1])
    last_open = bool(record.attempts) and record.attempts[-1].finished_at is None
    assert last_open == (record.status in STARTED_STATES)
    assert record.resumes <= len(record.attempts) <= record.resumes + 1
    if record.status in ENDED_STATES:
        assert record.finished_at is not None


def legal_moves(status: State) -> list[tuple[Move, State]]:
    return [
        (move, end)
        for move, (leaves, reaches) in MOVES.items()
        if status in leaves
        for end in (reaches if move == Move.FINISH else ENDED_STATES[:1])
    ]


@settings(max_examples=300)
@given(st.data())
def test_random_events_only_ever_make_the_moves_of_the_diagram(data):
    """Mostly moves the record allows (to reach deep histories), some it does not."""
    record = History()
    for now in range(data.draw(st.integers(1, 40))):
        if data.draw(st.booleans()):
            move, target = data.draw(st.sampled_from(legal_moves(record.status)))
        else:
            move, target = data.draw(st.sampled_from(Move)), data.draw(st.sampled_from(State))
        leaves, reaches = MOVES[move]
        if record.status not in leaves or (move == Move.FINISH and target not in reaches):
            with pytest.raises(IllegalTransition):
                apply(record, move, target, float(now))
            continue
        after = apply(record, move, target, float(now))
        assert after.status in reaches
        check_step(record, after)
        record = after


@pytest.mark.parametrize(
    ("record", "move"),
    [
        (History(), Move.RUNNING),
        (History(), Move.FINISH),
        (History(), Move.RESUME),
        (History(status=State.RUNNING), Move.START),
        (History(status=State.SUCCEEDED), Move.STOP),
        (History(status=State.FAILED), Move.START),
        (History(status=State.STOPPED), Move.REQUEUE),
        (History(status=State.INTERRUPTED), Move.FINISH),
        (History(status=State.RUNNING), Move.FAIL),
        (History(status=State.QUEUED), Move.OVERRULE),
    ],
)
def test_an_illegal_move_raises_and_says_what_it_was(record: History, move: Move):
    with pytest.raises(IllegalTransition, match=f"cannot {move} an experiment from"):
        apply(record, move, State.SUCCEEDED, 1.0)


def test_finish_refuses_a_state_that_is_no_end():
    with pytest.raises(IllegalTransition, match="from running to queued"):
        state.finish(History(status=State.RUNNING), State.QUEUED, None, None, 1.0)


def test_a_run_is_named_by_its_busiest_or_worst_experiment():
    assert state.run_state([State.SUCCEEDED, State.STARTING]) == State.RUNNING
    assert state.run_state([State.SUCCEEDED, State.QUEUED]) == State.QUEUED
    assert state.run_state(["stopped", "failed", "interrupted"]) == State.FAILED
    assert state.run_state([State.SUCCEEDED]) == State.SUCCEEDED


REGISTRY_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["claim", "running", "finish", "requeue", "stop"]),
        st.sampled_from(ENDED_STATES),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REGISTRY_EVENTS)
def test_the_registry_records_only_the_moves_of_the_diagram(sequence):
    """What the local scheduler, its runners and the CLI do to one experiment, in any
    order: a refused move raises and leaves the row as it was."""
    with tempfile.TemporaryDirectory() as folder:
        registry = Registry(Path(folder) / "registry.db")
        spec = ExperimentSpec("r", "r-exp0", 0, ("python", "t.py"), "bundles/b.tar.gz")
        registry.create_run(RunRecord("r", "local", 0.0, None, "grid_search", 1, "b", "/"), [spec])
        actions = {
            "claim": lambda _: registry.claim("r-exp0", (0,)),
            "running": lambda _: registry.mark_running("r-exp0", 1, 1.0),
            "finish": lambda end: registry.finish("r-exp0", end, None, "why"),
            "requeue": lambda _: registry.requeue("r-exp0", "notice"),
            "stop": lambda _: registry.request_stop(["r-exp0"]),
        }
        try:
            before = registry.get_experiment("r-exp0")
            assert before is not None
            for action, end in sequence:
                try:
                    actions[action](end)
                except IllegalTransition:
                    assert registry.get_experiment("r-exp0") == before
                    continue
                after = registry.get_experiment("r-exp0")
                assert after is not None
                check_step(before, after)
                before = after
        finally:
            registry.close()
