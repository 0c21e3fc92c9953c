"""--cpus and --memory enforcement: thread counts, the memory watchdog on a real process
tree, and the cgroup files of both cgroup versions (on a stand-in tree where the machine
has another version, or lets us make none)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridctl.agent.core.limits import THREAD_VARIABLES, Cgroup, Watchdog, pin, thread_variables

MIB = 1 << 20
HOG = "import time\nhog = b'x' * (300 * 2**20)\nprint('allocated', flush=True)\ntime.sleep(60)\n"


def test_thread_counts_follow_the_cores_unless_the_user_set_them():
    assert thread_variables(2, {}) == dict.fromkeys(THREAD_VARIABLES, "2")
    assert thread_variables(0.5, {})["OMP_NUM_THREADS"] == "1"
    assert thread_variables(1.5, {})["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in thread_variables(2, {"OMP_NUM_THREADS": "8"})


def test_pin_maps_the_schedulers_cores_onto_the_usable_ones():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        usable = sorted(os.sched_getaffinity(0))
        got = pin(proc.pid, [len(usable)])  # a simulated node may offer more cores
        assert got == [usable[0]]
        assert sorted(os.sched_getaffinity(proc.pid)) == [usable[0]]
    finally:
        proc.kill()
        proc.wait()


def test_the_watchdog_kills_a_process_tree_over_its_limit():
    # The allocation happens in a child of the script, as in a data loader worker.
    child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {HOG!r}])\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, start_new_session=True
    )
    watchdog = Watchdog(100 * MIB, interval=0.1)
    watchdog.attach(proc.pid)
    try:
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        watchdog.close()
    reason = watchdog.exceeded()
    assert reason is not None and reason.startswith("exceeded --memory 100 MiB (its processes used")


def test_the_watchdog_leaves_a_process_under_its_limit_alone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    watchdog = Watchdog(1 << 30, interval=0.1)
    watchdog.attach(proc.pid)
    assert proc.wait(timeout=60) == 0
    watchdog.close()
    assert watchdog.exceeded() is None


def fake_v2(tmp_path: Path) -> tuple[Path, Path]:
    """A cgroup2 tree in which the agent lives in /agent.slice."""
    root = tmp_path / "cgroup"
    (root / "agent.slice").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    membership = tmp_path / "self-cgroup"
    membership.write_text("0::/agent.slice\n")
    return root, membership


def test_a_delegated_cgroup_v2_gets_the_limit_and_no_swap(tmp_path):
    root, membership = fake_v2(tmp_path)
    cgroup = Cgroup.create(root, membership, 100 * MIB, "exp")
    assert cgroup is not None
    assert cgroup.path.parent == root / "agent.slice"
    assert (cgroup.path / "memory.max").read_text() == str(100 * MIB)
    assert (cgroup.path / "memory.swap.max").read_text() == "0"
    cgroup.attach(4242)
    assert (cgroup.path / "cgroup.procs").read_text() == "4242"
    assert cgroup.exceeded() is None
    (cgroup.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert cgroup.exceeded() is None
    (cgroup.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroup.exceeded() == (
        "exceeded --memory 100 MiB (stopped by the kernel's out-of-memory killer)"
    )


def test_no_cgroup_where_the_agent_may_not_make_one(tmp_path):
    root, membership = fake_v2(tmp_path)
    (root / "agent.slice").rmdir()
    (root / "agent.slice").write_text("")  # mkdir below it fails, as in a cgroup not ours
    assert Cgroup.create(root, membership, 100 * MIB, "exp") is None


def test_no_cgroup_without_a_memory_hierarchy(tmp_path):
    membership = tmp_path / "self-cgroup"
    membership.write_text("4:pids:/\n3:cpu:/\n")
    assert Cgroup.create(tmp_path / "cgroup", membership, 100 * MIB, "exp") is None
    assert Cgroup.create(tmp_path, tmp_path / "missing", 100 * MIB, "exp") is None


def test_a_cgroup_v1_memory_hierarchy_gets_the_limit_with_swap(tmp_path):
    root = tmp_path / "cgroup"
    (root / "memory" / "user" / "me").mkdir(parents=True)
    membership = tmp_path / "self-cgroup"
    membership.write_text("5:pids:/user/me\n4:memory:/user/me\n0::/\n")
    cgroup = Cgroup.create(root, membership, 100 * MIB, "exp")
    assert cgroup is not None
    assert cgroup.path.parent == root / "memory" / "user" / "me"
    assert (cgroup.path / "memory.limit_in_bytes").read_text() == str(100 * MIB)
    assert (cgroup.path / "memory.memsw.limit_in_bytes").read_text() == str(100 * MIB)
    (cgroup.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroup.exceeded() is not None


def machine_cgroup() -> Cgroup | None:
    from gridctl.agent.core.limits import CGROUP_ROOT

    return Cgroup.create(CGROUP_ROOT, Path("/proc/self/cgroup"), 100 * MIB, "test")


def test_on_this_machine_a_cgroup_holds_a_process_to_its_limit():
    cgroup = machine_cgroup()
    if cgroup is None:
        pytest.skip("this machine lets us make no memory cgroup (the watchdog applies)")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read(1)\n" + HOG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        cgroup.attach(proc.pid)
        proc.stdin.write(b"x")
        proc.stdin.close()
        assert proc.wait(timeout=60) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while cgroup.exceeded() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cgroup.exceeded() is not None
    finally:
        proc.kill()
        proc.wait()
        cgroup.close()
    assert not cgroup.path.exists()
