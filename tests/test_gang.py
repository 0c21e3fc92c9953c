"""The gang protocol (agent/core/gang.py) over a real directory store: ranks, the barrier,
ends and the outcome they make, and what each rank's script is told."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gridctl.agent.core.contract import ExperimentKeys, InterruptRequest, Member, RankEnd
from gridctl.agent.core.gang import (
    GangCancelled,
    GangTimeout,
    Place,
    Rendezvous,
    Roster,
    combine,
)
from gridctl.agent.core.state import State
from gridctl.agent.core.store import LocalStore

KEYS = ExperimentKeys("run", "run-exp0")


def rendezvous(store: LocalStore, instance: str, attempt: int = 0, nodes: int = 2) -> Rendezvous:
    return Rendezvous(store, KEYS, nodes, attempt, instance, f"10.0.0.{instance[-1]}")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def test_concurrent_nodes_get_distinct_ranks(store: LocalStore) -> None:
    ranks: list[int | None] = []
    nodes = 8

    def join(i: int) -> None:
        ranks.append(rendezvous(store, f"i-{i}", nodes=nodes).register())

    threads = [threading.Thread(target=join, args=(i,)) for i in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ranks) == list(range(nodes))  # type: ignore[type-var]
    assert rendezvous(store, "i-9", nodes=nodes).register() is None


def test_a_restarted_agent_gets_its_rank_back(store: LocalStore) -> None:
    assert rendezvous(store, "i-1").register() == 0
    assert rendezvous(store, "i-2").register() == 1
    assert rendezvous(store, "i-1").register() == 0


def end(rank: int, status: State, at: float, *, code: int | None = None, stays: bool = True):
    return RankEnd(rank, status, code, "why", at, stays=stays)


def test_a_survivor_keeps_its_rank_and_a_replacement_takes_the_lost_one(
    store: LocalStore,
) -> None:
    first = {name: rendezvous(store, name) for name in ("i-1", "i-2")}
    assert first["i-1"].register() == 0 and first["i-2"].register() == 1
    # i-2 (rank 1) is reclaimed; i-1 stays for the next attempt.
    first["i-1"].end(end(0, State.INTERRUPTED, 1.0))
    first["i-2"].end(end(1, State.INTERRUPTED, 1.0, stays=False))
    # The replacement registers before the survivor: it must not take rank 0.
    assert rendezvous(store, "i-3", attempt=1).register() == 1
    assert rendezvous(store, "i-1", attempt=1).register() == 0


def test_the_barrier_waits_for_every_node_and_gives_the_roster(store: LocalStore) -> None:
    one, two = rendezvous(store, "i-1"), rendezvous(store, "i-2")
    assert one.register(port=29999) == 0
    one.mark_ready(0)
    assert two.register() == 1
    # Registered is not ready: node two is still installing its requirements.
    with pytest.raises(GangTimeout, match="^1 of 2 nodes came up$"):
        one.wait_for_all(timeout=0.2, poll=0.05)
    threading.Timer(0.3, two.mark_ready, (1,)).start()
    roster = one.wait_for_all(timeout=60, poll=0.05)
    assert roster.addresses == ("10.0.0.1", "10.0.0.2")
    assert (roster.master_addr, roster.master_port) == ("10.0.0.1", 29999)


def test_a_gang_short_of_nodes_times_out_saying_how_many_came_up(store: LocalStore) -> None:
    one = rendezvous(store, "i-1", nodes=3)
    assert one.register() == 0
    one.mark_ready(0)
    with pytest.raises(GangTimeout, match="^1 of 3 nodes came up$"):
        one.wait_for_all(timeout=0.2, poll=0.05)
    with pytest.raises(GangCancelled):
        one.wait_for_all(timeout=60, poll=0.05, cancelled=lambda: True)


def test_outcome_waits_for_every_rank() -> None:
    assert combine({0: end(0, State.SUCCEEDED, 1.0)}, 2) is None
    both = {0: end(0, State.SUCCEEDED, 1.0), 1: end(1, State.SUCCEEDED, 2.0)}
    assert combine(both, 2) == (State.SUCCEEDED, 0, None)


def test_the_earliest_failure_names_the_outcome() -> None:
    ends = {
        0: end(0, State.FAILED, 5.0, code=1),
        1: end(1, State.FAILED, 3.0, code=7),
        2: end(2, State.STOPPED, 6.0),
    }
    assert combine(ends, 3) == (State.FAILED, 7, "node 1: why")


def test_failures_after_the_alarm_are_the_interruptions_doing() -> None:
    alarm = InterruptRequest(120.0, 4.0, node=1, attempt=0, reason="node 1: spot notice")
    after = {0: end(0, State.FAILED, 5.0, code=1), 1: end(1, State.INTERRUPTED, 6.0)}
    assert combine(after, 2, alarm) == (State.INTERRUPTED, None, "node 1: spot notice")
    before = {0: end(0, State.FAILED, 3.0, code=1), 1: end(1, State.INTERRUPTED, 6.0)}
    assert combine(before, 2, alarm) == (State.FAILED, 1, "node 0: why")


def test_a_stopped_gang_is_stopped_for_its_first_stopped_ranks_reason() -> None:
    ends = {0: end(0, State.SUCCEEDED, 1.0), 1: end(1, State.STOPPED, 2.0)}
    assert combine(ends, 2) == (State.STOPPED, None, "why")
    limit = "ran longer than --max_runtime 5s"
    ends = {
        0: RankEnd(0, State.STOPPED, 143, "stopped by user", 3.0),
        1: RankEnd(1, State.STOPPED, 143, limit, 2.0),
    }
    assert combine(ends, 2) == (State.STOPPED, None, limit)
    unsaid = {0: RankEnd(0, State.STOPPED, 143, None, 3.0), 1: end(1, State.SUCCEEDED, 1.0)}
    assert combine(unsaid, 2) == (State.STOPPED, None, "stopped by user")


def test_ends_and_alarm_are_recorded_once(store: LocalStore) -> None:
    one = rendezvous(store, "i-1")
    assert one.end(end(1, State.INTERRUPTED, 1.0, stays=False))
    assert not one.end(end(1, State.SUCCEEDED, 2.0))
    assert one.raise_alarm(InterruptRequest(30.0, 1.0, 1, 0))
    assert not one.raise_alarm(InterruptRequest(60.0, 2.0, None, 0))
    look = rendezvous(store, "i-2").look()
    assert look.ends[1].status == State.INTERRUPTED
    assert look.alarm == InterruptRequest(30.0, 1.0, 1, 0)


ROSTER = Roster((Member(0, "i-1", "10.0.0.1", 29400), Member(1, "i-2", "10.0.0.2")))


def test_each_rank_is_told_its_place() -> None:
    env = Place(1, ROSTER, gpus_per_node=4).environment()
    assert env == {
        "GRIDCTL_NODE_RANK": "1",
        "GRIDCTL_NUM_NODES": "2",
        "GRIDCTL_NODE_IPS": "10.0.0.1\n10.0.0.2",
        "GRIDCTL_GPUS_PER_NODE": "4",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29400",
        "NODE_RANK": "1",
        "PL_TRAINER_NUM_NODES": "2",
    }


def test_torch_runs_the_script_through_torchrun_and_others_as_they_are() -> None:
    argv = ("python", "train.py", "--lr", "0.1")
    assert Place(1, ROSTER, 0, "lightning").argv(argv) == argv
    assert Place(1, ROSTER, 0, "torch").argv(argv) == (
        "python",
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--node-rank=1",
        "--nproc-per-node=1",
        "--master-addr=10.0.0.1",
        "--master-port=29400",
        "train.py",
        "--lr",
        "0.1",
    )
    wrapped = Place(0, ROSTER, 2, "torch").argv(("bash", "run.sh"))
    assert wrapped[-3:] == ("--no-python", "bash", "run.sh")
    assert "--nproc-per-node=2" in wrapped
