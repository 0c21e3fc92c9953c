"""The node agent, run for real (``python -m gridctl.agent node``) against moto and the
IMDSv2 stand-in, as user data starts it on an instance of an Auto Scaling group.

Spot interruptions are driven the way AWS drives them: a notice in the stand-in's
``spot/instance-action`` (or a rebalance recommendation), ``control/interrupt`` in the
bucket (``gridctl interrupt``), SIGTERM to the agent (the instance going away), or the
node vanishing without a word (SIGKILL to the agent and its script). A replacement is the
agent started again on a fresh node root, with the stand-in answering for the instance
the group launched instead, as a new instance would after a reclaim.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest

from gridctl.agent.core import s3store
from gridctl.agent.core.spec import MachineSpec
from gridctl.agent.node.imds import TAGS_PATH

from .single_node import (
    BASE,
    BUCKET,
    EXPERIMENT,
    MACHINE,
    RUN,
    Cloud,
    ended,
    log_of,
    logged,
    started,
    status_is,
    synced_step,
    vanish,
    wait_for,
)

TRAIN = """\
import os, sys
print("training with", " ".join(sys.argv[1:]))
os.makedirs("out", exist_ok=True)
with open("out/model.txt", "w") as f:
    f.write("weights")
print("scratch", os.environ["GRIDCTL_SCRATCH_DIR"])
"""
FOREVER = """\
import time
for step in range(600):
    print("step", step, flush=True)
    time.sleep(0.1)
"""
CHECKPOINTING = """\
import argparse, os, shutil, signal, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=400)
parser.add_argument("--ignore-sigterm", action="store_true")
args, _ = parser.parse_known_args()  # and --index on a shared machine
resumes = int(os.environ["GRIDCTL_RESUME_COUNT"])
print("resume count", resumes, flush=True)
step = 0
if os.path.exists("ckpt.txt"):
    with open("ckpt.txt") as f:
        step = int(f.read())
    print("resumed from step", step, flush=True)


def save():
    # Written aside, then renamed: a kill never leaves half a checkpoint, nor a stray file.
    partial = os.path.join(os.environ["GRIDCTL_SCRATCH_DIR"], "ckpt.txt")
    with open(partial, "w") as f:
        f.write(str(step))
    os.replace(partial, "ckpt.txt")


signalled = announced = False


def on_sigterm(signum, frame):
    global signalled
    signalled = True


signal.signal(signal.SIGTERM, on_sigterm)
delay = 0.1 if resumes == 0 else 0.01  # a resumed attempt hurries: the tests stay short
while step < args.steps:
    if signalled and not announced:
        announced = True
        print("got SIGTERM at step", step, flush=True)
        if not args.ignore_sigterm:
            shutil.copy(os.environ["GRIDCTL_NOTICE_FILE"], "notice.json")
            print("saved step", step, "and exiting", flush=True)
            sys.exit(0)
    time.sleep(delay)
    step += 1
    save()
    print("step", step, flush=True)
os.makedirs("out", exist_ok=True)
with open("out/done.txt", "w") as f:
    f.write(str(step))
print("done at step", step, flush=True)
"""
WAIT_FOR_NOTICE = """\
import os, shutil, signal, sys, time

signal.signal(signal.SIGTERM, lambda signum, frame: print("got SIGTERM", flush=True))
notice = os.environ["GRIDCTL_NOTICE_FILE"]
print("waiting for a notice", flush=True)
deadline = time.monotonic() + 20
while not os.path.exists(notice):
    if time.monotonic() > deadline:
        sys.exit("no notice came")
    time.sleep(0.05)
