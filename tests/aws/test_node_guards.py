"""The guards on a node (SPEC section 11), with the real agent against moto and the IMDSv2
stand-in: ``--max_runtime`` stops a script as a stop object would, on a single node and on
every node of a gang; ``--max_cost`` stops a run's experiments once its ledger reaches the
cap, and a node that boots after that starts none of its own. The charges are written here
as nodes write them (``runs/<run>/ledger/``)."""

from __future__ import annotations

import re
import signal
import time

import pytest

from gridctl.agent.core.contract import Charge, Member, RankEnd, charge_key

from .emulator import free_port
from .gang_nodes import KEYS
from .gang_nodes import wait_for as wait_for_gang
from .single_node import RUN, Cloud, ended, log_of, logged, started, status_is, wait_for
from .test_node_agent import SHARED

SAVES = """\
import os, signal, sys, time
rank = os.environ.get("GRIDCTL_NODE_RANK", "0")
def on_term(*_):
    open("saved.txt", "w").write("saved")
    print("rank", rank, "got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
for step in range(6000):
    print("step", step, flush=True)
    time.sleep(0.1)
"""
SPENT = re.compile(r"^the run's budget of \$0\.01 was reached \(\$([\d.]+) spent\)$")


def over_the_cap(now: float) -> Charge:
    """An ended charge of an earlier experiment of the run: 0.4428 USD/h for 100 s is
    0.0123 USD, over a cap of 0.01."""
    return Charge(
        experiment=f"{RUN}-exp9", attempt=0, rank=0, instance="i-0earlier",
        instance_type="t3.medium", zone="us-east-1a", market="on-demand",
        price_per_hour=0.4428, price_source="price table",
        started_at=now - 200, seen_at=now - 100, ended_at=now - 100,
    )  # fmt: skip


def budget_reason(status: dict) -> float:
    """The amount spent that the status's reason names (the run's own nodes may add their
    charges to the one written here)."""
    found = SPENT.match(status["reason"] or "")
    assert found is not None, status["reason"]
    return float(found.group(1))


def test_max_runtime_stops_the_script_keeps_its_files_and_scales_to_zero(single_node, project):
    cloud: Cloud = single_node
    cloud.deploy({"train.py": SAVES}, ("python", "train.py"), project, max_runtime=3)
    code, output = cloud.run_agent()
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"]) == ("stopped", 0)
    assert status["reason"] == "ran longer than --max_runtime 3s"
    assert b"gridctl: ran longer than --max_runtime 3s: stopping it" in log_of(cloud)
    assert cloud.artifact("saved.txt") == b"saved"
    assert cloud.desired_capacity() == 0


LEFT = re.compile(rb"--max_runtime 20s: ([\d.]+) s left after the earlier attempts' ([\d.]+) s")


def test_a_replacement_gets_what_the_earlier_attempt_left_of_max_runtime(single_node, project):
    cloud: Cloud = single_node
    argv = ("python", "train.py")
    cloud.deploy({"train.py": SAVES}, argv, project, auto_resume=True, max_runtime=20)
    with started(cloud) as agent:
        wait_for(logged(cloud, "step 3"))
        cloud.imds.notify_spot_interruption(120)
        output = ended(agent)
    assert agent.returncode == 0, output
    assert cloud.status()["status"] == "interrupted"
    cloud.replace_instance()
    code, output = cloud.run_agent(cloud.fresh_root())
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["resumes"]) == ("stopped", 1)
    assert status["reason"] == "ran longer than --max_runtime 20s"
    first, second = status["attempts"]
    used = first["finished_at"] - first["started_at"]
    found = LEFT.search(log_of(cloud))
    assert found is not None, log_of(cloud).decode()
    left, before = (float(n) for n in found.groups())
    assert before == pytest.approx(used, abs=0.06)
    assert left == pytest.approx(20 - used, abs=0.06)
    assert second["finished_at"] - second["started_at"] >= left - 0.06


