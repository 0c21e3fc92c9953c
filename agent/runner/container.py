"""Running an experiment's script inside a Docker image (``--image``).

The runner starts, instead of the script, the docker CLI with the vector ``run_argv``
renders (never through a shell)::

    docker run --rm --init --sig-proxy=false --pull never --name NAME
        --network host --ipc host [--gpus "device=IDS"] [--cpus N [--cpuset-cpus IDS]]
        [--memory B --memory-swap B] --user UID:GID -v EXEC:EXEC -w EXEC
        [-v DATASTORE:MOUNT_DIR:ro] -v SCRATCH:SCRATCH -v NOTICES:NOTICES:ro
        -e NAME ... IMAGE ARGV ...

- Host networking: a gang's ranks reach each other at the node's address (MASTER_ADDR); the
  host's IPC namespace: PyTorch's DataLoader workers share tensors through /dev/shm, which
  a container otherwise caps at 64 MB.
- The exec dir is mounted at its own path and is the working directory, so the paths the
  agent and the script use agree, and ``--user`` makes the files the script writes there
  the agent's, which syncs and deletes them.
- ``-e NAME`` without a value: docker reads the value from its own environment, which the
  runner sets, so no value shows in a process listing.
- ``--gpus "device=2,3"`` (the quotes are part of the value: docker splits it as CSV)
  gives the container those GPUs only, numbered from 0 inside: its ``CUDA_VISIBLE_DEVICES``
  is therefore ``0,1``, not the host's ids.
- Signals: with ``--sig-proxy=false`` a signal to the CLI never reaches the container, and
  SIGKILL to the CLI would leave it running anyway; so the runner signals the container by
  name (``docker kill --signal``). Its init (``--init``: tini) passes a signal to the
  script's whole process group (``TINI_KILL_PROCESS_GROUP``), as the runner does for a
  script it starts itself; SIGKILL ends every process of the container.
- ``--pull never``: the image was pulled (``Images``) before, where a failure is told apart
  from the script's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from gridctl.agent.core.logs import note, stamp

CLIENT_VARIABLES = ("PATH", "HOME", "XDG_RUNTIME_DIR")
"""The docker CLI's own (with every ``DOCKER_*``): the agent's values configure the CLI,
and a script variable of the same name is not passed to the container, which has the
image's."""
INIT_VARIABLES = {"TINI_KILL_PROCESS_GROUP": "1"}
"""Tells the container's init to signal the script's whole process group."""
KILL_RETRY = 0.2
"""Seconds between tries to signal a container that the CLI has not created yet."""
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")


class ContainerError(RuntimeError):
    """The image cannot run here (no docker, a failed login or pull); the message says why
    in one line."""


@dataclass(frozen=True)
class Mount:
    """A bind mount: ``source`` on the machine at ``target`` in the container."""

    source: Path
    target: str
    read_only: bool = False

    def flag(self) -> str:
        for path in (str(self.source), self.target):
            if ":" in path:
                raise ContainerError(f"cannot mount {path} in a container: it contains ':'")
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclass(frozen=True)
class Container:
    """One attempt's container: what ``run_argv`` renders."""

    image: str
    name: str
    argv: tuple[str, ...]
    workdir: Path
    mounts: tuple[Mount, ...]
    variables: tuple[str, ...]
    """Names only: the values go through the CLI's environment."""
    user: tuple[int, int]
    gpu_ids: tuple[int, ...] = ()
    cpus: float | None = None
    """Set when the spec pins its CPUs; ``cpu_ids`` then are the scheduler's cores."""
    cpu_ids: tuple[int, ...] = ()
    memory: int = 0
    """Bytes; 0: no limit."""


def run_argv(container: Container, docker: str = "docker") -> list[str]:
    """The ``docker run`` vector for ``container`` (see the module's docstring)."""
    argv = [docker, "run", "--rm", "--init", "--sig-proxy=false", "--pull", "never"]
    argv += ["--name", container.name, "--network", "host", "--ipc", "host"]
    if container.gpu_ids:
        argv += ["--gpus", '"device=' + ",".join(map(str, container.gpu_ids)) + '"']
    if container.cpus is not None:
        argv += ["--cpus", f"{container.cpus:g}"]
        if container.cpu_ids:
            argv += ["--cpuset-cpus", ",".join(map(str, container.cpu_ids))]
    if container.memory:
        # The same total for swap: the script is held to its memory, not given swap on top.
        argv += ["--memory", f"{container.memory}b", "--memory-swap", f"{container.memory}b"]
    uid, gid = container.user
    argv += ["--user", f"{uid}:{gid}", "-w", str(container.workdir)]
    for mount in container.mounts:
        argv += ["-v", mount.flag()]
    for name in container.variables:
        argv += ["-e", name]
    return [*argv, container.image, *container.argv]


