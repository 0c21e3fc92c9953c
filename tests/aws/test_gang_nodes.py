"""Gangs on AWS (SPEC section 9): the real node agent on each simulated instance of a group
of two in moto, each with its own metadata service, root and loopback address; the nodes
find each other through the bucket alone, and real torch.distributed (gloo, CPU) traffic
flows between them."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from gridctl.agent.core.contract import (
    ON_DEMAND,
    Charge,
    InterruptRequest,
    Member,
    RankEnd,
    charge_key,
    ledger_prefix,
)
from gridctl.agent.core.cost import billed_seconds, total_cost

from .emulator import free_port
from .gang_nodes import KEYS, PRICE, RUN, TYPE, Gang, SimNode, wait_for
from .single_node import vanish

ALLREDUCE = """\
import json, os
import torch
import torch.distributed as dist

if "{mode}" == "torch":
    dist.init_process_group()  # torchrun gave RANK, WORLD_SIZE, MASTER_ADDR/PORT
else:
    rank, nodes = int(os.environ["NODE_RANK"]), int(os.environ["GRIDCTL_NUM_NODES"])
    dist.init_process_group("gloo", rank=rank, world_size=nodes)
value = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(value)
seen = {{
    "rank": dist.get_rank(),
    "world": dist.get_world_size(),
    "sum": value.item(),
    "master": os.environ["MASTER_ADDR"],
    "port": os.environ["MASTER_PORT"],
    "ips": os.environ["GRIDCTL_NODE_IPS"].splitlines(),
    "node_rank": os.environ["GRIDCTL_NODE_RANK"],
}}
with open("allreduce.json", "w") as f:
    json.dump(seen, f)
print("all-reduced", value.item(), flush=True)
dist.destroy_process_group()
"""
ONE_FAILS = """\
import os, signal, sys, time

if os.environ["NODE_RANK"] == "1":
    time.sleep(1)
    print("rank 1 diverged", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: (print("rank 0 got SIGTERM", flush=True), sys.exit(143)))
for step in range(6000):
    print("step", step, flush=True)
    time.sleep(0.1)
"""
CHECKPOINTING = """\
import os, signal, sys, time

slow_save = "--slow-save" in sys.argv  # five seconds to save after SIGTERM

rank = os.environ["NODE_RANK"]
resumes = int(os.environ["GRIDCTL_RESUME_COUNT"])
step = 0
if os.path.exists("ckpt.txt"):
    with open("ckpt.txt") as f:
        step = int(f.read())
    print("rank", rank, "resumed from step", step, flush=True)
signalled = False


def on_sigterm(signum, frame):
    global signalled
    signalled = True


signal.signal(signal.SIGTERM, on_sigterm)
delay = 0.1 if resumes == 0 else 0.01
while step < 300:
    if signalled:
        time.sleep(5 if slow_save else 0)
        print("rank", rank, "saved step", step, "and exiting", flush=True)
        sys.exit(0)
    time.sleep(delay)
    step += 1
    partial = os.path.join(os.environ["GRIDCTL_SCRATCH_DIR"], "ckpt.txt")
    with open(partial, "w") as f:
        f.write(str(step))
    os.replace(partial, "ckpt.txt")
    print("rank", rank, "step", step, flush=True)
os.makedirs("out", exist_ok=True)
with open("out/done.txt", "w") as f:
    f.write(rank + " " + str(step))