os.makedirs("out", exist_ok=True)
shutil.copy(notice, "out/notice.json")
print("notice seen", flush=True)
"""
LOST_REASON = "the node running it stopped reporting"


@pytest.fixture
def cloud(single_node: Cloud) -> Cloud:
    """Here ``cloud`` is one node's side of the account, not the CLI that conftest's is."""
    return single_node


def resumed_from(log: bytes) -> list[int]:
    return [int(step) for step in re.findall(rb"resumed from step (\d+)", log)]


def test_a_run_succeeds_keeps_its_files_and_scales_its_group_to_zero(cloud, project):
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py", "--lr", "0.1"), project)
    code, output = cloud.run_agent()
    assert code == 0, output
    status = cloud.status()
    assert status["status"] == "succeeded"
    assert status["exit_code"] == 0
    assert status["instance"] == cloud.instance_id
    assert status["reason"] is None
    assert status["started_at"] <= status["finished_at"] <= time.time()
    assert status["resumes"] == 0
    (attempt,) = status["attempts"]
    assert attempt["instance"] == cloud.instance_id
    assert attempt["status"] == "succeeded"
    assert cloud.artifacts() == ["out/model.txt"]
    assert cloud.artifact("out/model.txt") == b"weights"
    log = log_of(cloud).decode().splitlines()
    assert any(line.endswith("Z training with --lr 0.1") for line in log)
    assert all(line[:4].isdigit() and line[10] == "T" for line in log)
    scratch = next(line for line in log if " scratch " in line).split(" scratch ")[1]
    assert scratch == str(cloud.root / "scratch" / EXPERIMENT)
    assert (cloud.root / "opt" / "gridctl" / "work" / EXPERIMENT / "out" / "model.txt").exists()
    assert cloud.desired_capacity() == 0


def test_a_failing_script_fails_with_its_exit_code(cloud, project):
    script = "import sys\nprint('diverged')\nsys.exit(3)\n"
    cloud.deploy({"train.py": script}, ("python", "train.py"), project)
    code, output = cloud.run_agent()
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"], status["reason"]) == ("failed", 3, "exit code 3")
    assert b"diverged" in log_of(cloud)
    assert cloud.desired_capacity() == 0


def test_the_agent_waits_for_tags_that_reach_the_metadata_late(cloud, project):
    """Right after a boot IMDS may not list the instance's tags yet."""
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project)
    tags, cloud.imds.tags = dict(cloud.imds.tags), {"Name": EXPERIMENT}
    with started(cloud, GRIDCTL_TAGS_TIMEOUT="120") as agent:
        wait_for(lambda: cloud.imds.count(TAGS_PATH) >= 3)
        cloud.imds.tags = tags
        output = ended(agent)
    assert agent.returncode == 0, output
    assert "gridctl tags are not in its metadata yet" in output
    assert cloud.status()["status"] == "succeeded"


def test_tags_that_never_come_end_the_node_after_the_tags_timeout(cloud, project):
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project)
    cloud.imds.tags = {"Name": EXPERIMENT}
    code, output = cloud.run_agent(GRIDCTL_TAGS_TIMEOUT="1")
    assert code == 1, output
    assert "lacks the tags gridctl:bucket, gridctl:run, gridctl:experiment" in output
    assert cloud.imds.count(TAGS_PATH) >= 2
    assert cloud.desired_capacity() == 0


def test_requirements_that_pip_cannot_install_fail_the_experiment(cloud, project):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{closed.getsockname()[1]}/simple"
    files = {"train.py": TRAIN, "requirements.txt": "gridctl-no-such-package==1.0\n"}
    cloud.deploy(files, ("python", "train.py"), project)
    code, output = cloud.run_agent(**_offline_pip(index))
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"]) == ("failed", None)
    assert status["reason"].startswith("installing requirements.txt failed: ERROR:")
    assert "gridctl-no-such-package" in status["reason"]
    log = log_of(cloud).decode()
    assert "gridctl: pip install -r requirements.txt" in log
    assert "training with" not in log
    assert cloud.desired_capacity() == 0


def test_a_stop_object_stops_the_run(cloud, project):
    cloud.deploy({"train.py": FOREVER}, ("python", "train.py"), project)
    with started(cloud) as agent:
        wait_for(status_is(cloud, "running"))
        first_beat = cloud.status()["heartbeat_at"]
        wait_for(logged(cloud, "step 3"))  # shipped while running
        wait_for(lambda: cloud.status()["heartbeat_at"] > first_beat)
        cloud.store.put_bytes(f"{BASE}/control/stop", b"")
        output = ended(agent)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["reason"]) == ("stopped", "stopped by user")
    assert status["exit_code"] == 128 + signal.SIGTERM
    assert cloud.desired_capacity() == 0


def test_an_ended_experiment_is_not_run_again(cloud, project):
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project)
    record = {"status": "succeeded", "exit_code": 0, "reason": None, "instance": "i-0old"}
    cloud.store.put_bytes(f"{BASE}/status.json", json.dumps(record).encode())
    code, output = cloud.run_agent()
    assert code == 0, output
    assert cloud.status() == record
    assert cloud.artifacts() == []
    assert not (cloud.root / "opt" / "gridctl" / "work" / EXPERIMENT).exists()
    assert cloud.desired_capacity() == 0