def container_name(own_name: str, attempt: int, exec_dir: Path) -> str:
    """The same for every look at one attempt (of one rank), and different for every
    GRIDCTL_HOME or node root: two local homes may run experiments of the same name."""
    where = hashlib.sha256(str(exec_dir).encode()).hexdigest()[:8]
    return _NAME_CHARS.sub("-", f"gridctl-{own_name}-{attempt}-{where}")


def is_client_variable(name: str) -> bool:
    return name in CLIENT_VARIABLES or name.startswith("DOCKER_")


def script_variables(env: Mapping[str, str], gpus: int) -> tuple[dict[str, str], list[str]]:
    """What the container's script sees of ``env`` (the spec's and gridctl's variables),
    and the names left out because the CLI owns them. GPUs count from 0 inside."""
    kept = {name: value for name, value in env.items() if not is_client_variable(name)}
    dropped = sorted(name for name in env if is_client_variable(name))
    kept["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
    kept.update(INIT_VARIABLES)
    return kept, dropped


def client_environment(config_dir: Path | None) -> dict[str, str]:
    """The docker CLI's own settings from the agent's environment; ``config_dir`` is where
    it keeps registry logins (None: the user's own, ``~/.docker``)."""
    env = {name: value for name, value in os.environ.items() if is_client_variable(name)}
    if config_dir is not None:
        env["DOCKER_CONFIG"] = str(config_dir)
    return env


def find_docker() -> str:
    found = shutil.which("docker")
    if found is None:
        raise ContainerError("docker is not installed on this machine (--image needs it)")
    return found


def kill(
    docker: str, name: str, sig: signal.Signals, env: Mapping[str, str], ended: threading.Event
) -> None:
    """``docker kill --signal SIG NAME``, tried again until it lands or the CLI has ended:
    right after the launch the container may not exist yet."""
    while True:
        result = subprocess.run(
            [docker, "kill", "--signal", sig.name, name],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if result.returncode == 0 or ended.wait(KILL_RETRY):
            return


class Login(Protocol):
    """Logs the docker CLI in to the registry of an image before its pull, if it needs it."""

    def __call__(self, docker: str, env: Mapping[str, str], image: str, log: BinaryIO) -> None: ...


class Images:
    """The images a machine has made ready: each is pulled once, before its first run,
    unless the machine has it already (like ``docker run``'s default), with the pull's
    progress and time in the experiment's log."""

    def __init__(self, *, config_dir: Path | None = None, login: Login | None = None) -> None:
        self.config_dir = config_dir
        self.login = login
        self._lock = threading.Lock()
        self._ready: set[str] = set()

    @property
    def environment(self) -> dict[str, str]:
        return client_environment(self.config_dir)

    def ready(self, image: str, log: BinaryIO) -> str:
        """The docker CLI to run ``image`` with; raises ContainerError when it cannot run."""
        docker = find_docker()
        with self._lock:
            if image in self._ready:
                return docker
            env = self.environment
            if _present(docker, image, env):
                note(log, f"image {image} is on this machine")
            else:
                if self.login is not None:
                    self.login(docker, env, image, log)
                _pull(docker, image, env, log)
            self._ready.add(image)
        return docker


def _present(docker: str, image: str, env: Mapping[str, str]) -> bool:
    inspect = [docker, "image", "inspect", "--format", "{{.Id}}", image]
    result = subprocess.run(
        inspect, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    return result.returncode == 0


def _pull(docker: str, image: str, env: Mapping[str, str], log: BinaryIO) -> None:
    note(log, f"docker pull {image}")
    log.flush()
    started = time.monotonic()
    last = _stream([docker, "pull", image], env, log)
    if last is not None:
        raise ContainerError(f"cannot pull {image}: {last}")
    note(log, f"pulled {image} in {time.monotonic() - started:.1f} s")


def _stream(argv: Sequence[str], env: Mapping[str, str], log: BinaryIO) -> str | None:
    """Run ``argv`` with its output in the log; None on success, else its last line."""
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    last = ""
    with proc.stdout:
        for line in proc.stdout:
            log.write(stamp() + line.rstrip(b"\n") + b"\n")
            log.flush()
            if line.strip():
                last = line.decode(errors="replace").strip()
    code = proc.wait()
    if code == 0:
        return None
    return last or f"exit code {code}"


def signaller(
    docker: str, name: str, env: Mapping[str, str], ended: threading.Event
) -> Callable[[signal.Signals], None]:
    """Signals the container, in the background: ``docker kill`` takes a round trip to
    the daemon, and the caller may be a timer or the thread that watches controls."""

    def send(sig: signal.Signals) -> None:
        threading.Thread(target=kill, args=(docker, name, sig, env, ended), daemon=True).start()

    return send
