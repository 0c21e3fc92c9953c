"""First-fit packing of queued experiments onto free CPUs, GPUs and memory."""

from gridctl.agent.resources import Capacity
from gridctl.agent.scheduler import Allocation, Request, schedule

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
    assert started == [Allocation("a", 1, 0, (1,))]


def test_memory_limits_concurrency_and_smaller_requests_backfill():
    queued = [Request("big", 1, 0, 6 << 30), Request("huge", 1, 0, 4 << 30), Request("s", 1, 0, 1)]
    assert [a.name for a in schedule(queued, [], MACHINE)] == ["big", "s"]
