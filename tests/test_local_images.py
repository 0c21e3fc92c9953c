"""``gridctl run --image`` on the local backend, through the real ``gridctl`` command and the
local daemon, with a stand-in docker CLI first on PATH (fakedocker.py): the command line the
runner gives docker, the values kept out of it, the stop path, and the refusal without docker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fakedocker import FakeDocker, install

TRAIN = """\
import json, os, sys
json.dump(dict(os.environ), open("env.json", "w"))
print("trained in", os.getcwd(), sys.argv[1:], flush=True)
"""

SLOW = """\
import signal, sys, time
def on_term(*_):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("started", flush=True)
while True:
    time.sleep(0.1)
"""

REAL_IMAGE = "python:3.12-slim"
"""An image with ``python`` for the test that needs a real daemon (and Docker Hub)."""
CONFIG = """\
compute:
  train:
    image: busybox:1.36
    environment:
      TOKEN: s3cret-value
"""


@pytest.fixture
def docker(gridctl, tmp_path: Path) -> FakeDocker:
    fake = install(tmp_path / "docker")
    gridctl.env["PATH"] = f"{fake.bin_dir}{os.pathsep}{gridctl.env['PATH']}"
    return fake


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


def ended(gridctl, run: str) -> dict:
    gridctl.wait_until(lambda: gridctl.status(run)["status"] not in ("queued", "running"), 120)
    (experiment,) = gridctl.status(run)["experiments"]
    return experiment


def test_a_run_in_an_image_gets_its_variables_by_name_only(gridctl, project, docker):
    (project / "train.py").write_text(TRAIN)
    (project / "grid.yml").write_text(CONFIG)
    gridctl.env["SHELL_ONLY"] = "of the user's shell"
    result = gridctl("run", "--name", "img", "--config", "grid.yml", "train.py", "--lr", "0.1")
    assert result.returncode == 0, result.stderr
    experiment = ended(gridctl, "img")
    assert experiment["status"] == "succeeded", gridctl("logs", "img-exp0").stdout
    assert "trained in" in gridctl("logs", "img-exp0").stdout

    (call,) = docker.calls("run")
    argv = call["argv"]
    assert "s3cret-value" not in " ".join(argv)
    names = flag_values(argv, "-e")
    assert "TOKEN" in names and "GRIDCTL_RUN" in names
    # The container sees the run's variables, not the submitter's shell (as on a node).
    assert "SHELL_ONLY" not in names and "PATH" not in names and "HOME" not in names
    assert call["env"]["TOKEN"] == "s3cret-value"
    assert flag_values(argv, "--user") == [f"{os.getuid()}:{os.getgid()}"]
    assert argv[argv.index("busybox:1.36") + 1 :] == ["python", "train.py", "--lr", "0.1"]
    (workdir,) = flag_values(argv, "-w")
    assert f"{workdir}:{workdir}" in flag_values(argv, "-v")
    assert "--gpus" not in argv
    assert [c["argv"][0] for c in docker.calls()][:2] == ["image", "pull"]
    assert docker.calls("login") == []  # Docker Hub: no login


def test_a_stop_reaches_the_script_in_its_container(gridctl, project, docker):
    (project / "train.py").write_text(SLOW)
    result = gridctl("run", "--name", "slow", "--image", "busybox", "train.py")
    assert result.returncode == 0, result.stderr
    gridctl.wait_until(lambda: "started" in gridctl("logs", "slow-exp0").stdout, 120)
    assert gridctl("stop", "slow").returncode == 0
    experiment = ended(gridctl, "slow")
    assert experiment["status"] == "stopped"
    assert "got SIGTERM" in gridctl("logs", "slow-exp0").stdout
    ((name,),) = {tuple(flag_values(c["argv"], "--name")) for c in docker.calls("run")}
    assert ["kill", "--signal", "SIGTERM", name] in [c["argv"] for c in docker.calls("kill")]
    assert docker.running() == []


def test_a_failed_pull_is_no_script_failure(gridctl, project, docker):
    (project / "train.py").write_text(TRAIN)
    result = gridctl("run", "--name", "gone", "--image", "missing/image", "train.py")
    assert result.returncode == 0, result.stderr
    experiment = ended(gridctl, "gone")
    assert experiment["status"] == "failed"
    assert experiment["exit_code"] is None
    assert experiment["reason"].startswith(
        "could not prepare the experiment: cannot pull missing/image: "
    )
    assert docker.calls("run") == []


def test_without_docker_a_run_with_an_image_is_refused(gridctl, project, tmp_path: Path):
    (project / "train.py").write_text(TRAIN)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**gridctl.env, "PATH": str(empty)}
    result = gridctl("run", "--name", "nodocker", "--image", "busybox", "train.py", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gridctl: error: --image busybox: docker is not on your PATH (install Docker)"
    ]
    assert json.loads(gridctl("status", "--output", "json").stdout) == []


REAL = """\
import os
open("out.txt", "w").write("written")
print("uid", os.getuid(), "token", os.environ["TOKEN"], "cwd", os.getcwd(), flush=True)
"""


def test_a_real_container_runs_the_script_as_the_user(gridctl, project):
    """Only where a docker daemon answers (none on the machines this was written on)."""
    docker = shutil.which("docker")
    daemon = (
        docker is not None
        and subprocess.run(
            [docker, "info"], capture_output=True, timeout=60, check=False
        ).returncode
        == 0
    )
    if not daemon:
        print("skipped: no docker daemon answers `docker info` on this machine")
        pytest.skip("no docker daemon on this machine")
    (project / "train.py").write_text(REAL)
    (project / "grid.yml").write_text(CONFIG.replace("busybox:1.36", REAL_IMAGE))
    result = gridctl("run", "--name", "real", "--config", "grid.yml", "train.py")
    assert result.returncode == 0, result.stderr
    experiment = ended(gridctl, "real")
    log = gridctl("logs", "real-exp0").stdout
    assert experiment["status"] == "succeeded", log
    assert f"uid {os.getuid()} token s3cret-value cwd " in log
