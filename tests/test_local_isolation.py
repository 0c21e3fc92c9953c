"""Experiments on this machine never see each other: environment, scratch, datastore mount,
cores and memory (issue 9's findings 1, 2, 3, 6, 7 and 11), through the real ``gridctl``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from scripts import RESUMABLE_EXAMPLE, RESUMED, SLOW_FIRST_ATTEMPT, steps_logged

HOLD = """\
import json, os, sys, time
go = sys.argv[1]
record = {"env": {k: v for k, v in os.environ.items()}, "cores": sorted(os.sched_getaffinity(0))}
mount = sys.argv[sys.argv.index("--mount") + 1] if "--mount" in sys.argv else None
if mount:
    record["before"] = sorted(os.listdir(mount))
scratch = os.environ["GRIDCTL_SCRATCH_DIR"]
with open(os.path.join(scratch, "mine.txt"), "w") as f:
    f.write(os.environ["GRIDCTL_EXPERIMENT"])
print("holding", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
with open(os.path.join(scratch, "mine.txt")) as f:
    record["scratch_read_back"] = f.read()
if mount:
    record["after"] = sorted(os.listdir(mount))
os.makedirs("out", exist_ok=True)
json.dump(record, open("out/record.json", "w"))
"""
"""Records its environment and cores, writes its name into its scratch dir and lists the
mount dir given as ``--mount PATH``; then holds until the file named by the first argument
exists, reads its scratch file back and lists the mount dir again."""


def record_of(gridctl, experiment: str, tmp_path: Path) -> dict:
    dest = tmp_path / "records"
    assert gridctl("artifacts", experiment, "--dest", str(dest)).returncode == 0
    return json.loads((dest / experiment / "out" / "record.json").read_text())


def running(gridctl, run: str, count: int) -> bool:
    experiments = gridctl.status(run)["experiments"]
    return [e["status"] for e in experiments] == ["running"] * count and all(
        "holding" in gridctl("logs", e["name"]).stdout for e in experiments
    )


def ended(gridctl, run: str) -> bool:
    return gridctl.status(run)["status"] not in ("queued", "running")


@pytest.fixture
def hold(project: Path) -> Path:
    (project / "hold.py").write_text(HOLD)
    return project / "hold.py"


def test_each_experiment_gets_its_submitters_environment_and_nothing_else(gridctl, hold, tmp_path):
    go = tmp_path / "go"
    # The first run's shell starts the agent: its variables must not reach later runs.
    first = dict(gridctl.env, LEAKED_FROM_A="yes", CUDA_VISIBLE_DEVICES="7")
    result = gridctl("run", "--name", "first", "hold.py", str(go), env=first)
    assert result.returncode == 0, result.stderr
    gridctl.wait_until(lambda: running(gridctl, "first", 1))
    clean = {k: v for k, v in gridctl.env.items() if k != "CUDA_VISIBLE_DEVICES"}
    result = gridctl("run", "--name", "second", "hold.py", str(go), env=clean)
    assert result.returncode == 0, result.stderr
    gridctl.wait_until(lambda: running(gridctl, "second", 1))
    go.touch()
    gridctl.wait_until(lambda: ended(gridctl, "first") and ended(gridctl, "second"))
    first_env = record_of(gridctl, "first-exp0", tmp_path)["env"]
    second_env = record_of(gridctl, "second-exp0", tmp_path)["env"]
    assert first_env["LEAKED_FROM_A"] == "yes"  # its own submitter's
    assert "LEAKED_FROM_A" not in second_env
    # No GPU was assigned: neither sees the one its shell (or another's) named.
    assert first_env["CUDA_VISIBLE_DEVICES"] == second_env["CUDA_VISIBLE_DEVICES"] == ""
    assert second_env["GRIDCTL_EXPERIMENT"] == "second-exp0"


def test_scratch_is_each_experiments_own_and_removed_when_it_ends(gridctl, hold, tmp_path):
    go, scratch = tmp_path / "go", tmp_path / "scratch"
    result = gridctl(
        "run",
        "--name",
        "scr",
        "--scratch_size",
        "1",
        "--scratch_mount_path",
        str(scratch),
        "hold.py",
        str(go),
        "--trial",
        "[1, 2]",
    )
    assert result.returncode == 0, result.stderr
    gridctl.wait_until(lambda: running(gridctl, "scr", 2))
    assert sorted(p.name for p in scratch.iterdir()) == ["scr-exp0", "scr-exp1"]
    go.touch()
    gridctl.wait_until(lambda: ended(gridctl, "scr"))
    for name in ("scr-exp0", "scr-exp1"):
        record = record_of(gridctl, name, tmp_path)
        assert record["scratch_read_back"] == name
        assert record["env"]["GRIDCTL_SCRATCH_DIR"] == str(scratch / name)
    assert list(scratch.iterdir()) == []


def create(gridctl, name: str, source: Path) -> None:
    result = gridctl("datastore", "create", name, str(source))
    assert result.returncode == 0, result.stderr


def test_a_mount_dir_never_changes_under_a_running_experiment(gridctl, hold, tmp_path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(name)
        create(gridctl, name, tmp_path / name)
    go, mount = tmp_path / "go", tmp_path / "mnt" / "data"
    common = ("--datastore_mount_dir", str(mount), "hold.py", str(go), "--mount", str(mount))
    assert gridctl("run", "--name", "ra", "--datastore_name", "one", *common).returncode == 0
    gridctl.wait_until(lambda: running(gridctl, "ra", 1))
    assert gridctl("run", "--name", "rb", "--datastore_name", "two", *common).returncode == 0
    # The second waits for the mount dir, and says why.
    waiting = f"waiting for {mount}: ra-exp0 has datastore one version 1 mounted there"
    gridctl.wait_until(lambda: gridctl.experiment("rb", "rb-exp0")["reason"] == waiting)
    assert gridctl.experiment("rb", "rb-exp0")["status"] == "queued"
    shown = gridctl("status", "rb-exp0").stdout  # the table may wrap a long reason
    assert f"queued ({waiting})" in " ".join(shown.split())
    go.touch()
    gridctl.wait_until(lambda: ended(gridctl, "ra") and ended(gridctl, "rb"))
    first = record_of(gridctl, "ra-exp0", tmp_path)
    assert first["before"] == first["after"] == ["one.txt"]
    assert first["env"]["GRIDCTL_DATASTORE_DIR"] == str(gridctl.home / "mounts" / "one" / "v1")
    second = record_of(gridctl, "rb-exp0", tmp_path)
    assert second["before"] == second["after"] == ["two.txt"]
    assert gridctl.experiment("rb", "rb-exp0")["reason"] is None


def test_a_queued_experiment_says_which_resource_is_short(gridctl, hold, tmp_path):
    cores = os.cpu_count() or 1
    go = tmp_path / "go"
    assert gridctl("run", "--name", "all", "--cpus", str(cores), "hold.py", str(go)).returncode == 0
    gridctl.wait_until(lambda: running(gridctl, "all", 1))
    assert gridctl("run", "--name", "next", "--cpus", "1", "hold.py", str(go)).returncode == 0
    waiting = f"waiting for 1 CPU: 0 of {cores} free"
    gridctl.wait_until(lambda: gridctl.experiment("next", "next-exp0")["reason"] == waiting)
    assert gridctl.experiment("next", "next-exp0")["status"] == "queued"
    for shown in (gridctl("status", "next").stdout, gridctl("status", "next-exp0").stdout):
        assert f"queued ({waiting})" in " ".join(shown.split())
    go.touch()
    gridctl.wait_until(lambda: ended(gridctl, "all") and ended(gridctl, "next"))
    assert gridctl.experiment("next", "next-exp0")["status"] == "succeeded"
    assert gridctl.experiment("next", "next-exp0")["reason"] is None


def test_cpus_pin_cores_and_set_thread_counts_unless_the_user_did(gridctl, hold, tmp_path):
    go = tmp_path / "go"
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("two pinned experiments side by side need two cores")
    env = dict(gridctl.env, OMP_NUM_THREADS="3")
    env.pop("MKL_NUM_THREADS", None)
    result = gridctl(
        "run",
        "--name",
        "pinned",
        "--cpus",
        "1",
        "hold.py",
        str(go),
        "--trial",
        "[1, 2]",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    free = {k: v for k, v in gridctl.env.items() if not k.endswith("_NUM_THREADS")}
    assert gridctl("run", "--name", "free", "hold.py", str(go), env=free).returncode == 0
    gridctl.wait_until(lambda: running(gridctl, "pinned", 2))
    go.touch()
    gridctl.wait_until(lambda: ended(gridctl, "pinned") and ended(gridctl, "free"))
    records = [record_of(gridctl, f"pinned-exp{i}", tmp_path) for i in range(2)]
    assert [len(r["cores"]) for r in records] == [1, 1]
    assert records[0]["cores"] != records[1]["cores"]  # ran side by side, apart
    for r in records:
        assert r["env"]["OMP_NUM_THREADS"] == "3"  # the user's own setting wins
        assert r["env"]["MKL_NUM_THREADS"] == r["env"]["OPENBLAS_NUM_THREADS"] == "1"
    unpinned = record_of(gridctl, "free-exp0", tmp_path)
    assert len(unpinned["cores"]) == cores
    assert "OMP_NUM_THREADS" not in unpinned["env"]


HOG = """\
import time
hog = b"x" * (600 * 2**20)
print("allocated", len(hog), flush=True)
time.sleep(60)
"""


def test_memory_is_enforced_with_a_reason_naming_the_limit(gridctl, project):
    (project / "hog.py").write_text(HOG)
    result = gridctl("run", "--name", "hog", "--memory", "100M", "--wait", "hog.py")
    assert result.returncode == 1
    (experiment,) = gridctl.status("hog")["experiments"]
    assert experiment["status"] == "failed"
    assert experiment["exit_code"] == 128 + 9
    assert experiment["reason"].startswith("exceeded --memory 100 MiB (")
    assert "--memory 100 MiB enforced by" in gridctl("logs", "hog-exp0").stdout


def test_an_interrupt_window_shorter_than_the_sync_still_lets_the_script_save(
    gridctl, project, tmp_path
):
    shutil.copy(RESUMABLE_EXAMPLE, project / "example.py")
    (project / "train.py").write_text(SLOW_FIRST_ATTEMPT)  # still running when interrupted
    args = ("--steps", "80", "--step-seconds", "0.1")
    assert gridctl("run", "--name", "short", "--auto_resume", "train.py", *args).returncode == 0
    gridctl.wait_until(lambda: steps_logged(gridctl, "short-exp0") >= 2)
    assert gridctl("interrupt", "short-exp0", "--window", "5").returncode == 0
    gridctl.wait_until(lambda: ended(gridctl, "short"), timeout=120)
    (experiment,) = gridctl.status("short")["experiments"]
    assert (experiment["status"], experiment["resumes"]) == ("succeeded", 1)
    log = gridctl("logs", "short-exp0").stdout
    assert "SIGTERM: saved step " in log  # SIGTERM came first, and in time to save
    saved = int(log.split("SIGTERM: saved step ")[1].split(",")[0])
    assert int(RESUMED.search(log).group(1)) == saved  # and the resume started from it
    assert "the final sync may not finish in time" in log


@pytest.fixture
def used(gridctl, project: Path, tmp_path: Path):
    """Runs one experiment to its end on datastore imgs, mounted at the path it yields."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("data")
    create(gridctl, "imgs", tmp_path / "data")
    (project / "read.py").write_text(
        "import os\nprint(os.listdir(os.environ['GRIDCTL_DATASTORE_DIR']))\n"
    )
    mount = tmp_path / "mnt"
    run = gridctl(
        "run",
        "--name",
        "used",
        "--wait",
        "--datastore_name",
        "imgs",
        "--datastore_mount_dir",
        str(mount),
        "read.py",
    )
    assert run.returncode == 0, run.stderr
    assert "['f.txt']" in gridctl("logs", "used-exp0").stdout
    return mount


def test_datastore_delete_takes_the_mounts_it_made(gridctl, used: Path):
    assert used.is_symlink() and (gridctl.home / "mounts" / "imgs" / "v1").is_dir()
    deleted = gridctl("datastore", "delete", "imgs")
    assert deleted.returncode == 0, deleted.stderr
    assert not used.is_symlink() and not used.exists()
    assert not (gridctl.home / "mounts" / "imgs").exists()


def test_a_home_that_used_datastores_can_be_deleted(gridctl, used: Path):
    # As a user cleaning up would do it (as root too: no immutable flag is left behind).
    removed = subprocess.run(["rm", "-rf", str(gridctl.home)], capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    assert not gridctl.home.exists()