def test_a_missing_spec_is_recorded_as_a_failure(cloud):
    cloud.store.put_bytes(MACHINE.key, MACHINE.to_json().encode())
    code, output = cloud.run_agent()
    assert code != 0
    assert "no experiment spec" in output
    status = cloud.status()
    assert status["status"] == "failed"
    assert "no experiment spec" in status["reason"]
    assert status["instance"] == cloud.instance_id
    assert cloud.desired_capacity() == 0


def test_a_node_without_a_machine_spec_says_so_and_scales_to_zero(cloud):
    code, output = cloud.run_agent()
    assert code == 1
    assert f"no machine spec at s3://{BUCKET}/runs/{RUN}/machines/{EXPERIMENT}.json" in output
    assert not cloud.store.exists(f"{BASE}/status.json")
    assert cloud.desired_capacity() == 0


# Interruptions and auto-resume (SPEC §7).

NOTICES = Path("opt") / "gridctl" / "notices"
WORK = Path("opt") / "gridctl" / "work"


def beats(cloud: Cloud, count: int) -> None:
    """Wait until the experiment's heartbeat has moved ``count`` times."""
    for _ in range(count):
        beat = cloud.status()["heartbeat_at"]
        wait_for(lambda beat=beat: cloud.status()["heartbeat_at"] > beat)


def whole_seconds(moment: datetime) -> float:
    """An announced time as IMDS serves it (to the second), in epoch seconds."""
    return moment.replace(microsecond=0).timestamp()


@pytest.mark.parametrize("auto_resume", [False, True], ids=["once", "auto_resume"])
def test_sigterm_to_the_agent_records_an_interruption(cloud, project, auto_resume):
    """The instance going away (systemd stopping the agent) interrupts the experiment; the
    group keeps its capacity only for an experiment that resumes."""
    cloud.deploy({"train.py": FOREVER}, ("python", "train.py"), project, auto_resume=auto_resume)
    with started(cloud) as agent:
        wait_for(logged(cloud, "step 3"))
        agent.send_signal(signal.SIGTERM)
        output = ended(agent)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["reason"]) == ("interrupted", "instance terminated")
    assert status["exit_code"] == 128 + signal.SIGTERM
    (attempt,) = status["attempts"]
    assert (attempt["instance"], attempt["status"], attempt["reason"]) == (
        cloud.instance_id,
        "interrupted",
        "instance terminated",
    )
    assert b"gridctl: instance terminated" in log_of(cloud)
    notice = json.loads((cloud.root / NOTICES / f"{EXPERIMENT}.json").read_text())
    assert (notice["kind"], notice["reason"]) == ("interruption", "instance terminated")
    assert notice["deadline"] == notice["seen_at"] + 3 + 5  # the grace period + KILL_MARGIN
    if auto_resume:
        assert cloud.desired_capacity() == 1
        assert cloud.instances() == {cloud.instance_id: "InService"}
    else:
        assert cloud.desired_capacity() == 0


