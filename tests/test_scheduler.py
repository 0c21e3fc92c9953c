"""First-fit packing of queued experiments onto free CPUs, GPUs and memory."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridctl.agent.core.resources import Capacity
from gridctl.agent.core.scheduler import (
    Allocation,
    Mount,
    Request,
    _Free,
    pack,
    schedule,
    waiting,
)

MACHINE = Capacity(cpus=4, gpus=2, memory=8 << 30)


def test_starts_as_many_as_fit_and_queues_the_rest():
    queued = [Request(f"e{i}", 1, 0, 0) for i in range(6)]
    assert [a.name for a in schedule(queued, [], MACHINE)] == ["e0", "e1", "e2", "e3"]


def test_running_allocations_take_their_share():
    running = [Allocation("r", 3, 0, ())]
    queued = [Request("a", 1, 0, 0), Request("b", 1, 0, 0)]
    assert [a.name for a in schedule(queued, running, MACHINE)] == ["a"]


def test_gpus_are_assigned_distinct_free_ids():
    running = [Allocation("r", 1, 0, (0,))]
    started = schedule([Request("a", 1, 1, 0), Request("b", 1, 1, 0)], running, MACHINE)
    assert [(a.name, a.gpu_ids) for a in started] == [("a", (1,))]


def test_memory_limits_concurrency_and_smaller_requests_backfill():
    queued = [Request("big", 1, 0, 6 << 30), Request("huge", 1, 0, 4 << 30), Request("s", 1, 0, 1)]
    assert [a.name for a in schedule(queued, [], MACHINE)] == ["big", "s"]


def test_pack_fills_each_machine_before_the_next_with_its_own_gpus():
    requests = [Request(f"e{i}", 1, 1, 0) for i in range(5)]
    machines = pack(requests, MACHINE)
    assert [[(a.name, a.gpu_ids) for a in m] for m in machines] == [
        [("e0", (0,)), ("e1", (1,))],
        [("e2", (0,)), ("e3", (1,))],
        [("e4", (0,))],
    ]


def test_pack_is_limited_by_cpus_and_memory_as_well_as_gpus():
    requests = [Request(f"e{i}", 3, 1, 0) for i in range(2)]
    assert [[a.name for a in m] for m in pack(requests, MACHINE)] == [["e0"], ["e1"]]


def test_pack_refuses_a_request_no_machine_can_hold():
    with pytest.raises(ValueError, match="big"):
        pack([Request("big", 1, 3, 0)], MACHINE)


def test_cores_go_to_the_least_loaded_first():
    started = schedule([Request(f"e{i}", 1, 0, 0) for i in range(4)], [], MACHINE)
    assert [a.cpu_ids for a in started] == [(0,), (1,), (2,), (3,)]
    running = [Allocation("r", 2, 0, (), (0, 1))]
    started = schedule([Request("wide", 1.5, 0, 0)], running, MACHINE)
    assert started[0].cpu_ids == (2, 3)


def test_fractional_cpus_share_cores_evenly():
    two_cores = Capacity(cpus=2, gpus=0, memory=8 << 30)
    started = schedule([Request(f"e{i}", 0.5, 0, 0) for i in range(4)], [], two_cores)
    assert [a.cpu_ids for a in started] == [(0,), (1,), (0,), (1,)]


DATA_V1 = Mount("/opt/datastore", "datastore imgs version 1")
DATA_V2 = Mount("/opt/datastore", "datastore imgs version 2")


def test_a_mount_path_holds_one_datastore_version_at_a_time():
    queued = [
        Request("a", 1, 0, 0, (DATA_V1,)),
        Request("b", 1, 0, 0, (DATA_V2,)),
        Request("c", 1, 0, 0, (DATA_V1,)),
        Request("d", 1, 0, 0, (Mount("/data", "datastore imgs version 2"),)),
    ]
    assert [a.name for a in schedule(queued, [], MACHINE)] == ["a", "c", "d"]
    running = [Allocation("a", 1, 0, (), (0,), (DATA_V1,))]
    assert waiting(queued[1:3], running, MACHINE) == {
        "b": "waiting for /opt/datastore: a has datastore imgs version 1 mounted there",
        "c": None,
    }
    assert [a.name for a in schedule(queued[1:2], [], MACHINE)] == ["b"]


def test_waiting_names_the_resource_that_is_short():
    full = [Allocation("r", 4, 4 << 30, (0, 1))]
    assert waiting([Request("g", 0, 1, 0), Request("c", 1, 0, 0)], full, MACHINE) == {
        "g": "waiting for 1 GPU: 0 of 2 free",
        "c": "waiting for 1 CPU: 0 of 4 free",
    }
    half = [Allocation("r", 1, 6 << 30, ())]
    assert waiting([Request("m", 1, 0, 3 << 30)], half, MACHINE) == {
        "m": "waiting for 3 GiB of memory: 2 GiB of 8 GiB free"
    }


def gang(name: str, nodes: int, cpus: float = 1, gpus: int = 0, memory: int = 0) -> Request:
    return Request(name, cpus, gpus, memory, nodes=nodes)


def test_a_gang_gets_all_its_nodes_at_once_or_none():
    assert schedule([gang("g", 2, gpus=1)], [Allocation("r", 3, 0, ())], MACHINE) == []
    started = schedule([gang("g", 2, gpus=1)], [Allocation("r", 2, 0, ())], MACHINE)
    assert [(a.name, a.rank, a.cpus, a.gpu_ids) for a in started] == [
        ("g", 0, 1, (0,)),
        ("g", 1, 1, (1,)),
    ]
    assert [a.cpu_ids for a in started] == [(0,), (1,)]


def test_a_waiting_gang_names_what_all_its_nodes_need():
    full = [Allocation("r", 2, 6 << 30, (0,))]
    assert waiting(
        [gang("c", 2, cpus=2), gang("g", 2, gpus=1), gang("m", 2, memory=2 << 30)], full, MACHINE
    ) == {
        "c": "waiting for 2 x 2 CPUs: 2 of 4 free",
        "g": "waiting for 2 x 1 GPU: 1 of 2 free",
        "m": "waiting for 2 x 2 GiB of memory: 2 GiB of 8 GiB free",
    }


def test_a_waiting_gang_is_not_starved_by_smaller_experiments_after_it():
    """Two CPUs, one taken; the gang needs both. Every round the oldest experiment ends and a
    new one-CPU experiment is queued behind the gang: were they to backfill into the CPU that
    frees up, the gang would never see two free at once."""
    two = Capacity(cpus=2, gpus=0, memory=8 << 30)
    running = [Allocation("first", 1, 0, (), (0,))]
    queued = [gang("g", 2)]
    for round_ in range(10):
        queued.append(Request(f"s{round_}", 1, 0, 0))
        for alloc in schedule(queued, running, two):
            running.append(alloc)
            queued = [r for r in queued if r.name != alloc.name]
        if any(a.name == "g" for a in running):
            break
        assert waiting(queued, running, two)[f"s{round_}"] == (
            "waiting behind g: a gang that waits for room starts first"
        )
        oldest = running[0].name
        running = [a for a in running if a.name != oldest]
    assert [a.rank for a in running if a.name == "g"] == [0, 1]
    assert round_ == 1  # the gang started as soon as what ran before it had ended


def test_experiments_after_a_waiting_gang_still_use_what_it_does_not_need():
    # The gang waits for GPUs; CPUs beyond its share go to a CPU-only experiment behind it.
    running = [Allocation("r", 1, 0, (0, 1))]
    queued = [gang("g", 2, gpus=1), Request("cpu", 1, 0, 0), Request("more", 2, 0, 0)]
    assert [a.name for a in schedule(queued, running, MACHINE)] == ["cpu"]
    assert waiting(queued, running, MACHINE)["more"] == (
        "waiting behind g: a gang that waits for room starts first"
    )
    # A single experiment that waits holds nothing back, as before gangs.
    queued = [Request("big", 4, 0, 0), Request("small", 1, 0, 0), gang("g", 2)]
    assert [a.name for a in schedule(queued, running, MACHINE)] == ["small", "g", "g"]


def test_two_gangs_competing_start_one_after_the_other_in_queue_order():
    running = [Allocation("r", 2, 0, ())]
    queued = [gang("g1", 2, cpus=2), gang("g2", 2)]
    assert schedule(queued, running, MACHINE) == []  # g2 would fit, but g1 is first
    assert waiting(queued, running, MACHINE) == {
        "g1": "waiting for 2 x 2 CPUs: 2 of 4 free",
        "g2": "waiting behind g1: a gang that waits for room starts first",
    }
    running = schedule(queued, [], MACHINE)
    assert [(a.name, a.rank) for a in running] == [("g1", 0), ("g1", 1)]
    assert waiting(queued[1:], running, MACHINE) == {"g2": "waiting for 2 x 1 CPU: 0 of 4 free"}
    assert [(a.name, a.rank) for a in schedule(queued[1:], [], MACHINE)] == [("g2", 0), ("g2", 1)]


def test_a_gang_too_big_for_the_machine_holds_nothing_back():
    queued = [gang("huge", 3, cpus=2), Request("s", 1, 0, 0)]
    assert [a.name for a in schedule(queued, [], MACHINE)] == ["s"]


def test_a_waiting_gang_holds_its_mount_path_for_its_own_version():
    running = [Allocation("r", 1, 0, (), (0,), (DATA_V1,))]
    queued = [
        Request("g", 1, 0, 0, (DATA_V2,), nodes=2),
        Request("v1", 1, 0, 0, (DATA_V1,)),
        Request("v2", 1, 0, 0, (DATA_V2,)),
    ]
    assert schedule(queued, running, MACHINE) == []
    assert waiting(queued, running, MACHINE)["v1"] == (
        "waiting behind g: a gang that waits for room starts first"
    )
    started = schedule(queued, [], MACHINE)
    assert [(a.name, a.rank) for a in started] == [("g", 0), ("g", 1), ("v2", 0)]


REQUESTS = st.lists(
    st.builds(
        lambda nodes, cpus, gpus, gib: (nodes, cpus, gpus, gib),
        st.integers(1, 3),
        st.sampled_from([0.5, 1, 2]),
        st.integers(0, 1),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=12,
)


@given(REQUESTS, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_every_mix_of_gangs_and_experiments_drains_without_overcommitting(shapes, rnd):
    """Whatever the queue, each round starts whole gangs only, never gives more than the
    machine has, and never leaves the machine idle with work queued (no deadlock); ending
    a random running experiment each round, everything starts."""
    queued = [
        Request(f"e{i}", cpus, gpus, gib << 30, nodes=nodes)
        for i, (nodes, cpus, gpus, gib) in enumerate(shapes)
    ]
    queued = [r for r in queued if not _Free([], MACHINE).blocker(r)]
    running: list[Allocation] = []
    for _ in range(len(queued) + 1):
        started = schedule(queued, running, MACHINE)
        by_name: dict[str, list[int]] = {}
        for alloc in started:
            by_name.setdefault(alloc.name, []).append(alloc.rank)
        nodes = {r.name: r.nodes for r in queued}
        assert all(ranks == list(range(nodes[name])) for name, ranks in by_name.items())
        running += started
        queued = [r for r in queued if r.name not in by_name]
        gpus = [g for a in running for g in a.gpu_ids]
        assert len(gpus) == len(set(gpus)) <= MACHINE.gpus
        assert sum(a.cpus for a in running) <= MACHINE.cpus
        assert sum(a.memory for a in running) <= MACHINE.memory
        if not queued:
            return
        assert running, f"nothing runs while {[r.name for r in queued]} wait"
        ending = rnd.choice(sorted({a.name for a in running}))
        running = [a for a in running if a.name != ending]
    raise AssertionError(f"still queued: {[r.name for r in queued]}")