def test_a_ledger_crossing_the_budget_stops_the_machines_experiments(single_node, project):
    cloud: Cloud = single_node
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    # Two GPUs each of the machine's four: two run, the third waits for their GPUs.
    argv = ("python", "train.py")
    cloud.deploy({"train.py": SAVES}, argv, project, SHARED, gpus=2, max_cost=0.01)
    first, second, third = SHARED.experiments
    with started(cloud, GRIDCTL_BUDGET_INTERVAL="0.5") as agent:
        wait_for(lambda: all(status_is(cloud, "running", e)() for e in (first, second)))
        wait_for(lambda: all(b"step 3\n" in log_of(cloud, e) for e in (first, second)))
        assert cloud.status(third)["status"] == "starting"
        earlier = over_the_cap(cloud.status(first)["started_at"])
        cloud.store.put_bytes(charge_key(RUN, earlier.experiment, 0, 0), earlier.encode())
        output = ended(agent)
    assert agent.returncode == 0, output
    for name in (first, second):
        status = cloud.status(name)
        assert status["status"] == "stopped", name
        assert budget_reason(status) >= 0.0123
        assert cloud.store.get_bytes(f"runs/{RUN}/{name}/artifacts/saved.txt") == b"saved"
    waited = cloud.status(third)
    assert waited["status"] == "stopped"
    assert budget_reason(waited) >= 0.0123
    assert b"step" not in log_of(cloud, third)
    assert cloud.desired_capacity() == 0


def test_a_node_that_boots_after_the_budget_is_spent_starts_nothing(single_node, project):
    cloud: Cloud = single_node
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    cloud.deploy({"train.py": SAVES}, ("python", "train.py"), project, SHARED, max_cost=0.01)
    earlier = over_the_cap(time.time())
    cloud.store.put_bytes(charge_key(RUN, earlier.experiment, 0, 0), earlier.encode())
    code, output = cloud.run_agent()  # the default interval: the first look is at once
    assert code == 0, output
    for name in SHARED.experiments:
        status = cloud.status(name)
        assert (status["status"], status["exit_code"]) == ("stopped", None), name
        assert budget_reason(status) >= 0.0123
        assert b"step" not in log_of(cloud, name)
        assert not list(cloud.store.list(f"runs/{RUN}/{name}/artifacts/"))
    assert cloud.desired_capacity() == 0


def test_max_runtime_stops_every_node_of_a_gang(gang, project):
    gang.deploy({"train.py": SAVES}, ("python", "train.py"), project, max_runtime=15)
    nodes = [gang.boot(instance) for instance in sorted(gang.instances())]
    for node in nodes:
        gang.start(node, GRIDCTL_MASTER_PORT=str(free_port()))
    for node in nodes:
        assert node.ended() == 0, node.output()
    reason = "ran longer than --max_runtime 15s"
    status = gang.status()
    assert (status["status"], status["reason"]) == ("stopped", reason)
    for rank in (0, 1):
        end = RankEnd.decode(gang.store.get_bytes(KEYS.ended(0, rank)))
        assert (end.status, end.reason) == ("stopped", reason)
        assert f"rank {rank} got SIGTERM".encode() in gang.log(rank)
        assert gang.artifact(rank, "saved.txt") == b"saved"
    wait_for_gang(lambda: gang.desired_capacity() == 0, why="the group at zero")


def test_a_resumed_gang_gets_what_its_earlier_attempt_left_of_max_runtime(gang, project):
    gang.deploy({"train.py": SAVES}, ("python", "train.py"), project, auto_resume=True,
                max_runtime=45)  # fmt: skip
    settings = {"GRIDCTL_MASTER_PORT": str(free_port())}
    nodes = [gang.start(gang.boot(i), **settings) for i in sorted(gang.instances())]
    wait_for_gang(lambda: all(b"step 5\n" in gang.log(rank) for rank in (0, 1)), why="steps")
    lost = next(n for n in nodes if n.instance_id == member_of(gang, 1))
    lost.agent.send_signal(signal.SIGTERM)  # its instance goes away
    newcomer = gang.start(gang.boot(gang.reclaim(lost)), **settings)
    for node in (*nodes, newcomer):
        assert node.ended() == 0, node.output()
    status = gang.status()
    assert (status["status"], status["resumes"]) == ("stopped", 1)
    assert status["reason"] == "ran longer than --max_runtime 45s"
    first = status["attempts"][0]
    used = first["finished_at"] - first["started_at"]
    for rank in (0, 1):
        found = re.search(
            rb"--max_runtime 45s: ([\d.]+) s left after the earlier attempts' ([\d.]+) s",
            gang.log(rank),
        )
        assert found is not None, gang.log(rank).decode()
        left, before = (float(n) for n in found.groups())
        assert before == pytest.approx(used, abs=0.06)
        assert left == pytest.approx(45 - used, abs=0.06)


def member_of(gang, rank: int) -> str:
    """The instance holding ``rank`` in the first attempt."""
    return Member.decode(gang.store.get_bytes(KEYS.member(0, rank))).instance