def test_a_spot_notice_interrupts_and_a_replacement_resumes_from_the_checkpoint(cloud, project):
    cloud.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project, auto_resume=True)
    with started(cloud) as agent:
        wait_for(logged(cloud, "step 3"))
        announced = cloud.imds.notify_spot_interruption(120)
        output = ended(agent)
    assert agent.returncode == 0, output
    first = cloud.status()
    assert first["status"] == "interrupted"
    assert "spot interruption notice" in first["reason"]
    assert first["exit_code"] == 0  # saved and exited on SIGTERM: still not complete
    assert first["resumes"] == 0
    (interrupted,) = first["attempts"]
    assert (interrupted["instance"], interrupted["status"], interrupted["reason"]) == (
        cloud.instance_id,
        "interrupted",
        first["reason"],
    )
    # The script read the notice (GRIDCTL_NOTICE_FILE) and kept a copy as an artifact.
    notice = json.loads(cloud.artifact("notice.json"))
    assert notice["kind"] == "interruption"
    assert notice["deadline"] == whole_seconds(announced)
    assert notice["reason"] == first["reason"]
    assert json.loads((cloud.root / NOTICES / f"{EXPERIMENT}.json").read_text()) == notice
    saved = synced_step(cloud)
    assert saved > 0
    log = log_of(cloud)
    assert f"gridctl: {first['reason']}".encode() in log
    assert f"saved step {saved} and exiting".encode() in log
    assert b"resume count 0" in log
    assert cloud.desired_capacity() == 1
    assert cloud.instances() == {cloud.instance_id: "InService"}

    replacement = cloud.replace_instance()
    assert replacement != cloud.instance_id
    code, output = cloud.run_agent(cloud.fresh_root())
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"], status["reason"]) == ("succeeded", 0, None)
    assert (status["instance"], status["resumes"]) == (replacement, 1)
    assert status["started_at"] == first["started_at"]
    assert status["attempts"][0] == interrupted
    resumed = status["attempts"][1]
    assert (resumed["instance"], resumed["status"], resumed["reason"]) == (
        replacement,
        "succeeded",
        None,
    )
    assert interrupted["finished_at"] <= resumed["started_at"] <= resumed["finished_at"]
    assert resumed["finished_at"] == status["finished_at"]
    log = log_of(cloud)
    assert f"saved step {saved} and exiting".encode() in log  # the first attempt's lines stay
    assert b"resume count 1" in log
    assert resumed_from(log) == [saved]
    assert b"gridctl: resume 1: restored 2 file(s)" in log
    assert b"done at step 400" in log
    assert cloud.artifacts() == ["ckpt.txt", "notice.json", "out/done.txt"]
    assert cloud.artifact("out/done.txt") == b"400"
    assert cloud.desired_capacity() == 0


def test_without_auto_resume_a_spot_notice_ends_the_experiment(cloud, project):
    cloud.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project)
    with started(cloud) as agent:
        wait_for(logged(cloud, "step 3"))
        cloud.imds.notify_spot_interruption(120)
        output = ended(agent)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"]) == ("interrupted", 0)
    assert "spot interruption notice" in status["reason"]
    assert [a["status"] for a in status["attempts"]] == ["interrupted"]
    assert cloud.desired_capacity() == 0
    log = log_of(cloud)

    # Should an instance start for it again, it finds nothing to do.
    cloud.boot(cloud.instance_id)
    root = cloud.fresh_root()
    code, output = cloud.run_agent(root)
    assert code == 0, output
    assert "has ended (interrupted): nothing to run" in output
    assert cloud.status() == status
    assert log_of(cloud) == log
    assert not (root / WORK / EXPERIMENT).exists()
    assert cloud.desired_capacity() == 0


@pytest.mark.parametrize("posted", ["while_running", "before_start"])
def test_a_rebalance_recommendation_reaches_the_script_without_stopping_it(cloud, project, posted):
    cloud.deploy({"train.py": WAIT_FOR_NOTICE}, ("python", "train.py"), project, auto_resume=True)
    if posted == "before_start":
        cloud.imds.recommend_rebalance()
    with started(cloud) as agent:
        if posted == "while_running":
            wait_for(logged(cloud, "waiting for a notice"))
            cloud.imds.recommend_rebalance()
        output = ended(agent)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"], status["reason"]) == ("succeeded", 0, None)
    notice = json.loads(cloud.artifact("out/notice.json"))
    assert (notice["kind"], notice["deadline"]) == ("rebalance", None)
    assert notice["reason"].startswith("spot rebalance recommendation")
    log = log_of(cloud)
    assert f"gridctl: {notice['reason']}".encode() in log
    assert b"notice seen" in log
    assert b"got SIGTERM" not in log
    assert cloud.desired_capacity() == 0


