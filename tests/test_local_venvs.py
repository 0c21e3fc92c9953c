"""The script's Python environment on the local backend, through the real ``gridctl``: built
from the project's requirements.txt once, reused by later runs, shown while it is built, a
failed install told apart from a failed script, and ``--no_env`` as before."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from wheels import make_wheel

from gridctl.agent.core.venvkey import venv_key
from gridctl.agent.runner.venv import probe

SCRIPT = """\
import sys
import gridctl_tiny
print("value", gridctl_tiny.VALUE, "prefix", sys.prefix, flush=True)
"""
PLAIN = """\
import sys
print("prefix", sys.prefix, "base", sys.base_prefix, flush=True)
"""


def _project(project: Path) -> None:
    wheel = make_wheel(project / "wheels", "gridctl_tiny", "VALUE = 7\n")
    (project / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    (project / "train.py").write_text(SCRIPT)


def _run(gridctl, name: str, *extra: str, fails: bool = False) -> dict:
    result = gridctl("run", "--name", name, "--wait", "--output", "json", *extra, "train.py")
    assert (result.returncode != 0) == fails, result.stderr
    return json.loads(result.stdout)


def test_a_run_gets_its_requirements_and_the_next_run_reuses_them(gridctl, project):
    _project(project)
    first = _run(gridctl, "first")
    assert first["status"] == "succeeded", first
    log = gridctl("logs", "first-exp0").stdout
    venvs = gridctl.home / "venvs"
    (venv,) = [p for p in venvs.iterdir() if p.is_dir()]
    assert f"value 7 prefix {venv}" in log
    assert "gridctl: pip install -r requirements.txt" in log
    assert "built in" in log

    second = _run(gridctl, "second")
    assert second["status"] == "succeeded", second
    log = gridctl("logs", "second-exp0").stdout
    assert f"value 7 prefix {venv}" in log
    assert "pip install" not in log
    assert "reused" in log


def test_status_shows_the_environment_being_built(gridctl, project):
    """The venv's lock held, as another agent building it would: the experiment waits in
    ``starting (building environment)``, then runs once it is let go."""
    _project(project)
    python = shutil.which("python", path=os.environ["PATH"])
    assert python is not None
    key = venv_key(
        [("requirements.txt", (project / "requirements.txt").read_bytes())], probe(python)
    )
    venvs = gridctl.home / "venvs"
    venvs.mkdir(parents=True)
    with (venvs / f".{key}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = gridctl("run", "--name", "held", "train.py")
        assert started.returncode == 0, started.stderr

        def building() -> bool:
            return gridctl.experiment("held", "held-exp0")["reason"] == "building environment"

        gridctl.wait_until(building, timeout=120)
        experiment = gridctl.experiment("held", "held-exp0")
        assert experiment["status"] == "starting"
        assert experiment["attempts"][-1]["reason"] == "building environment"
        table = gridctl("status", "held").stdout
        assert "starting (building environment)" in table
    gridctl.wait_until(
        lambda: gridctl.experiment("held", "held-exp0")["status"] == "succeeded", 180
    )
    assert gridctl.experiment("held", "held-exp0")["reason"] is None


def test_a_failed_install_fails_the_experiment_with_pips_words(gridctl, project):
    (project / "requirements.txt").write_text("./wheels/gridctl_missing-1.0-py3-none-any.whl\n")
    (project / "train.py").write_text(PLAIN)
    final = _run(gridctl, "broken", fails=True)
    (experiment,) = final["experiments"]
    assert experiment["status"] == "failed"
    assert experiment["exit_code"] is None
    reason = experiment["reason"]
    assert reason.startswith("installing requirements.txt failed: ")
    assert "gridctl_missing" in reason and "\n" not in reason
    log = gridctl("logs", "broken-exp0").stdout
    assert "prefix" not in log  # the script never ran


def test_no_env_runs_on_the_interpreter_as_it_is(gridctl, project):
    (project / "requirements.txt").write_text("./wheels/gridctl_missing-1.0-py3-none-any.whl\n")
    (project / "train.py").write_text(PLAIN)
    final = _run(gridctl, "plain", "--no_env")
    assert final["status"] == "succeeded", final
    log = gridctl("logs", "plain-exp0").stdout
    python = shutil.which("python", path=os.environ["PATH"])
    assert python is not None
    prefix = probe(python).executable  # the interpreter the user's PATH finds, unchanged
    assert "pip install" not in log and "building" not in log
    assert not (gridctl.home / "venvs").exists() or not any((gridctl.home / "venvs").iterdir())
    assert "prefix" in log and str(prefix.parent.parent) in log


def test_a_dependency_file_outside_the_project_is_refused(gridctl, project):
    (project / "train.py").write_text(PLAIN)
    for named in ("missing.txt", "../requirements.txt"):
        result = gridctl("run", "--dependency_file", named, "train.py")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"gridctl: error: --dependency_file {named} is not")


def test_a_named_dependency_file_builds_the_venv(gridctl, project):
    _project(project)
    (project / "requirements.txt").rename(project / "env.txt")
    final = _run(gridctl, "named", "--dependency_file", "env.txt")
    assert final["status"] == "succeeded", final
    log = gridctl("logs", "named-exp0").stdout
    assert "gridctl: pip install -r env.txt" in log and "value 7" in log


LOCKED = """\
version = 1
requires-python = ">=3.10"

[[package]]
name = "gridctl-tiny"
version = "1.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "demo"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "gridctl-tiny" }]
"""


def test_a_uv_lock_holds_the_projects_dependencies_to_its_versions(gridctl, project):
    """pyproject.toml's dependencies, resolved to the versions uv.lock names: 1.0 here,
    though the index (a folder of wheels) also has 2.0."""
    wheels = project.parent / "index"
    make_wheel(wheels, "gridctl_tiny", "VALUE = 1\n", version="1.0")
    make_wheel(wheels, "gridctl_tiny", "VALUE = 2\n", version="2.0")
    gridctl.env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\ndependencies = ["gridctl-tiny"]\n'
    )
    (project / "uv.lock").write_text(LOCKED)
    (project / "train.py").write_text(SCRIPT)
    final = _run(gridctl, "locked")
    assert final["status"] == "succeeded", final
    log = gridctl("logs", "locked-exp0").stdout
    assert "versions held to uv.lock" in log and "value 1 " in log

    # Without the lock, the newest version.
    (project / "uv.lock").unlink()
    final = _run(gridctl, "unlocked")
    assert final["status"] == "succeeded", final
    assert "value 2 " in gridctl("logs", "unlocked-exp0").stdout