print("rank", rank, "done at step", step, flush=True)
"""


def boot_all(gang: Gang, **extra: str) -> list[SimNode]:
    nodes = [gang.boot(instance) for instance in sorted(gang.instances())]
    return [gang.start(node, **extra) for node in nodes]


def member(gang: Gang, attempt: int, rank: int) -> Member:
    return Member.decode(gang.store.get_bytes(KEYS.member(attempt, rank)))


def rank_end(gang: Gang, attempt: int, rank: int) -> RankEnd:
    return RankEnd.decode(gang.store.get_bytes(KEYS.ended(attempt, rank)))


def holder(gang: Gang, attempt: int, rank: int) -> SimNode:
    instance = member(gang, attempt, rank).instance
    return next(node for node in gang.nodes if node.instance_id == instance)


@pytest.mark.parametrize("framework", [None, "torch"], ids=["once_per_node", "torchrun"])
def test_a_torch_all_reduce_spans_two_nodes(gang, project, framework):
    script = ALLREDUCE.format(mode=framework or "default")
    gang.deploy({"train.py": script}, ("python", "train.py"), project, framework=framework)
    port = free_port()
    nodes = boot_all(gang, GRIDCTL_MASTER_PORT=str(port))
    for node in nodes:
        assert node.ended() == 0, node.output()
    status = gang.status()
    assert (status["status"], status["exit_code"], status["resumes"]) == ("succeeded", 0, 0)
    master = member(gang, 0, 0)
    assert status["instance"] == master.instance
    assert master.port == port
    addresses = [member(gang, 0, rank).address for rank in (0, 1)]
    assert sorted(addresses) == sorted(node.address for node in nodes)
    for rank in (0, 1):
        seen = json.loads(gang.artifact(rank, "allreduce.json"))
        assert seen == {
            "rank": rank,
            "world": 2,
            "sum": 3.0,
            "master": master.address,
            "port": str(port),
            "ips": addresses,
            "node_rank": str(rank),
        }
        assert b"all-reduced 3.0" in gang.log(rank)
        assert f"node {rank} of 2: all 2 nodes are here".encode() in gang.log(rank)
    assert gang.store.exists(f"{KEYS.artifacts}/node-1/allreduce.json")
    assert gang.desired_capacity() == 0
    # Two instances ran it: each rank's is charged, and the experiment costs both.
    keys = sorted(gang.store.list(ledger_prefix(RUN)))
    assert keys == [charge_key(RUN, KEYS.experiment, 0, rank) for rank in (0, 1)]
    charges = [Charge.decode(gang.store.get_bytes(key)) for key in keys]
    assert {c.instance for c in charges} == {n.instance_id for n in nodes}
    for rank, charge in enumerate(charges):
        assert (charge.rank, charge.attempt, charge.instance_type) == (rank, 0, TYPE)
        assert (charge.market, charge.price_per_hour, charge.share) == (ON_DEMAND, PRICE, 1.0)
        assert charge.ended_at is not None
    now = time.time()
    both = sum(PRICE * billed_seconds(c, now) / 3600 for c in charges)
    assert total_cost(charges, now) == pytest.approx(both)


def test_a_failing_rank_fails_the_gang_with_its_exit_code(gang, project):
    gang.deploy({"train.py": ONE_FAILS}, ("python", "train.py"), project)
    nodes = boot_all(gang, GRIDCTL_MASTER_PORT=str(free_port()))
    for node in nodes:
        assert node.ended() == 0, node.output()
    status = gang.status()
    assert (status["status"], status["exit_code"]) == ("failed", 3)
    assert status["reason"] == "node 1: exit code 3"
    assert b"rank 1 diverged" in gang.log(1)
    stopped = rank_end(gang, 0, 0)
    assert stopped.status == "stopped"
    # Stopped at once, not after its 600 s loop: within seconds of the failure.
    assert stopped.ended_at - rank_end(gang, 0, 1).ended_at < 30
    assert gang.desired_capacity() == 0


def test_a_gang_whose_second_node_never_comes_fails_and_scales_to_zero(gang, project):
    gang.deploy({"train.py": ONE_FAILS}, ("python", "train.py"), project)
    first = gang.boot(sorted(gang.instances())[0])
    gang.start(first, GRIDCTL_GANG_TIMEOUT="3", GRIDCTL_MASTER_PORT=str(free_port()))
    assert first.ended() == 0, first.output()
    status = gang.status()
    assert (status["status"], status["exit_code"]) == ("failed", None)
    assert status["reason"] == "1 of 2 nodes came up"
    assert b"the gang did not form: 1 of 2 nodes came up" in gang.log(0)
    assert b"step" not in gang.log(0)
    assert gang.desired_capacity() == 0
    assert gang.instances() == {}


def resumed_from(log: bytes) -> list[int]:
    return [int(step) for step in re.findall(rb"resumed from step (\d+)", log)]


@pytest.mark.parametrize(
    ("lost", "how"),
    [(1, "spot_notice"), (0, "spot_notice"), (1, "terminated")],
    ids=["rank1_reclaimed", "rank0_reclaimed", "rank1_terminated"],
)
def test_a_reclaimed_node_is_replaced_and_the_gang_resumes_on_the_survivor(
    gang, project, lost, how
):
    """A spot notice on one node's metadata service, or its instance going away (systemd
    stopping the agent: SIGTERM), interrupts the whole gang; only that machine is replaced."""
    # After a spot notice the scripts take their time to save (the notice leaves 2 minutes);
    # the instance going away leaves only the grace period.
    argv = ("python", "train.py") + (("--slow-save",) if how == "spot_notice" else ())
    gang.deploy({"train.py": CHECKPOINTING}, argv, project, auto_resume=True)
    settings = {"GRIDCTL_MASTER_PORT": str(free_port()), "GRIDCTL_SYNC_INTERVAL": "0.5"}
    boot_all(gang, **settings)
    wait_for(lambda: all(b"step 5\n" in gang.log(rank) for rank in (0, 1)), why="both step")
    kept = 1 - lost
    survivor, reclaimed = holder(gang, 0, kept), holder(gang, 0, lost)
    survivor_pid = survivor.agent.pid
    if how == "spot_notice":
        reclaimed.imds.notify_spot_interruption(120)
    else:
        reclaimed.agent.send_signal(signal.SIGTERM)
    # AWS ends the reclaimed instance and launches another (here at once, so the replacement
    # may boot while the gang still saves: it waits for that attempt to end); the survivor
    # keeps its own instance.
    replacement = gang.reclaim(reclaimed)
    assert set(gang.instances()) == {survivor.instance_id, replacement}
    newcomer = gang.start(gang.boot(replacement), **settings)
    assert reclaimed.ended() == 0, reclaimed.output()
    wait_for(lambda: gang.store.exists(KEYS.ended(0, kept)), why="the survivor's rank ended")
    ends = {rank: rank_end(gang, 0, rank) for rank in (0, 1)}
    assert (ends[kept].status, ends[kept].stays) == ("interrupted", True)
    assert (ends[lost].status, ends[lost].stays) == ("interrupted", False)
    heard = "spot interruption notice" if how == "spot_notice" else "instance terminated"
    assert heard in ends[lost].reason
    assert ends[kept].reason == f"the gang was interrupted (node {lost}: {ends[lost].reason})"
    saved = {rank: int(gang.artifact(rank, "ckpt.txt")) for rank in (0, 1)}
    assert all(step > 0 for step in saved.values())
    assert survivor.ended() == 0, survivor.output()
    if how == "spot_notice":
        assert "waiting for attempt 0 to end" in newcomer.output()
    assert survivor.agent.pid == survivor_pid
    status = gang.status()
    assert (status["status"], status["exit_code"], status["resumes"]) == ("succeeded", 0, 1)
    assert status["attempts"][0]["reason"] == f"node {lost}: {ends[lost].reason}"
    # The record names rank 0's instance: whichever machine held rank 0 in each attempt.
    holders = [holder(gang, 0, 0).instance_id, holder(gang, 1, 0).instance_id]
    assert [(a["instance"], a["status"]) for a in status["attempts"]] == [
        (holders[0], "interrupted"),
        (holders[1], "succeeded"),
    ]
    assert member(gang, 1, kept).instance == survivor.instance_id
    assert member(gang, 1, lost).instance == replacement
    for rank in (0, 1):
        log = gang.log(rank)
        assert resumed_from(log) == [saved[rank]], log.decode()
        assert f"rank {rank} saved step {saved[rank]} and exiting".encode() in log
        assert gang.artifact(rank, "out/done.txt") == f"{rank} 300".encode()
    assert gang.store.exists(f"{KEYS.artifacts}/node-1/ckpt.txt")
    assert gang.desired_capacity() == 0
    assert gang.nodes[-1].ended() == 0, gang.nodes[-1].output()


def test_a_stop_object_stops_every_node(gang, project):
    gang.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project)
    nodes = boot_all(gang, GRIDCTL_MASTER_PORT=str(free_port()))
    wait_for(lambda: all(b"step 3\n" in gang.log(rank) for rank in (0, 1)), why="both step")
    gang.store.put_bytes(KEYS.stop, b"")
    for node in nodes:
        assert node.ended() == 0, node.output()
    status = gang.status()
    assert (status["status"], status["reason"]) == ("stopped", "stopped by user")
    assert [rank_end(gang, 0, rank).status for rank in (0, 1)] == ["stopped", "stopped"]
    assert gang.desired_capacity() == 0


def test_a_node_that_dies_silently_is_found_by_its_peer_and_replaced(gang, project):
    gang.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project, auto_resume=True)
    settings = {"GRIDCTL_MASTER_PORT": str(free_port()), "GRIDCTL_SYNC_INTERVAL": "0.5"}
    boot_all(gang, **settings)
    wait_for(lambda: all(b"step 5\n" in gang.log(rank) for rank in (0, 1)), why="both step")
    survivor, lost = holder(gang, 0, 0), holder(gang, 0, 1)
    survivor_pid = survivor.agent.pid
    vanish(lost.agent)  # no notice, no final sync, no end of its own; the machine lives on
    # The survivor ends the silent node's instance, and the group launches another.
    wait_for(lambda: len(gang.instances()) == 2 and lost.instance_id not in gang.instances())
    (replacement,) = set(gang.instances()) - {survivor.instance_id}
    gang.start(gang.boot(replacement), **settings)
    assert survivor.ended() == 0, survivor.output()
    assert survivor.agent.pid == survivor_pid
    written_for_it = rank_end(gang, 0, 1)
    assert (written_for_it.status, written_for_it.stays) == ("interrupted", False)
    assert written_for_it.reason == "node 1 stopped reporting (its machine was lost)"
    assert rank_end(gang, 0, 0).stays
    assert member(gang, 0, 1).instance == lost.instance_id
    status = gang.status()
    assert (status["status"], status["resumes"]) == ("succeeded", 1)
    assert status["attempts"][0]["reason"] == written_for_it.reason
    assert member(gang, 1, 0).instance == survivor.instance_id
    assert member(gang, 1, 1).instance == replacement
    for rank in (0, 1):
        (step,) = resumed_from(gang.log(rank))
        assert step > 0
        assert gang.artifact(rank, "out/done.txt") == f"{rank} 300".encode()
    assert gang.desired_capacity() == 0


def test_gridctl_interrupt_of_one_node_ends_only_its_instance(gang, project):
    gang.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project, auto_resume=True)
    settings = {"GRIDCTL_MASTER_PORT": str(free_port()), "GRIDCTL_SYNC_INTERVAL": "0.5"}
    boot_all(gang, **settings)
    wait_for(lambda: all(b"step 5\n" in gang.log(rank) for rank in (0, 1)), why="both step")
    survivor, named = holder(gang, 0, 0), holder(gang, 0, 1)
    request = InterruptRequest(60.0, time.time(), node=1, attempt=0)
    gang.store.put_bytes(KEYS.interrupt, request.encode())
    assert named.ended() == 0, named.output()
    # The named node ended its own instance, as a reclaim would; the group launched another.
    wait_for(lambda: len(gang.instances()) == 2 and named.instance_id not in gang.instances())
    (replacement,) = set(gang.instances()) - {survivor.instance_id}
    gang.start(gang.boot(replacement), **settings)
    assert survivor.ended() == 0, survivor.output()
    status = gang.status()
    assert (status["status"], status["resumes"]) == ("succeeded", 1)
    assert status["attempts"][0]["reason"] == "node 1: interrupted by gridctl interrupt"
    assert rank_end(gang, 0, 1).reason == "interrupted by gridctl interrupt"
    assert not rank_end(gang, 0, 1).stays
    assert [member(gang, 1, rank).instance for rank in (0, 1)] == [
        survivor.instance_id,
        replacement,
    ]
    assert not gang.store.exists(KEYS.interrupt)  # served: it did not interrupt the resume
    for rank in (0, 1):
        assert len(resumed_from(gang.log(rank))) == 1
    assert gang.desired_capacity() == 0


def test_gridctl_interrupt_of_every_node_replaces_every_instance(gang, project):
    gang.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project, auto_resume=True)
    settings = {"GRIDCTL_MASTER_PORT": str(free_port())}
    # One node looks at its controls only after the gang's end: it hears the alarm first.
    first = [gang.boot(instance) for instance in sorted(gang.instances())]
    gang.start(first[0], **settings, GRIDCTL_CONTROL_INTERVAL="1")
    gang.start(first[1], **settings, GRIDCTL_CONTROL_INTERVAL="600")
    wait_for(lambda: all(b"step 5\n" in gang.log(rank) for rank in (0, 1)), why="both step")
    request = InterruptRequest(60.0, time.time(), node=None, attempt=0)
    gang.store.put_bytes(KEYS.interrupt, request.encode())
    for node in first:
        assert node.ended() == 0, node.output()
    assert [rank_end(gang, 0, rank).stays for rank in (0, 1)] == [False, False]
    # Each node ended its own instance; the group launched two others.
    old = {node.instance_id for node in first}
    wait_for(lambda: len(gang.instances()) == 2 and not old & set(gang.instances()))
    replacements = [gang.start(gang.boot(i), **settings) for i in sorted(gang.instances())]
    for node in replacements:
        assert node.ended() == 0, node.output()
    status = gang.status()
    assert (status["status"], status["resumes"]) == ("succeeded", 1)
    assert {member(gang, 1, rank).instance for rank in (0, 1)} == {
        node.instance_id for node in replacements
    }
    for rank in (0, 1):
        assert len(resumed_from(gang.log(rank))) == 1
    assert gang.desired_capacity() == 0
