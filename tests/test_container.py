"""``--image``: the ``docker run`` vector the runner renders, and the runner's container path
(launch, environment, stop, interruption) through a stand-in docker CLI (fakedocker.py):
these machines have no docker daemon."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fakedocker import FakeDocker, install
from recorders import Recorded, workspace_in

from gridctl.agent.core import datastore
from gridctl.agent.core.spec import DatastoreMount, ExperimentSpec, Scratch
from gridctl.agent.core.store import LocalStore
from gridctl.agent.node.ecr import ecr_registry
from gridctl.agent.runner import container
from gridctl.agent.runner.container import Container, ContainerError, Mount
from gridctl.agent.runner.experiment import ExperimentRunner, RunnerSettings
from gridctl.agent.runner.notice import interruption
from gridctl.cli.bundle import scan, upload

TYPICAL = Container(
    image="123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
    name="gridctl-r-exp0-0-0123abcd",
    argv=("python", "train.py", "--lr", "0.1"),
    workdir=Path("/opt/gridctl/work/r-exp0"),
    mounts=(
        Mount(Path("/opt/gridctl/work/r-exp0"), "/opt/gridctl/work/r-exp0"),
        Mount(Path("/opt/gridctl/datastores/corpus/v1/tree"), "/datastores/corpus", True),
        Mount(Path("/scratch/r-exp0"), "/scratch/r-exp0"),
    ),
    variables=("WANDB_API_KEY", "CUDA_VISIBLE_DEVICES"),
    user=(1000, 1000),
    gpu_ids=(2, 3),
    cpus=8.0,
    cpu_ids=(8, 9, 10, 11, 12, 13, 14, 15),
    memory=32 << 30,
)


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


def test_the_run_vector_has_every_flag_and_ends_with_the_image_and_the_script():
    argv = container.run_argv(TYPICAL, "/usr/bin/docker")
    image_at = argv.index(TYPICAL.image)
    assert argv[:2] == ["/usr/bin/docker", "run"]
    assert argv[image_at + 1 :] == list(TYPICAL.argv)
    options = argv[2:image_at]
    for word in ("--rm", "--init", "--sig-proxy=false"):
        assert word in options
    assert flag_values(options, "--pull") == ["never"]
    assert flag_values(options, "--name") == [TYPICAL.name]
    assert flag_values(options, "--network") == ["host"]
    assert flag_values(options, "--ipc") == ["host"]
    # docker splits --gpus as CSV: the quotes keep the device list one field.
    assert flag_values(options, "--gpus") == ['"device=2,3"']
    assert flag_values(options, "--cpus") == ["8"]
    assert flag_values(options, "--cpuset-cpus") == ["8,9,10,11,12,13,14,15"]
    assert flag_values(options, "--memory") == [f"{32 << 30}b"]
    assert flag_values(options, "--memory-swap") == [f"{32 << 30}b"]
    assert flag_values(options, "--user") == ["1000:1000"]
    assert flag_values(options, "-w") == ["/opt/gridctl/work/r-exp0"]
    assert flag_values(options, "-v") == [
        "/opt/gridctl/work/r-exp0:/opt/gridctl/work/r-exp0",
        "/opt/gridctl/datastores/corpus/v1/tree:/datastores/corpus:ro",
        "/scratch/r-exp0:/scratch/r-exp0",
    ]
    # Names alone: docker reads the values from its own environment.
    assert flag_values(options, "-e") == ["WANDB_API_KEY", "CUDA_VISIBLE_DEVICES"]
    assert not any("=" in name for name in flag_values(options, "-e"))
    # Nothing runs through a shell.
    assert not {"sh", "bash", "-c", "/bin/sh"} & set(argv)


def test_what_the_spec_does_not_ask_for_is_left_out():
    plain = dataclasses.replace(TYPICAL, gpu_ids=(), cpus=None, cpu_ids=(), memory=0)
    argv = container.run_argv(plain)
    for flag in ("--gpus", "--cpus", "--cpuset-cpus", "--memory", "--memory-swap"):
        assert flag not in argv
    pinned_anywhere = dataclasses.replace(plain, cpus=1.5)
    assert flag_values(container.run_argv(pinned_anywhere), "--cpus") == ["1.5"]
    assert "--cpuset-cpus" not in container.run_argv(pinned_anywhere)


def test_a_path_with_a_colon_cannot_be_mounted():
    with pytest.raises(ContainerError, match="contains ':'"):
        Mount(Path("/data/a:b"), "/data").flag()


def test_the_container_sees_its_gpus_from_zero_and_none_of_dockers_own_variables():
    env = {
        "CUDA_VISIBLE_DEVICES": "2,3",
        "WANDB_API_KEY": "s3cret",
        "PATH": "/home/me/.venv/bin",
        "HOME": "/home/me",
        "DOCKER_HOST": "unix:///x.sock",
    }
    kept, dropped = container.script_variables(env, gpus=2)
    assert kept["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert kept["WANDB_API_KEY"] == "s3cret"
    assert kept["TINI_KILL_PROCESS_GROUP"] == "1"
    assert dropped == ["DOCKER_HOST", "HOME", "PATH"]
    assert not set(dropped) & set(kept)
    assert container.script_variables(env, gpus=0)[0]["CUDA_VISIBLE_DEVICES"] == ""


def test_container_names_are_deterministic_per_attempt_and_machine():
    name = container.container_name("r-exp0-node-1", 2, Path("/opt/gridctl/work/r-exp0-node-1"))
    assert name == container.container_name(
        "r-exp0-node-1", 2, Path("/opt/gridctl/work/r-exp0-node-1")
    )
    assert name.startswith("gridctl-r-exp0-node-1-2-")
    assert name != container.container_name("r-exp0-node-1", 3, Path("/opt/gridctl/work/x"))
    assert name != container.container_name("r-exp0-node-1", 2, Path("/home/me/.gridctl/w"))
    assert container.container_name("a b/c", 0, Path("/w")).startswith("gridctl-a-b-c-0-")


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/train:1", "eu-west-1"),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/a/b@sha256:00", "us-east-1"),
        ("public.ecr.aws/x/y:1", None),
        ("pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime", None),
        ("busybox", None),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", None),
    ],
)
def test_ecr_images_are_told_apart(image: str, registry: str | None):
    found = ecr_registry(image)
    assert (found.region if found else None) == registry


def test_the_real_docker_cli_accepts_the_vector():
    """Flags are parsed before the CLI connects: against a socket nobody serves, a vector it
    accepts fails to connect, a wrong one fails on its flags."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", "WANDB_API_KEY": "x"}
    env["CUDA_VISIBLE_DEVICES"] = "0,1"
    result = subprocess.run(
        container.run_argv(TYPICAL, docker), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Cannot connect to the Docker daemon" in result.stderr, result.stderr


@pytest.fixture
def docker(tmp_path: Path, monkeypatch) -> FakeDocker:
    fake = install(tmp_path / "docker")
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


def runner_for(tmp_path: Path, script: str, **spec_fields) -> tuple[ExperimentRunner, Recorded]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(script)
    store = LocalStore(tmp_path / "store")
    bundle = scan(project)
    upload(bundle, store)
    spec = ExperimentSpec(
        "r", "r-exp0", 0, ("python", "train.py"), bundle.key, image="busybox", **spec_fields
    )
    workspace = workspace_in(tmp_path)
    recorded = Recorded()
    runner = ExperimentRunner(
        spec,
        store,
        workspace,
        recorded,
        gpu_ids=(2, 3),
        cpu_ids=(0,),
        base_env={"NODE_ONLY": "1", "PATH": os.environ["PATH"]},
        settings=RunnerSettings(grace_period=3, sync_interval=3600),
    )
    return runner, recorded


SHOWS_ENV = """\
import json, os
json.dump(dict(os.environ), open("env.json", "w"))
"""


def test_the_runner_starts_the_container_with_values_only_in_the_clis_environment(
    tmp_path: Path, docker: FakeDocker
):
    runner, recorded = runner_for(
        tmp_path, SHOWS_ENV, env={"TOKEN": "s3cret-value"}, cpus=1, pin_cpus=True, memory=1 << 30
    )
    assert runner.run().status == "succeeded"
    (call,) = docker.calls("run")
    argv = call["argv"]
    assert "s3cret-value" not in " ".join(argv)
    names = flag_values(argv, "-e")
    assert "TOKEN" in names and "GRIDCTL_EXPERIMENT" in names
    # The node's own environment is the machine's, not the image's.
    assert "NODE_ONLY" not in names and "PATH" not in names
    assert call["env"]["TOKEN"] == "s3cret-value"
    assert flag_values(argv, "--gpus") == ['"device=2,3"']
    assert flag_values(argv, "--cpuset-cpus") == ["0"]
    assert flag_values(argv, "--memory") == [f"{1 << 30}b"]
    assert flag_values(argv, "--user") == [f"{os.getuid()}:{os.getgid()}"]
    exec_dir = str(tmp_path / "work")
    assert flag_values(argv, "-w") == [exec_dir]
    assert f"{exec_dir}:{exec_dir}" in flag_values(argv, "-v")
    notices = str(tmp_path / "notices")
    assert f"{notices}:{notices}:ro" in flag_values(argv, "-v")
    assert argv[-3:] == ["busybox", "python", "train.py"]
    # The image was pulled first, the container's GPUs count from 0.
    assert [c["argv"][0] for c in docker.calls()][:3] == ["image", "pull", "run"]
    import json

    seen = json.loads((tmp_path / "work" / "env.json").read_text())
    assert seen["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert seen["TOKEN"] == "s3cret-value"
    assert "NODE_ONLY" not in seen
    assert recorded.outcome == ("succeeded", 0, None)


def test_the_datastore_and_scratch_are_mounted_where_the_script_is_told(
    tmp_path: Path, docker: FakeDocker
):
    runner, recorded = runner_for(tmp_path, SHOWS_ENV)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    datastore.create(runner.store, "corpus", data)
    runner.spec = dataclasses.replace(
        runner.spec,
        datastore=DatastoreMount("corpus", 1, "/datastores/corpus"),
        scratch=Scratch(1, "/scratch"),
    )
    assert runner.run().status == "succeeded", (tmp_path / "log").read_text()
    (call,) = docker.calls("run")
    mounts = flag_values(call["argv"], "-v")
    (tree,) = [m.split(":")[0] for m in mounts if m.endswith(":/datastores/corpus:ro")]
    assert Path(tree).is_relative_to(tmp_path / "mounts")
    assert call["env"]["GRIDCTL_DATASTORE_DIR"] == "/datastores/corpus"
    scratch = str(tmp_path / "root" / "scratch" / "r-exp0")
    assert f"{scratch}:{scratch}" in mounts
    assert call["env"]["GRIDCTL_SCRATCH_DIR"] == scratch


WAITS_FOR_TERM = """\
import signal, sys, time
def on_term(*_):
    print("got SIGTERM", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, on_term)
open("ready", "w").close()
while True:
    time.sleep(0.05)
"""

IGNORES_TERM = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open("ready", "w").close()
while True:
    time.sleep(0.05)
"""


def wait_for(predicate, timeout: float = 60) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < give_up, "condition not reached in time"
        time.sleep(0.02)


def started(runner: ExperimentRunner, tmp_path: Path) -> threading.Thread:
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    wait_for(lambda: (tmp_path / "work" / "ready").exists())
    return thread


def test_a_stop_reaches_the_container_by_name(tmp_path: Path, docker: FakeDocker):
    runner, recorded = runner_for(tmp_path, WAITS_FOR_TERM)
    thread = started(runner, tmp_path)
    runner.request_stop()
    thread.join(60)
    assert recorded.outcome == ("stopped", 3, "stopped by user"), (tmp_path / "log").read_text()
    assert "got SIGTERM" in (tmp_path / "log").read_text()
    ((name,),) = {tuple(flag_values(c["argv"], "--name")) for c in docker.calls("run")}
    assert ["kill", "--signal", "SIGTERM", name] in [c["argv"] for c in docker.calls("kill")]
    assert docker.running() == []


def test_a_stop_before_the_container_exists_reaches_it_once_it_does(
    tmp_path: Path, docker: FakeDocker
):
    runner, recorded = runner_for(tmp_path, WAITS_FOR_TERM)
    (docker.state / "hold").touch()
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert recorded.started.wait(60)
    runner.request_stop()
    wait_for(lambda: docker.calls("kill"))  # too early: no such container yet
    (docker.state / "hold").unlink()
    thread.join(60)
    assert recorded.outcome is not None, (tmp_path / "log").read_text()
    # SIGTERM landed (the script's handler, or its default action if it came first), not
    # the SIGKILL after the grace period.
    assert recorded.outcome[:2] in (("stopped", 3), ("stopped", 128 + signal.SIGTERM))
    assert docker.running() == []


def test_a_stop_kills_a_container_that_ignores_sigterm(tmp_path: Path, docker: FakeDocker):
    runner, recorded = runner_for(tmp_path, IGNORES_TERM)
    thread = started(runner, tmp_path)
    runner.request_stop()
    thread.join(60)
    assert recorded.outcome == ("stopped", 128 + signal.SIGKILL, "stopped by user")
    sent = [c["argv"][2] for c in docker.calls("kill")]
    assert sent[0] == "SIGTERM" and "SIGKILL" in sent
    assert docker.running() == []


def test_an_interruption_kills_the_container_by_its_deadline(tmp_path: Path, docker: FakeDocker):
    runner, recorded = runner_for(tmp_path, IGNORES_TERM)
    thread = started(runner, tmp_path)
    assert runner.notice(interruption("spot reclaim", 2.0))
    thread.join(60)
    assert recorded.outcome is not None and recorded.outcome[0] == "interrupted"
    assert [c["argv"][2] for c in docker.calls("kill")][-1] == "SIGKILL"
    assert docker.running() == []


def test_a_failed_pull_fails_the_experiment_before_it_starts(tmp_path: Path, docker: FakeDocker):
    runner, recorded = runner_for(tmp_path, SHOWS_ENV)
    runner.spec = dataclasses.replace(runner.spec, image="missing/image:1")
    assert runner.run().status == "failed"
    assert recorded.outcome is not None
    status, exit_code, reason = recorded.outcome
    assert exit_code is None
    assert reason == (
        "could not prepare the experiment: cannot pull missing/image:1: Error response from"
        " daemon: manifest for missing/image:1 not found"
    )
    assert docker.calls("run") == []


def test_no_docker_fails_the_experiment_with_its_reason(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    runner, recorded = runner_for(tmp_path, SHOWS_ENV)
    assert runner.run().status == "failed"
    assert recorded.outcome == (
        "failed",
        None,
        "could not prepare the experiment: docker is not installed on this machine"
        " (--image needs it)",
    )
