"""One experiment's lifecycle, the same locally and on a node.

fetch bundle -> prepare exec dir -> run argv (own process group, cwd = exec dir) -> stream
logs -> sync artifacts during the run and at the end -> record the final status. The
status is recorded only after the final sync, so an ended experiment has all its files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from gridctl.agent.archive import extract
from gridctl.agent.artifacts import ArtifactSync
from gridctl.agent.logs import pump, stamp
from gridctl.agent.spec import ExperimentSpec
from gridctl.agent.store import Store


class Recorder(Protocol):
    """Where the runner reports progress: the local registry, or the bucket on a node."""

    def running(self, pid: int, pid_started: float) -> None: ...

    def finished(self, status: str, exit_code: int | None, reason: str | None) -> None: ...


@dataclass(frozen=True)
class Workspace:
    exec_dir: Path
    scratch_dir: Path
    log_path: Path
    bundle_cache: Path


@dataclass(frozen=True)
class RunnerSettings:
    grace_period: float = 10.0
    sync_interval: float = 60.0


@dataclass(frozen=True)
class Outcome:
    status: str
    exit_code: int | None
    reason: str | None


_bundle_lock = threading.Lock()


def fetch_bundle(store: Store, key: str, cache: Path) -> Path:
    """Each bundle is fetched once per machine, whatever number of experiments use it."""
    target = cache / Path(key).name
    with _bundle_lock:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + f".{os.getpid()}.part")
            store.get_file(key, partial)
            os.replace(partial, target)
    return target


INTERPRETERS = ("python", "bash")


def resolve_interpreter(argv0: str, path: str | None) -> str | None:
    """What ``python``/``bash`` mean on this PATH (``python3`` standing in for ``python``);
    None for a script that is executed itself."""
    if argv0 not in INTERPRETERS:
        return None
    found = shutil.which(argv0, path=path)
    if found is None and argv0 == "python":
        found = shutil.which("python3", path=path)
    return found


def describe_exit(code: int) -> tuple[int, str]:
    """Popen's negative codes become the shell's 128+N, with the signal named."""
    if code < 0:
        name = signal.Signals(-code).name
        return 128 - code, f"killed by {name}"
    return code, f"exit code {code}"


class ExperimentRunner:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: Store,
        workspace: Workspace,
        recorder: Recorder,
        *,
        gpu_ids: tuple[int, ...] = (),
        settings: RunnerSettings | None = None,
        before_launch: Callable[[Path, BinaryIO], None] | None = None,
    ) -> None:
        """``before_launch(exec_dir, log)`` runs once the bundle is unpacked (a node installs
        the bundle's requirements there); if it raises, the experiment fails."""
        self.spec = spec
        self.store = store
        self.workspace = workspace
        self.recorder = recorder
        self.gpu_ids = gpu_ids
        self.settings = settings or RunnerSettings()
        self.before_launch = before_launch
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def artifact_prefix(self) -> str:
        return f"runs/{self.spec.run}/{self.spec.name}/artifacts"

    def request_stop(self) -> None:
        """SIGTERM the script's process group now and SIGKILL it after the grace period."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            timer = threading.Timer(
                self.settings.grace_period, _signal_group, (proc.pid, signal.SIGKILL)
            )
            timer.daemon = True
            timer.start()

    def environment(self) -> dict[str, str]:
        """The agent's own environment under the spec's (a full copy locally, a few on AWS)."""
        env = {**os.environ, **self.spec.env}
        env.update(
            GRIDCTL_RUN=self.spec.run,
            GRIDCTL_EXPERIMENT=self.spec.name,
            GRIDCTL_RESUME_COUNT="0",
            GRIDCTL_SCRATCH_DIR=str(self.workspace.scratch_dir),
            PYTHONUNBUFFERED="1",
        )
        if self.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in self.gpu_ids)
        return env

    def run(self) -> Outcome:
        try:
            outcome = self._run()
        except Exception as exc:  # noqa: BLE001 - the status is recorded on every exit path
            outcome = Outcome("failed", None, f"agent error: {exc!r}")
        self.recorder.finished(outcome.status, outcome.exit_code, outcome.reason)
        return outcome

    def _prepare(self, log: BinaryIO) -> ArtifactSync:
        ws = self.workspace
        archive = fetch_bundle(self.store, self.spec.bundle_key, ws.bundle_cache)
        if ws.exec_dir.exists():
            shutil.rmtree(ws.exec_dir)
        ws.exec_dir.mkdir(parents=True)
        ws.scratch_dir.mkdir(parents=True, exist_ok=True)
        extract(archive, ws.exec_dir)
        if self.before_launch is not None:
            self.before_launch(ws.exec_dir, log)
        return ArtifactSync(ws.exec_dir, self.store, self.artifact_prefix)

    def _run(self) -> Outcome:
        self.workspace.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.workspace.log_path.open("ab") as log:
            try:
                sync = self._prepare(log)
            except Exception as exc:  # noqa: BLE001 - any failure to prepare fails the experiment
                return Outcome("failed", None, f"could not prepare the experiment: {exc}")
            try:
                with self._lock:
                    if self._stop.is_set():
                        return Outcome("stopped", None, "stopped by user")
                    self._proc = self._launch(log)
            except OSError as exc:
                log.write(stamp() + f"gridctl: cannot start {self.spec.argv[0]}: {exc}\n".encode())
                return Outcome("failed", None, f"cannot start: {exc.strerror or exc}")
            code = self._supervise(self._proc, log, sync)
        sync.sync()
        exit_code, why = describe_exit(code)
        if self._stop.is_set():
            return Outcome("stopped", exit_code, "stopped by user")
        if code == 0:
            return Outcome("succeeded", 0, None)
        return Outcome("failed", exit_code, why)

    def _launch(self, log) -> subprocess.Popen[bytes]:
        env = self.environment()
        argv0 = self.spec.argv[0]
        executable = resolve_interpreter(argv0, env.get("PATH"))
        if executable is None:
            if argv0 in INTERPRETERS:
                raise FileNotFoundError(errno.ENOENT, f"{argv0} is not on PATH", argv0)
            executable = str(self.workspace.exec_dir / argv0)
        proc = subprocess.Popen(
            list(self.spec.argv),
            executable=executable,
            cwd=self.workspace.exec_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.recorder.running(proc.pid, _process_start(proc.pid))
        return proc

    def _supervise(self, proc: subprocess.Popen[bytes], log, sync: ArtifactSync) -> int:
        assert proc.stdout is not None
        reader = threading.Thread(target=pump, args=(proc.stdout, log), daemon=True)
        reader.start()
        exited = threading.Event()

        def sync_periodically() -> None:
            while not exited.wait(self.settings.sync_interval):
                sync.sync()

        syncer = threading.Thread(target=sync_periodically, daemon=True)
        syncer.start()
        # A blocking wait: Popen.wait(timeout) polls and would add up to 50 ms per experiment.
        code = proc.wait()
        exited.set()
        syncer.join()
        # Whatever the script left behind in its group ends with it.
        _signal_group(proc.pid, signal.SIGTERM)
        reader.join(timeout=self.settings.grace_period)
        if reader.is_alive():
            _signal_group(proc.pid, signal.SIGKILL)
            reader.join()
        proc.stdout.close()
        return code


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _process_start(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0
