"""First-fit packing of queued experiments onto free CPUs, GPUs and memory."""

import pytest

from gridctl.agent.core.resources import Capacity
from gridctl.agent.core.scheduler import Allocation, Mount, Request, pack, schedule, waiting

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
        "g": "waiting for 1 GPU(s): 0 free",
        "c": "waiting for 1 CPU(s): 0 free",
    }
    half = [Allocation("r", 1, 6 << 30, ())]
    assert waiting([Request("m", 1, 0, 3 << 30)], half, MACHINE) == {
        "m": "waiting for 3 GiB of memory: 2 GiB free"
    }
