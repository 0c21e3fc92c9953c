"""Interruptions and auto-resume on the local backend, through the real ``gridctl``
command, with the checkpointing example script from ``examples/resumable``."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import psutil
import pytest
from scripts import RESUMABLE_EXAMPLE, RESUMED, SLOW_FIRST_ATTEMPT, steps_logged


@pytest.fixture
def counter(project: Path) -> Path:
    shutil.copy(RESUMABLE_EXAMPLE, project / "train.py")
    return project / "train.py"


def ended(gridctl, run: str) -> bool:
    return gridctl.status(run)["status"] not in ("queued", "running")


def test_an_interrupted_experiment_resumes_from_its_checkpoint(gridctl, counter, tmp_path):
    shutil.copy(counter, counter.with_name("example.py"))
    counter.write_text(SLOW_FIRST_ATTEMPT)
    args = ("--steps", "40", "--step-seconds", "0.1", "--lr", "0.5")
    assert gridctl("run", "--name", "res", "--auto_resume", "train.py", *args).returncode == 0
    gridctl.wait_until(lambda: steps_logged(gridctl, "res-exp0") >= 12)
    sent = gridctl("interrupt", "res-exp0", "--window", "30")
    assert sent.returncode == 0, sent.stderr
    assert "res-exp0: interruption sent (30 s to save)" in sent.stdout
    gridctl.wait_until(lambda: ended(gridctl, "res"), timeout=120)
    (experiment,) = gridctl.status("res")["experiments"]
    assert (experiment["status"], experiment["resumes"], experiment["exit_code"]) == (
        "succeeded",
        1,
        0,
    )
    first, second = experiment["attempts"]
    assert (first["status"], first["reason"]) == ("interrupted", "interrupted by gridctl interrupt")
    assert (second["status"], second["reason"]) == ("succeeded", None)
    assert first["finished_at"] <= second["started_at"]
    log = gridctl("logs", "res-exp0").stdout
    assert int(RESUMED.search(log).group(1)) >= 12  # from the checkpoint, not from zero
    assert "gridctl: interrupted by gridctl interrupt" in log
    dest = tmp_path / "artifacts"
    assert gridctl("artifacts", "res", "--dest", str(dest)).returncode == 0
    result = json.loads((dest / "res-exp0" / "out" / "result.json").read_text())
    assert (result["steps"], result["resumes"]) == (40, 1)
    assert result["loss"] == pytest.approx(1.5**-40)  # every step ran exactly once


def test_without_auto_resume_an_interrupted_experiment_ends_interrupted(gridctl, counter):
    args = ("--steps", "600", "--step-seconds", "0.1")
    assert gridctl("run", "--name", "once", "train.py", *args).returncode == 0
    gridctl.wait_until(lambda: steps_logged(gridctl, "once-exp0") >= 3)
    assert gridctl("interrupt", "once-exp0").returncode == 0
    gridctl.wait_until(lambda: ended(gridctl, "once"), timeout=60)
    (experiment,) = gridctl.status("once")["experiments"]
    # The script saved and exited 0 on SIGTERM: still not a success.
    assert (experiment["status"], experiment["exit_code"]) == ("interrupted", 0)
    assert experiment["reason"] == "interrupted by gridctl interrupt"
    assert experiment["resumes"] == 0
    assert "SIGTERM: saved step" in gridctl("logs", "once-exp0").stdout


def test_a_script_ignoring_sigterm_is_killed_at_the_deadline(gridctl, project):
    (project / "stubborn.py").write_text(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('not saving', flush=True))\n"
        "print('working', flush=True)\n"
        "time.sleep(600)\n"
    )
    assert gridctl("run", "--name", "stub", "stubborn.py").returncode == 0
    gridctl.wait_until(lambda: "working" in gridctl("logs", "stub-exp0").stdout)
    # The deadline leaves less than the final sync's margin: SIGKILL comes at once.
    assert gridctl("interrupt", "stub-exp0", "--window", "1").returncode == 0
    gridctl.wait_until(lambda: ended(gridctl, "stub"), timeout=60)
    (experiment,) = gridctl.status("stub")["experiments"]
    assert (experiment["status"], experiment["exit_code"]) == ("interrupted", 128 + 9)


def test_a_killed_agent_resumes_auto_resume_experiments(gridctl, counter, tmp_path):
    gridctl.env["GRIDCTL_SYNC_INTERVAL"] = "0.5"
    args = ("--steps", "60", "--step-seconds", "0.1")
    assert gridctl("run", "--name", "crash", "--auto_resume", "train.py", *args).returncode == 0
    gridctl.wait_until(lambda: steps_logged(gridctl, "crash-exp0") >= 15)
    (agent,) = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "gridctl.agent" in (p.info["cmdline"] or []) and str(gridctl.home) in p.info["cmdline"]
    ]
    agent.send_signal(signal.SIGKILL)
    agent.wait(30)
    # The next gridctl call notices, ends the orphaned script and queues a resume.
    gridctl.wait_until(lambda: ended(gridctl, "crash"), timeout=120)
    (experiment,) = gridctl.status("crash")["experiments"]
    assert (experiment["status"], experiment["resumes"]) == ("succeeded", 1)
    assert "ended unexpectedly" in experiment["attempts"][0]["reason"]
    assert int(RESUMED.search(gridctl("logs", "crash-exp0").stdout).group(1)) >= 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "0"], "--window must be above 0"),
        (["--window", "7200"], "at most 3600"),
    ],
)
def test_bad_interrupts_are_one_line_exit_2(gridctl, counter, args, message):
    assert gridctl("run", "--name", "bad", "--wait", "train.py", "--steps", "1").returncode == 0
    result = gridctl("interrupt", "bad-exp0", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    ended_already = gridctl("interrupt", "bad-exp0")
    assert ended_already.returncode == 2
    assert "only running experiments can be interrupted; not running: bad-exp0" in (
        ended_already.stderr
    )