def test_a_script_that_ignores_sigterm_is_killed_in_time_and_resumes_from_its_last_sync(
    cloud, project
):
    argv = ("python", "train.py", "--ignore-sigterm")
    cloud.deploy({"train.py": CHECKPOINTING}, argv, project, auto_resume=True)
    with started(cloud, GRIDCTL_SYNC_INTERVAL="0.5") as agent:
        wait_for(lambda: synced_step(cloud) >= 3)  # synced while the script runs
        # 12 s: more than the time the agent keeps in hand for its final sync (its estimate,
        # margins included), so the script outlives SIGTERM for a while, then is killed.
        announced = cloud.imds.notify_spot_interruption(12)
        output = ended(agent)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert status["status"] == "interrupted"
    assert "spot interruption notice" in status["reason"]
    assert status["exit_code"] == 128 + signal.SIGKILL
    assert status["finished_at"] < whole_seconds(announced)  # recorded before the reclaim
    log = log_of(cloud).decode()
    sigterm = log.index("got SIGTERM at step")
    assert re.search(r"Z step \d+\n", log[sigterm:])  # it went on after SIGTERM
    assert "done at step" not in log
    killed_at = synced_step(cloud)
    assert killed_at > 0
    assert int((cloud.root / WORK / EXPERIMENT / "ckpt.txt").read_text()) == killed_at
    assert cloud.desired_capacity() == 1

    replacement = cloud.replace_instance()
    code, output = cloud.run_agent(cloud.fresh_root())
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["instance"], status["resumes"]) == (
        "succeeded",
        replacement,
        1,
    )
    assert [(a["instance"], a["status"]) for a in status["attempts"]] == [
        (cloud.instance_id, "interrupted"),
        (replacement, "succeeded"),
    ]
    assert resumed_from(log_of(cloud)) == [killed_at]
    assert cloud.artifact("out/done.txt") == b"400"
    assert cloud.desired_capacity() == 0


def test_gridctl_interrupt_ends_the_instance_and_its_group_resumes_on_another(cloud, project):
    cloud.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project, auto_resume=True)
    interrupt = f"{BASE}/control/interrupt"
    with started(cloud) as agent:
        wait_for(logged(cloud, "step 3"))
        cloud.store.put_bytes(interrupt, json.dumps({"window": 60}).encode())
        output = ended(agent)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"], status["reason"]) == (
        "interrupted",
        0,
        "interrupted by gridctl interrupt",
    )
    notice = json.loads(cloud.artifact("notice.json"))
    assert (notice["kind"], notice["reason"]) == ("interruption", status["reason"])
    assert notice["deadline"] == notice["seen_at"] + 60
    # The node ended its own instance, as a reclaim would; the group launched another.
    assert cloud.instance_state(cloud.instance_id) == "terminated"
    (replacement,) = cloud.instances()
    assert replacement != cloud.instance_id
    assert cloud.instances()[replacement] == "InService"
    assert cloud.desired_capacity() == 1
    saved = synced_step(cloud)
    assert saved > 0

    cloud.boot(replacement)
    code, output = cloud.run_agent(cloud.fresh_root())
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["instance"], status["resumes"]) == (
        "succeeded",
        replacement,
        1,
    )
    assert [a["reason"] for a in status["attempts"]] == ["interrupted by gridctl interrupt", None]
    assert resumed_from(log_of(cloud)) == [saved]
    assert not cloud.store.exists(interrupt)  # served: it does not interrupt the resume
    assert cloud.artifact("out/done.txt") == b"400"
    assert cloud.desired_capacity() == 0


def test_a_replacement_waits_for_a_silent_node_then_resumes_its_experiment(cloud, project):
    cloud.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project, auto_resume=True)
    settings = {"GRIDCTL_SYNC_INTERVAL": "0.5"}  # GRIDCTL_HEARTBEAT_INTERVAL is 0.5 too
    with started(cloud, **settings) as first:
        wait_for(lambda: synced_step(cloud) >= 3)
        replacement = cloud.replace_instance()
        with started(cloud, cloud.fresh_root(), **settings) as second:
            # While the first node beats, the replacement (which has read its tags, so is
            # past its start) leaves the experiment to it.
            wait_for(lambda: cloud.imds.count("/latest/meta-data/tags/instance") == 2)
            beats(cloud, 6)
            assert second.poll() is None
            status = cloud.status()
            assert (status["status"], status["instance"]) == ("running", cloud.instance_id)
            vanish(first)  # no notice, no final sync, no last status
            reached = int((cloud.root / WORK / EXPERIMENT / "ckpt.txt").read_text())
            output = ended(second)
    assert second.returncode == 0, output
    status = cloud.status()
    assert (status["status"], status["instance"], status["resumes"]) == (
        "succeeded",
        replacement,
        1,
    )
    lost, resumed = status["attempts"]
    assert (lost["instance"], lost["status"]) == (cloud.instance_id, "interrupted")
    assert lost["reason"].startswith(LOST_REASON)
    assert (resumed["instance"], resumed["status"]) == (replacement, "succeeded")
    # Taken over only once three heartbeats (of 0.5 s) had been missed.
    assert resumed["started_at"] - lost["finished_at"] >= 3 * 0.5
    (step,) = resumed_from(log_of(cloud))
    assert 0 < step <= reached  # the last periodic sync before the node vanished
    assert cloud.artifact("out/done.txt") == b"400"
    assert cloud.desired_capacity() == 0


