"""End to end on the local backend, through the real ``gridctl`` command."""

from __future__ import annotations

import json
import re
import signal
import textwrap
from pathlib import Path

import psutil
import pytest

TRAIN = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
parser.add_argument("--layers", type=int)
parser.add_argument("--tag")
args = parser.parse_args()
os.makedirs("out", exist_ok=True)
with open("out/result.json", "w") as f:
    json.dump({"lr": args.lr, "layers": args.layers, "tag": args.tag,
               "run": os.environ["GRIDCTL_RUN"], "experiment": os.environ["GRIDCTL_EXPERIMENT"],
               "resume": os.environ["GRIDCTL_RESUME_COUNT"],
               "scratch": os.path.isdir(os.environ["GRIDCTL_SCRATCH_DIR"])}, f)
print("trained", args.lr, args.layers, flush=True)
"""

SLOW = """\
import os, signal, sys, time
def on_term(signum, frame):
    open("terminated.txt", "w").write("SIGTERM")
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open("started.txt", "w").write("yes")
for i in range(600):
    print("tick", i, flush=True)
    time.sleep(0.1)
"""

STUBBORN = """\
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print("still here", flush=True))
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(0.1)
"""

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(textwrap.dedent(text))


def test_sweep_runs_every_combination_with_its_params(gridctl, project, tmp_path):
    write(project, "train.py", TRAIN)
    result = gridctl(
        "run",
        "--name",
        "sweep",
        "--wait",
        "--output",
        "json",
        "train.py",
        "--lr",
        "[0.1, 0.01]",
        "--layers",
        "[2, 4]",
        "--tag",
        "plain",
    )
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "succeeded"
    assert [e["status"] for e in final["experiments"]] == ["succeeded"] * 4
    assert [e["params"] for e in final["experiments"]] == [
        {"lr": 0.1, "layers": 2},
        {"lr": 0.1, "layers": 4},
        {"lr": 0.01, "layers": 2},
        {"lr": 0.01, "layers": 4},
    ]
    assert all(e["exit_code"] == 0 and e["resumes"] == 0 for e in final["experiments"])
    assert list(final["experiments"][0]["params"]) == ["lr", "layers"]

    dest = tmp_path / "downloaded"
    assert gridctl("artifacts", "sweep", "--dest", str(dest)).returncode == 0
    for i, expected in enumerate([(0.1, 2), (0.1, 4), (0.01, 2), (0.01, 4)]):
        got = json.loads((dest / f"sweep-exp{i}" / "out" / "result.json").read_text())
        assert (got["lr"], got["layers"], got["tag"]) == (*expected, "plain")
        assert (got["run"], got["experiment"], got["resume"]) == ("sweep", f"sweep-exp{i}", "0")
        assert got["scratch"] is True
    # Bundled files the script did not touch are not artifacts.
    assert not (dest / "sweep-exp0" / "train.py").exists()
    picked = gridctl.json("artifacts", "sweep-exp1", "--dest", str(tmp_path / "m"), "--match", "x$")
    assert picked["files"] == []
    picked = gridctl.json(
        "artifacts", "sweep-exp1", "--dest", str(tmp_path / "m"), "--match", "json$"
    )
    assert picked["files"] == [str(tmp_path / "m" / "sweep-exp1" / "out" / "result.json")]

    log = gridctl("logs", "sweep-exp3")
    assert log.returncode == 0
    assert STAMPED.match(log.stdout)
    assert log.stdout.rstrip().endswith("trained 0.01 4")


def test_failing_script_is_failed_with_its_exit_code(gridctl, project):
    write(project, "fail.py", "import sys\nprint('oops')\nsys.exit(3)\n")
    result = gridctl("run", "--name", "boom", "--wait", "fail.py")
    assert result.returncode == 1
    experiment = gridctl.experiment("boom", "boom-exp0")
    assert experiment["status"] == "failed"
    assert experiment["exit_code"] == 3
    assert gridctl.status("boom")["status"] == "failed"


def test_stop_ends_a_running_experiment_as_stopped(gridctl, project, tmp_path):
    write(project, "slow.py", SLOW)
    submitted = gridctl("run", "--name", "slow", "slow.py")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip().splitlines()[-1] == "slow"
    gridctl.wait_until(lambda: gridctl.experiment("slow", "slow-exp0")["status"] == "running")

    follower = gridctl.popen("logs", "slow-exp0", "--follow")
    stopped = gridctl("stop", "slow", "--output", "json")
    assert stopped.returncode == 0, stopped.stderr
    assert [e["status"] for e in json.loads(stopped.stdout)] == ["stopped"]
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0
    lines = out.splitlines()
    assert all(STAMPED.match(line) for line in lines)
    assert any(line.endswith("tick 0") for line in lines)
    assert lines[-1].endswith("got SIGTERM")

    dest = tmp_path / "kept"
    assert gridctl("artifacts", "slow-exp0", "--dest", str(dest)).returncode == 0
    assert (dest / "slow-exp0" / "terminated.txt").read_text() == "SIGTERM"
    assert (dest / "slow-exp0" / "started.txt").read_text() == "yes"


def test_logs_stream_while_the_script_runs(gridctl, project):
    write(project, "slow.py", SLOW)
    assert gridctl("run", "--name", "chatty", "slow.py").returncode == 0
    follower = gridctl.popen("logs", "chatty-exp0", "--follow")
    first = follower.stdout.readline()
    assert STAMPED.match(first) and "tick" in first
    assert gridctl.experiment("chatty", "chatty-exp0")["status"] == "running"
    tail = gridctl("logs", "chatty-exp0", "--tail", "2")
    assert len(tail.stdout.splitlines()) == 2
    gridctl("stop", "chatty")
    follower.communicate(timeout=60)
    assert follower.returncode == 0


def test_experiments_outlive_the_cli_call(gridctl, project):
    write(project, "train.py", TRAIN)
    result = gridctl("run", "--name", "detached", "train.py", "--lr", "[1, 2, 3]")
    assert result.returncode == 0
    gridctl.wait_until(lambda: gridctl.status("detached")["status"] == "succeeded")


def test_two_cli_processes_submitting_at_once_both_succeed(gridctl, project):
    write(project, "train.py", TRAIN)
    procs = [
        gridctl.popen("run", "--wait", "train.py", "--lr", f"[{i}, {i + 1}]") for i in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    runs = gridctl.json("status")
    assert len(runs) == 3
    assert {r["status"] for r in runs} == {"succeeded"}
    assert all(r["counts"] == {"succeeded": 2} for r in runs)


def test_a_home_inside_the_project_is_never_bundled(gridctl, project):
    """Hashing the home's registry would end the CLI's SQLite locks on it, and another
    process could then delete the journal the waiting CLI reads: it waited forever."""
    import tarfile

    gridctl.home = project / ".gridctl"
    gridctl.env["GRIDCTL_HOME"] = str(gridctl.home)
    write(project, "train.py", TRAIN)
    for lr in ("1", "2"):  # the second run finds the home the first one made
        done = gridctl("run", "--wait", "train.py", "--lr", lr, timeout=300)
        assert done.returncode == 0, done.stderr
    archives = sorted((gridctl.home / "store" / "bundles").iterdir())
    assert archives
    for archive in archives:
        with tarfile.open(archive) as bundle:
            assert bundle.getnames() == ["train.py"]


def test_delete_removes_records_and_artifacts(gridctl, project, tmp_path):
    write(project, "train.py", TRAIN)
    assert gridctl("run", "--name", "gone", "--wait", "train.py", "--lr", "[1, 2]").returncode == 0
    assert gridctl("delete", "gone").returncode == 0
    assert gridctl.json("status") == []
    assert not list((gridctl.home / "store" / "runs").glob("gone*"))
    missing = gridctl("status", "gone")
    assert missing.returncode == 2
    assert "no run" in missing.stderr


def test_an_agent_killed_mid_run_leaves_its_experiments_marked(gridctl, project):
    write(project, "slow.py", SLOW)
    assert gridctl("run", "--name", "orphan", "slow.py").returncode == 0
    gridctl.wait_until(lambda: gridctl.experiment("orphan", "orphan-exp0")["status"] == "running")
    agents = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "gridctl.agent" in (p.info["cmdline"] or []) and str(gridctl.home) in p.info["cmdline"]
    ]
    assert len(agents) == 1
    agents[0].send_signal(signal.SIGKILL)
    agents[0].wait(30)
    experiment = gridctl.experiment("orphan", "orphan-exp0")
    assert experiment["status"] == "failed"
    assert "ended unexpectedly" in experiment["reason"]


def test_dry_run_prints_the_exact_experiments(gridctl, project):
    write(project, "train.py", TRAIN)
    result = gridctl(
        "run",
        "--dry-run",
        "--output",
        "json",
        "--name",
        "dry",
        "train.py",
        "--lr",
        "[0.1, 1e-05]",
        "--opt",
        "['adam', 'sgd w']",
        "--flag",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "run": "dry",
        "disk_size": None,  # no AWS instance, so no root disk to size
        "max_runtime": None,
        "max_cost": None,
        # The project is in no git work tree: where its code came from is unknown.
        "source": {"git_url": None, "ref": None, "commit": None, "dirty": None},
        # This machine is the user's own: nothing to pay.
        "price_per_hour": 0.0,
        "price_source": None,
        "experiments": [
            {
                "name": f"dry-exp{i}",
                "params": {"lr": lr, "opt": opt},
                "argv": ["python", "train.py", "--lr", text, "--opt", opt, "--flag"],
                "nodes": 1,
                "price_per_hour": 0.0,
            }
            for i, (lr, text, opt) in enumerate(
                [
                    (0.1, "0.1", "adam"),
                    (0.1, "0.1", "sgd w"),
                    (1e-05, "1e-05", "adam"),
                    (1e-05, "1e-05", "sgd w"),
                ]
            )
        ],
    }
    assert gridctl.json("status") == []


def test_config_file_supplies_resources_and_sweeps(gridctl, project):
    write(project, "train.py", TRAIN)
    write(
        project,
        "grid.yml",
        """\
        compute:
          train:
            cpus: 1
            memory: 100M
        hyper_params:
          settings:
            strategy: random_search
            trials: 2
          params:
            lr: "[0.1, 0.2, 0.3]"
            layers: 3
        """,
    )
    result = gridctl(
        "run", "--config", "grid.yml", "--seed", "7", "--dry-run", "--output", "json", "train.py"
    )
    assert result.returncode == 0, result.stderr
    experiments = json.loads(result.stdout)["experiments"]
    assert len(experiments) == 2
    assert len({e["params"]["lr"] for e in experiments}) == 2
    assert all(e["argv"][-2:] == ["--layers", "3"] for e in experiments)
    again = gridctl(
        "run", "--config", "grid.yml", "--seed", "7", "--dry-run", "--output", "json", "train.py"
    )
    assert [e["params"] for e in json.loads(again.stdout)["experiments"]] == [
        e["params"] for e in experiments
    ]


BAD_INPUT = {
    "invalid run name": ["--name", "Bad_Name", "train.py"],
    "name ending like an experiment": ["--name", "abc-exp1", "train.py"],
    "memory without unit": ["--memory", "10", "train.py"],
    "missing script": ["nothere.py"],
    "script outside the root": ["../outside.py"],
    "unknown strategy": ["--strategy", "bayes", "train.py"],
    "trials without random search": ["--trials", "3", "train.py"],
    "zero cpus": ["--cpus", "0", "train.py"],
    "negative cpus": ["--cpus", "-2", "train.py"],
    "more gpus than the machine": ["--gpus", "64", "train.py"],
    "malformed list sweep": ["train.py", "--lr", "[1, 2"],
    "distribution without count": ["train.py", "--lr", "uniform(0, 1)"],
    "too many experiments": ["train.py", "--a", "range(0, 200)", "--b", "range(0, 100)"],
    "over the prompt limit without a tty": ["train.py", "--a", "range(0, 101)"],
    "unknown instance type on aws": [
        "--cloud",
        "aws",
        "--dry-run",
        "--instance_type",
        "x9",
        "train.py",
    ],
    "invalid yaml config": ["--config", "broken.yml", "train.py"],
    "unknown config key": ["--config", "unknown.yml", "train.py"],
    "unknown datastore": ["--datastore_name", "imagenet", "train.py"],
    "unknown option": ["--bogus", "train.py"],
}


@pytest.mark.parametrize("args", list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_starts_nothing(gridctl, project, tmp_path, args):
    write(project, "train.py", TRAIN)
    (tmp_path / "outside.py").write_text("print(1)\n")
    write(project, "broken.yml", "compute: [unclosed\n")
    write(project, "unknown.yml", "compute:\n  train:\n    gpu: 1\n")
    result = gridctl("run", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("gridctl: error: ")
    assert "Traceback" not in result.stderr
    assert gridctl.json("status") == []


def test_reused_run_name_is_refused(gridctl, project):
    write(project, "train.py", TRAIN)
    assert gridctl("run", "--name", "once", "train.py").returncode == 0
    again = gridctl("run", "--name", "once", "train.py")
    assert again.returncode == 2
    assert "already used" in again.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status", "nope"],
        ["logs", "nope-exp0"],
        ["stop", "nope"],
        ["delete", "nope"],
        ["artifacts", "nope"],
        ["interrupt", "nope-exp0"],
    ],
)
def test_unknown_names_are_exit_2_in_every_command(gridctl, command):
    result = gridctl(*command)
    assert result.returncode == 2
    assert result.stderr.startswith("gridctl: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_arguments_reach_the_script_verbatim_without_a_shell(gridctl, project, tmp_path):
    write(project, "echo.py", "import json, sys\njson.dump(sys.argv[1:], open('argv.json', 'w'))\n")
    tricky = ["--tag", "a b; $(touch pwned) `id` | cat", "--path=*.py", "-x", "--n", "-1"]
    result = gridctl("run", "--name", "verbatim", "--wait", "echo.py", *tricky)
    assert result.returncode == 0, result.stderr
    assert gridctl("artifacts", "verbatim", "--dest", str(tmp_path / "a")).returncode == 0
    assert json.loads((tmp_path / "a" / "verbatim-exp0" / "argv.json").read_text()) == tricky
    assert not list(tmp_path.rglob("pwned"))


def test_shell_scripts_and_executables_run_with_the_right_interpreter(gridctl, project):
    write(project, "job.sh", 'echo "bash says $1"\n')
    tool = project / "tool"
    tool.write_text("#!/bin/sh\necho tool says $1\n")
    tool.chmod(0o755)
    assert gridctl("run", "--name", "viabash", "--wait", "job.sh", "hi").returncode == 0
    assert gridctl("logs", "viabash-exp0").stdout.rstrip().endswith("bash says hi")
    dry = gridctl("run", "--dry-run", "--output", "json", "tool", "x")
    assert json.loads(dry.stdout)["experiments"][0]["argv"] == ["./tool", "x"]
    assert gridctl("run", "--name", "direct", "--wait", "tool", "yo").returncode == 0
    assert gridctl("logs", "direct-exp0").stdout.rstrip().endswith("tool says yo")


def test_run_follow_streams_every_experiment_then_exits_with_the_outcome(gridctl, project):
    write(project, "train.py", TRAIN)
    result = gridctl("run", "--name", "followed", "--follow", "train.py", "--lr", "[1, 2]")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("followed-exp0 | ") and "trained 1.0" in line for line in lines)
    assert any(line.startswith("followed-exp1 | ") and "trained 2.0" in line for line in lines)


def test_status_watch_returns_once_the_run_has_ended(gridctl, project):
    write(project, "quick.py", "import time\ntime.sleep(1)\nprint('done')\n")
    assert gridctl("run", "--name", "watched", "quick.py").returncode == 0
    watched = gridctl("status", "watched", "--watch")
    assert watched.returncode == 0
    assert "succeeded" in watched.stdout
    assert gridctl.status("watched")["status"] == "succeeded"


def test_large_sweeps_ask_on_a_terminal(gridctl, project):
    import os
    import pty
    import subprocess

    from conftest import GRIDCTL

    write(project, "train.py", TRAIN)
    args = [GRIDCTL, "run", "--dry-run", "--output", "json", "train.py", "--a", "range(0, 101)"]
    for answer, code in (("y", 0), ("n", 2)):
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            args, cwd=project, env=gridctl.env, stdin=slave, stdout=subprocess.PIPE, text=True
        )
        os.close(slave)
        os.write(master, f"{answer}\n".encode())
        out, _ = proc.communicate(timeout=60)
        os.close(master)
        assert proc.returncode == code
        if code == 0:
            assert len(json.loads(out[out.index("{") :])["experiments"]) == 101
    unattended = gridctl("run", "--dry-run", "--ignore_warnings", *args[-3:])
    assert unattended.returncode == 0


def test_secrets_in_the_bundle_are_named_in_a_warning(gridctl, project):
    write(project, "train.py", TRAIN)
    write(project, ".env", "TOKEN=hunter2\n")
    listed = gridctl("bundle", "--list", "--output", "json")
    assert sorted(json.loads(listed.stdout)) == [".env", "train.py"]
    assert ".env" in listed.stderr and "warning" in listed.stderr
    write(project, ".gitignore", ".env\n")
    quiet = gridctl("bundle", "--output", "json")
    assert json.loads(quiet.stdout)["files"] == 2
    assert ".env" not in quiet.stderr


def test_dashes_to_underscores_is_opt_in(gridctl, project):
    write(project, "train.py", TRAIN)
    plain = gridctl("run", "--dry-run", "--output", "json", "train.py", "--data-dir", "x")
    assert json.loads(plain.stdout)["experiments"][0]["argv"][-2:] == ["--data-dir", "x"]
    rewritten = gridctl(
        "run",
        "--dry-run",
        "--output",
        "json",
        "--dashes_to_underscores",
        "train.py",
        "--data-dir",
        "x",
    )
    assert json.loads(rewritten.stdout)["experiments"][0]["argv"][-2:] == ["--data_dir", "x"]


def test_a_script_ignoring_sigterm_is_killed_after_the_grace_period(gridctl, project):
    write(project, "stubborn.py", STUBBORN)
    gridctl.env["GRIDCTL_GRACE_PERIOD"] = "1"
    assert gridctl("run", "--name", "stubborn", "stubborn.py").returncode == 0
    gridctl.wait_until(lambda: "ignoring" in gridctl("logs", "stubborn-exp0").stdout)
    stopped = gridctl("stop", "stubborn-exp0", "--output", "json")
    (experiment,) = json.loads(stopped.stdout)
    assert experiment["status"] == "stopped"
    assert experiment["exit_code"] == 128 + signal.SIGKILL
    assert "still here" in gridctl("logs", "stubborn-exp0").stdout