def test_without_auto_resume_a_silent_node_fails_its_experiment(cloud, project):
    cloud.deploy({"train.py": CHECKPOINTING}, ("python", "train.py"), project)
    with started(cloud) as first:
        wait_for(logged(cloud, "step 3"))
        vanish(first)
    assert cloud.status()["status"] == "running"
    cloud.replace_instance()
    root = cloud.fresh_root()
    code, output = cloud.run_agent(root)
    assert code == 0, output
    status = cloud.status()
    assert (status["status"], status["exit_code"]) == ("failed", None)
    assert status["reason"].startswith(LOST_REASON)
    (attempt,) = status["attempts"]
    assert (attempt["instance"], attempt["status"], attempt["reason"]) == (
        cloud.instance_id,
        "failed",
        status["reason"],
    )
    assert status["resumes"] == 0
    assert not (root / WORK / EXPERIMENT).exists()
    assert cloud.desired_capacity() == 0


SHARED = MachineSpec(
    RUN, f"{RUN}-machine0", tuple(f"{RUN}-exp{i}" for i in range(3)), 8, 4, 16 << 30
)
SHOW_GPUS = """\
import os, pathlib, sys, time
with open("gpus.txt", "w") as f:
    f.write(os.environ["CUDA_VISIBLE_DEVICES"])
# Every experiment's scratch dir has the same parent: wait there until all three run.
shared = pathlib.Path(os.environ["GRIDCTL_SCRATCH_DIR"]).parent
(shared / os.environ["GRIDCTL_EXPERIMENT"]).with_suffix(".ready").touch()
deadline = time.monotonic() + 30
while len(list(shared.glob("*.ready"))) < 3:
    if time.monotonic() > deadline:
        sys.exit("the other experiments never ran alongside")
    time.sleep(0.05)
"""


def test_experiments_sharing_a_machine_each_get_their_own_gpus(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    cloud.deploy({"train.py": SHOW_GPUS}, ("python", "train.py"), project, SHARED, gpus=1)
    code, output = cloud.run_agent()
    assert code == 0, output
    seen = {}
    for name in SHARED.experiments:
        status = cloud.status(name)
        assert (status["status"], status["instance"]) == ("succeeded", cloud.instance_id), name
        seen[name] = cloud.store.get_bytes(f"runs/{RUN}/{name}/artifacts/gpus.txt").decode()
    assert sorted(seen.values()) == ["0", "1", "2"]
    assert cloud.desired_capacity() == 0


def test_a_machine_installs_requirements_once_for_all_its_experiments(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        index = f"http://127.0.0.1:{closed.getsockname()[1]}/simple"
    files = {"train.py": TRAIN, "requirements.txt": "gridctl-no-such-package==1.0\n"}
    cloud.deploy(files, ("python", "train.py"), project, SHARED, gpus=1)
    code, output = cloud.run_agent(**_offline_pip(index))
    assert code == 0, output
    installs = 0
    for name in SHARED.experiments:
        status = cloud.status(name)
        assert status["status"] == "failed"
        assert "gridctl-no-such-package" in status["reason"]
        installs += log_of(cloud, name).count(b"gridctl: pip install -r requirements.txt")
    assert installs == 1
    assert cloud.desired_capacity() == 0


def test_stopping_one_experiment_leaves_its_machine_to_the_others(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    cloud.deploy({"train.py": FOREVER}, ("python", "train.py"), project, SHARED, gpus=1)
    first, second, third = SHARED.experiments
    with started(cloud) as agent:
        wait_for(lambda: all(status_is(cloud, "running", e)() for e in SHARED.experiments))
        cloud.store.put_bytes(f"runs/{RUN}/{first}/control/stop", b"")
        wait_for(status_is(cloud, "stopped", first))
        assert cloud.status(second)["status"] == cloud.status(third)["status"] == "running"
        assert cloud.desired_capacity() == 1
        for name in (second, third):
            cloud.store.put_bytes(f"runs/{RUN}/{name}/control/stop", b"")
        output = ended(agent)
    assert agent.returncode == 0, output
    assert [cloud.status(e)["status"] for e in SHARED.experiments] == ["stopped"] * 3
    assert cloud.desired_capacity() == 0


def test_a_spot_notice_interrupts_every_experiment_on_the_machine(cloud, project):
    cloud.imds.tags["gridctl:experiment"] = SHARED.name
    argv = ("python", "train.py")
    cloud.deploy({"train.py": CHECKPOINTING}, argv, project, SHARED, gpus=1, auto_resume=True)
    with started(cloud) as agent:
        wait_for(lambda: all(b"step 3" in log_of(cloud, e) for e in SHARED.experiments))
        cloud.imds.notify_spot_interruption(120)
        output = ended(agent)
    assert agent.returncode == 0, output
    reasons = set()
    for name in SHARED.experiments:
        status = cloud.status(name)
        assert (status["status"], status["exit_code"]) == ("interrupted", 0), name
        reasons.add(status["reason"])
        notice = cloud.store.get_bytes(f"runs/{RUN}/{name}/artifacts/notice.json")
        assert json.loads(notice)["reason"] == status["reason"]
    (reason,) = reasons
    assert "spot interruption notice" in reason
    assert cloud.desired_capacity() == 1


def _offline_pip(index: str) -> dict[str, str]:
    """pip pointed at a closed port, so it fails fast and installs nothing."""
    return {
        "PIP_INDEX_URL": index,
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }


# S3Store against the same moto server.


def test_the_store_round_trips_files_and_bytes(cloud, tmp_path):
    store = cloud.store
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(3000))
    sent: list[int] = []
    store.put_file("runs/r/e/artifacts/model.bin", source, sent=sent.append)
    assert sum(sent) == 3000
    assert store.exists("runs/r/e/artifacts/model.bin")
    store.get_file("runs/r/e/artifacts/model.bin", tmp_path / "back" / "model.bin")
    assert (tmp_path / "back" / "model.bin").read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "back").iterdir()] == ["model.bin"]
    store.put_bytes("runs/r/e/status.json", b"{}")
    assert store.get_bytes("runs/r/e/status.json") == b"{}"


def test_the_store_says_what_is_missing(cloud, tmp_path):
    assert not cloud.store.exists("runs/r/e/status.json")
    with pytest.raises(FileNotFoundError):
        cloud.store.get_bytes("runs/r/e/status.json")
    with pytest.raises(FileNotFoundError):
        cloud.store.get_file("runs/r/e/log", tmp_path / "log")
    assert not (tmp_path / "log").exists()
    with pytest.raises(ValueError):
        cloud.store.exists("runs/../secrets")


def test_the_store_lists_and_deletes_folders(cloud, monkeypatch):
    monkeypatch.setattr(s3store, "_DELETE_BATCH", 2)
    store = cloud.store
    for key in ("runs/a/x/log", "runs/a/x/artifacts/m", "runs/a/y/log", "runs/ab/x/log"):
        store.put_bytes(key, b"1")
    assert sorted(store.list("runs/a")) == ["runs/a/x/artifacts/m", "runs/a/x/log", "runs/a/y/log"]
    store.delete_prefix("runs/a/")
    assert list(store.list("runs")) == ["runs/ab/x/log"]
    store.delete_prefix("runs/ab/x/log")
    assert list(store.list("")) == []


def test_an_agent_left_to_its_defaults_makes_few_billed_requests_per_hour(monkeypatch):
    """S3 bills every PUT and LIST: what a node's heartbeat, log shipping and control polling
    cost per experiment-hour is what the README promises, and each is still tunable."""
    from gridctl.agent.node.settings import NodeSettings
    from gridctl.agent.runner.experiment import RunnerSettings

    settings = NodeSettings.from_env(RunnerSettings())
    looks = (settings.heartbeat_interval, settings.log_interval, settings.control_interval)
    assert sum(3600 / interval for interval in looks) <= 840
    monkeypatch.setenv("GRIDCTL_CONTROL_INTERVAL", "0.5")
    assert NodeSettings.from_env(RunnerSettings()).control_interval == 0.5
