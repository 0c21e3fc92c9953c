"""One experiment's lifecycle, the same locally and on a node.

fetch bundle -> prepare exec dir (on a resume, restore the previous attempt's files) ->
mount the datastore read-only and make the scratch dir -> run argv (own process group,
cwd = exec dir, pinned to its cores, held to its memory) -> stream logs -> sync artifacts
during the run and at the end -> let go of the datastore, remove the scratch dir -> record
the final status. The status is recorded only after the final sync, so an ended experiment
has all its files. A notice (spot, ``gridctl interrupt``, the instance going away)
SIGTERMs the script and SIGKILLs it when waiting longer would leave too little time for
the final sync, but never before half the notice's window has passed; the attempt then
ends ``interrupted``. A stop (``gridctl stop``, ``--max_runtime`` run out over the
attempts, a node's ``--max_cost`` reached) SIGTERMs it and SIGKILLs it after the grace
period; the attempt ends ``stopped`` with the stop's reason.

The script sees exactly the spec's environment (locally its submitter's) over the base the
backend passes (on a node, the node's), plus gridctl's own variables: nothing of whoever
started the agent. With an image (``--image``) it runs in a container instead
(``runner/container.py``), which sees the spec's and gridctl's variables only and is
signalled by name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from gridctl.agent.core import datastore
from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.gang import (
    LAUNCHER_VARIABLES,
    GangCancelled,
    GangTimeout,
    Place,
    node_name,
)
from gridctl.agent.core.guards import format_duration, runtime_reason
from gridctl.agent.core.limits import MemoryLimit, limit_memory, pin, thread_variables
from gridctl.agent.core.logs import note, pump
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import STOPPED_BY_USER, State
from gridctl.agent.core.store import Store
from gridctl.agent.core.units import format_bytes
from gridctl.agent.runner import container
from gridctl.agent.runner.archive import extract
from gridctl.agent.runner.artifacts import ArtifactSync
from gridctl.agent.runner.notice import INTERRUPTION, Notice
from gridctl.agent.runner.scratch import shortfall

RESTORE_WORKERS = 8
KILL_MARGIN = 5.0
"""Seconds a final sync is given when nothing is known about it (its estimate has its own
margin)."""
DEADLINE_TICK = 0.25
ESTIMATE_EVERY = 2.0
GRIDCTL_VARIABLES = (
    "GRIDCTL_RUN",
    "GRIDCTL_EXPERIMENT",
    "GRIDCTL_RESUME_COUNT",
    "GRIDCTL_SCRATCH_DIR",
    "GRIDCTL_NOTICE_FILE",
    "GRIDCTL_DATASTORE_DIR",
    "GRIDCTL_GIT_URL",
    "GRIDCTL_GIT_COMMIT",
    "GRIDCTL_GIT_DIRTY",
    "CUDA_VISIBLE_DEVICES",
)
"""Set by gridctl alone: a value of the same name in the submitter's environment (say a GPU
assignment of their shell) never reaches the script."""


class GangSide(Protocol):
    """A rank's tie to its gang (``runner.gang.GangMember``): which rank it is, and the
    barrier the runner passes once its bundle is ready."""

    @property
    def rank(self) -> int: ...

    def ready(self, log: BinaryIO, cancelled: Callable[[], bool]) -> Place:
        """The rank's place once every node is there; raises GangTimeout, or GangCancelled
        once ``cancelled()``."""
        ...


class Recorder(Protocol):
    """Where the runner reports progress: the local registry, or the bucket on a node."""

    def phase(self, reason: str) -> None:
        """What a starting experiment is doing (``building environment``)."""
        ...

    def running(self, pid: int, pid_started: float) -> None: ...

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None: ...


class BeforeLaunch(Protocol):
    """The backend's part once the bundle is unpacked: the script's Python environment (a
    gang's rank also joins its gang there). Returns what the script's environment gains;
    its ``PATH`` goes in front of the script's own. ``phase`` tells the experiment's record
    what it is doing. If it raises, the experiment fails with the message as its reason."""

    def __call__(
        self, exec_dir: Path, log: BinaryIO, phase: Callable[[str], None]
    ) -> Mapping[str, str]: ...


class PreparationError(Exception):
    """A ``BeforeLaunch`` failure whose message is the experiment's whole reason (a failed
    install), rather than one to prefix with ``could not prepare the experiment``."""


@dataclass(frozen=True)
class Workspace:
    exec_dir: Path
    scratch_dir: Path
    """The experiment's own scratch dir when the run asked for no scratch space."""
    log_path: Path
    bundle_cache: Path
    notice_file: Path
    """Where the script finds the latest notice (``GRIDCTL_NOTICE_FILE``), outside its
    exec dir so that it is no artifact."""
    mount_root: Path
    """Where the absolute paths a user asks for (datastore mount dir, scratch) live: ``/``
    locally, the node's root on a node."""
    datastore_cache: Path
    """Materialized datastore versions, read-only, one tree per version."""
    scratch_disk: bool = False
    """The scratch space is the disk the node formatted for the run: exactly the size it
    asked for, though ext4 keeps a little of it, and shared by the machine's experiments
    and the datastore cache, so its free space says nothing the size does not."""


@dataclass(frozen=True)
class RunnerSettings:
    grace_period: float = 10.0
    sync_interval: float = 60.0


@dataclass(frozen=True)
class Outcome:
    status: State
    exit_code: int | None
    reason: str | None


_bundle_lock = threading.Lock()


def fetch_bundle(store: Store, key: str, cache: Path) -> Path:
    """Each bundle is fetched once per machine, whatever number of experiments use it, and
    read where it lies when the store is on this machine."""
    stored = store.local_path(key)
    if stored is not None and stored.is_file():
        return stored
    target = cache / Path(key).name
    with _bundle_lock:
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + f".{os.getpid()}.part")
            store.get_file(key, partial)
            os.replace(partial, target)
    return target


INTERPRETERS = ("python", "bash")


def restore_artifacts(
    store: Store, prefix: str, exec_dir: Path, skip: Callable[[str], bool]
) -> int:
    """Put the previous attempts' files back over the freshly unpacked bundle; returns
    how many. Keys that would land outside the exec dir are refused; ``skip`` names the
    top folders that are not this exec dir's (a gang's other ranks' under rank 0's)."""
    root = exec_dir.resolve()
    pairs: list[tuple[str, Path]] = []
    for key in store.list(prefix):
        rel = PurePosixPath(key[len(prefix) :].lstrip("/"))
        if skip(rel.parts[0]):
            continue
        target = (exec_dir / rel).resolve()
        if ".." in rel.parts or rel.is_absolute() or not target.is_relative_to(root):
            raise ValueError(f"artifact {key!r} would land outside the exec dir")
        pairs.append((key, target))
    with ThreadPoolExecutor(RESTORE_WORKERS) as pool:
        for _ in pool.map(lambda pair: store.get_file(*pair), pairs):
            pass
    return len(pairs)


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
        cpu_ids: tuple[int, ...] = (),
        base_env: Mapping[str, str] | None = None,
        settings: RunnerSettings | None = None,
        before_launch: BeforeLaunch | None = None,
        resume_count: int = 0,
        gang: GangSide | None = None,
        images: container.Images | None = None,
        runtime_used: float = 0.0,
    ) -> None:
        """``cpu_ids`` are the scheduler's cores, used when the spec pins its CPUs;
        ``base_env`` lies under the spec's environment (none locally, where the spec holds
        the submitter's whole environment). ``before_launch`` runs once the bundle is
        unpacked (see BeforeLaunch). ``resume_count`` > 0 restores the previous attempts' artifacts
        before the start. ``gang`` makes this one rank of a multi-node experiment: its own
        artifacts, and a start only once every node is ready. ``images`` makes a spec's
        image ready (``--image``): the machine's, which pulls each image once.
        ``runtime_used`` is the seconds the earlier attempts ran, which the spec's
        ``max_runtime`` is less for this one."""
        self.spec = spec
        self.store = store
        self.workspace = workspace
        self.recorder = recorder
        self.gpu_ids = gpu_ids
        self.cpu_ids = cpu_ids
        self.base_env = dict(base_env or {})
        self.settings = settings or RunnerSettings()
        self.before_launch = before_launch
        self.resume_count = resume_count
        self.gang = gang
        self.runtime_used = runtime_used
        self.images = images or container.Images()
        self._docker: str | None = None
        """The docker CLI, once the spec's image is ready."""
        self._signal_container: Callable[[signal.Signals], None] | None = None
        self.exited_at: float | None = None
        """When the script ended: a gang's first failure is told by it."""
        self._place: Place | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason = STOPPED_BY_USER
        self._exited = threading.Event()
        self._interrupt: Notice | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sync: ArtifactSync | None = None
        self._datastore_dir: Path | None = None
        self._memory: MemoryLimit | None = None
        self._additions: dict[str, str] = {}
        # A new attempt starts with no notice: the last attempt's is not for it.
        workspace.notice_file.unlink(missing_ok=True)

    @property
    def rank(self) -> int:
        return self.gang.rank if self.gang is not None else 0

    @property
    def own_name(self) -> str:
        """This rank's name for what is its own on a machine its gang's ranks may share."""
        return node_name(self.spec.name, self.rank)

    @property
    def artifact_prefix(self) -> str:
        return ExperimentKeys(self.spec.run, self.spec.name).artifacts_of(self.rank)

    def request_stop(self, reason: str = STOPPED_BY_USER) -> None:
        """SIGTERM the script's process group now and SIGKILL it after the grace period;
        the experiment ends ``stopped`` with ``reason`` (the first stop's)."""
        with self._lock:
            if self._stop.is_set() or self._interrupt is not None:
                return
            self._stop_reason = reason
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal(proc.pid, signal.SIGTERM)
            timer = threading.Timer(
                self.settings.grace_period, self._signal, (proc.pid, signal.SIGKILL)
            )
            timer.daemon = True
            timer.start()

    def notice(self, notice: Notice) -> bool:
        """Tell the script (``GRIDCTL_NOTICE_FILE``); on an interruption also SIGTERM it and
        enforce the deadline. False when it came too late to matter: the script had
        already ended (a finished experiment stays finished) or was being stopped."""
        with self._lock:
            if self._exited.is_set() or self._stop.is_set() or self._interrupt is not None:
                return False
            if notice.kind == INTERRUPTION:
                self._interrupt = notice
            proc = self._proc
        self._write_notice(notice)
        if notice.kind == INTERRUPTION and proc is not None:
            self._signal(proc.pid, signal.SIGTERM)
            threading.Thread(
                target=self._enforce_deadline, args=(proc.pid, notice), daemon=True
            ).start()
        return True

    def _write_notice(self, notice: Notice) -> None:
        path = self.workspace.notice_file
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{threading.get_ident()}")
        partial.write_text(notice.to_json())
        os.replace(partial, path)
        self._log(notice.reason)

    def _enforce_deadline(self, pgid: int, notice: Notice) -> None:
        """SIGKILL once waiting longer would leave too little time for the final sync (its
        estimate, which scans the exec dir, is refreshed every few seconds), but never
        before the script has had half the notice's window to save."""
        assert notice.deadline is not None
        earliest = notice.seen_at + (notice.deadline - notice.seen_at) / 2
        needed, refresh_at, warned = KILL_MARGIN, 0.0, False
        while True:
            if time.monotonic() >= refresh_at and self._sync is not None:
                needed, refresh_at = self._sync.estimate(), time.monotonic() + ESTIMATE_EVERY
            if not warned and notice.deadline - needed < earliest:
                warned = True
                self._log(
                    f"the notice leaves {notice.deadline - notice.seen_at:.0f} s and the"
                    f" final sync needs about {needed:.0f} s: the script gets half the"
                    " notice to save, and the final sync may not finish in time"
                )
            if time.time() >= max(notice.deadline - needed, earliest):
                self._signal(pgid, signal.SIGKILL)
                return
            if self._exited.wait(DEADLINE_TICK):
                return

    def _signal(self, pgid: int, sig: signal.Signals) -> None:
        """The script's process group; a container by name, which its CLI never passes on."""
        if self._signal_container is not None:
            self._signal_container(sig)
        else:
            _signal_group(pgid, sig)

    def _log(self, message: str) -> None:
        """A line of gridctl's own in the experiment's log, from any thread."""
        self.workspace.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError), self.workspace.log_path.open("ab") as log:
            note(log, message)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The spec's environment over a base (the backend's unless given), with gridctl's
        variables."""
        env = {**(self.base_env if base is None else base), **self.spec.env}
        for name in GRIDCTL_VARIABLES + (LAUNCHER_VARIABLES if self.gang is not None else ()):
            env.pop(name, None)
        env.update(
            GRIDCTL_RUN=self.spec.run,
            GRIDCTL_EXPERIMENT=self.spec.name,
            GRIDCTL_RESUME_COUNT=str(self.resume_count),
            GRIDCTL_SCRATCH_DIR=str(self.scratch_dir),
            GRIDCTL_NOTICE_FILE=str(self.workspace.notice_file),
            PYTHONUNBUFFERED="1",
            # Empty when none were assigned: the script sees no GPU rather than all of them.
            CUDA_VISIBLE_DEVICES=",".join(str(g) for g in self.gpu_ids),
        )
        if self._datastore_dir is not None:
            env["GRIDCTL_DATASTORE_DIR"] = str(self._datastore_dir)
        if self.spec.source is not None:
            env.update(self.spec.source.environment())
        if self._place is not None:
            env.update(self._place.environment())
        if self.spec.pin_cpus:
            env.update(thread_variables(self.spec.cpus, self.spec.env))
        for name, value in self._additions.items():
            behind = env.get(name) if name == "PATH" else None
            env[name] = f"{value}{os.pathsep}{behind}" if behind else value
        return env

    @property
    def scratch_dir(self) -> Path:
        """The experiment's own folder of the scratch space it asked for, else of the
        workspace; either way removed when the attempt ends."""
        scratch = self.spec.scratch
        if scratch is None:
            return self.workspace.scratch_dir
        return self.workspace.mount_root / scratch.mount_path.lstrip("/") / self.own_name

    def run(self) -> Outcome:
        limit = self._limit_runtime()
        try:
            outcome = self._run()
        except Exception as exc:  # the status is recorded on every exit path
            outcome = Outcome(State.FAILED, None, f"agent error: {exc!r}")
        finally:
            if limit is not None:
                limit.cancel()
        with self._lock:
            self._exited.set()
        try:
            self._clean_up()
        except OSError as exc:
            self._log(f"cannot clean up after the experiment: {exc}")
        self.recorder.finished(outcome.status, outcome.exit_code, outcome.reason)
        return outcome

    def _limit_runtime(self) -> threading.Timer | None:
        """Stop the experiment once its attempts together have run ``max_runtime``: what
        the earlier ones left, from this attempt's start."""
        limit = self.spec.max_runtime
        if limit is None:
            return None
        left = limit - self.runtime_used
        if self.runtime_used:
            self._log(
                f"--max_runtime {format_duration(limit)}: {max(0.0, left):.1f} s left after"
                f" the earlier attempts' {self.runtime_used:.1f} s"
            )
        if left <= 0:
            self._runtime_over(limit)
            return None
        timer = threading.Timer(left, self._runtime_over, (limit,))
        timer.daemon = True
        timer.start()
        return timer

    def _runtime_over(self, limit: float) -> None:
        reason = runtime_reason(limit)
        self._log(f"{reason}: stopping it")
        self.request_stop(reason)

    def _clean_up(self) -> None:
        """Give back what only this attempt used: its memory cgroup (or watchdog), the
        datastore's seal, the scratch dir."""
        if self._memory is not None:
            self._memory.close()
        if self._datastore_dir is not None and self.spec.datastore is not None:
            datastore.release(
                self.workspace.datastore_cache, self.spec.datastore.name, self.own_name
            )
        shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def _prepare(self, log: BinaryIO) -> ArtifactSync:
        ws = self.workspace
        if self.spec.image is not None:  # first: a failed pull costs no download
            self._docker = self.images.ready(self.spec.image, log)
        archive = fetch_bundle(self.store, self.spec.bundle_key, ws.bundle_cache)
        if ws.exec_dir.exists():
            shutil.rmtree(ws.exec_dir)
        ws.exec_dir.mkdir(parents=True)
        self._prepare_scratch()
        extract(archive, ws.exec_dir)
        if self.resume_count:
            self._restore(log)
        if self.spec.datastore is not None:
            self._mount_datastore(log)
        if self.before_launch is not None:
            self._additions = dict(self.before_launch(ws.exec_dir, log, self.recorder.phase))
        # The baseline is taken after the restore: restored files are not sent again.
        self._sync = ArtifactSync(ws.exec_dir, self.store, self.artifact_prefix)
        return self._sync

    def _ending(self) -> bool:
        return self._stop.is_set() or self._interrupt is not None

    def _restore(self, log: BinaryIO) -> None:
        """The attempts before's files. A gang's rank R > 0 first gets rank 0's, then its own
        over them: Lightning, like most DDP code, checkpoints on rank 0 alone, and every rank
        must resume from the same step."""
        exec_dir = self.workspace.exec_dir
        if self.rank > 0:
            keys = ExperimentKeys(self.spec.run, self.spec.name)
            shared = restore_artifacts(self.store, keys.artifacts_of(0), exec_dir, _rank_folder)
            note(log, f"resume {self.resume_count}: restored {shared} file(s) of node 0")
        holds_others = self.gang is not None and self.rank == 0
        skip = _rank_folder if holds_others else _none
        own = restore_artifacts(self.store, self.artifact_prefix, exec_dir, skip)
        note(log, f"resume {self.resume_count}: restored {own} file(s)")

    def _prepare_scratch(self) -> None:
        path = self.scratch_dir
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the scratch dir {path}: {exc.strerror}") from None
        scratch = self.spec.scratch
        if scratch is None or self.workspace.scratch_disk:
            return
        if problem := shortfall(path, scratch.size_gb):
            raise OSError(problem)

    def _mount_datastore(self, log: BinaryIO) -> None:
        """The version, checked and sealed, at the mount dir the user asked for; the
        script's ``GRIDCTL_DATASTORE_DIR`` names the version's own tree, which nothing
        re-points while it runs."""
        ref = self.spec.datastore
        assert ref is not None
        manifest = datastore.resolve(self.store, ref.name, ref.version)
        cache = self.workspace.datastore_cache
        self._datastore_dir = datastore.hold(self.store, manifest, cache, self.own_name)
        mount = self.workspace.mount_root / ref.mount_dir.lstrip("/")
        datastore.mount(self._datastore_dir, mount)
        note(log, f"datastore {ref.name} version {ref.version} mounted at {mount}")

    def _run(self) -> Outcome:
        self.workspace.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.workspace.log_path.open("ab") as log:
            if self._stop.is_set():  # before anything is fetched: a guard left no time
                return Outcome(State.STOPPED, None, self._stop_reason)
            try:
                sync = self._prepare(log)
            except Exception as exc:  # any failure to prepare fails the experiment
                if self._interrupt is not None:  # e.g. pip killed as the instance goes
                    return Outcome(State.INTERRUPTED, None, self._interrupt.reason)
                if isinstance(exc, PreparationError):
                    note(log, str(exc))
                    return Outcome(State.FAILED, None, str(exc))
                return Outcome(State.FAILED, None, f"could not prepare the experiment: {exc}")
            if self.gang is not None:
                try:
                    self._place = self.gang.ready(log, self._ending)
                except GangCancelled:
                    pass  # the interruption or stop is told below
                except GangTimeout as exc:
                    note(log, f"the gang did not form: {exc}")
                    return Outcome(State.FAILED, None, str(exc))
            try:
                with self._lock:
                    if self._interrupt is not None:
                        return Outcome(State.INTERRUPTED, None, self._interrupt.reason)
                    if self._stop.is_set():
                        return Outcome(State.STOPPED, None, self._stop_reason)
                    self._proc = self._launch(log)
            except OSError as exc:
                note(log, f"cannot start {self.spec.argv[0]}: {exc}")
                return Outcome(State.FAILED, None, f"cannot start: {exc.strerror or exc}")
            code = self._supervise(self._proc, log, sync)
        over = self._memory.exceeded() if self._memory is not None else None
        sync.sync()
        exit_code, why = describe_exit(code)
        if over is not None:
            return Outcome(State.FAILED, exit_code, over)
        if self._interrupt is not None:
            # Whatever the script did after the notice, this attempt did not complete.
            return Outcome(State.INTERRUPTED, exit_code, self._interrupt.reason)
        if self._stop.is_set():
            return Outcome(State.STOPPED, exit_code, self._stop_reason)
        if code == 0:
            return Outcome(State.SUCCEEDED, 0, None)
        return Outcome(State.FAILED, exit_code, why)

    def _launch(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        env = self.environment()
        argv = self._place.argv(self.spec.argv) if self._place is not None else self.spec.argv
        if self._docker is not None:
            return self._launch_container(argv, log)
        argv0 = argv[0]
        executable = resolve_interpreter(argv0, env.get("PATH"))
        if executable is None:
            if argv0 in INTERPRETERS:
                raise FileNotFoundError(errno.ENOENT, f"{argv0} is not on PATH", argv0)
            executable = str(self.workspace.exec_dir / argv0)
        proc = subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=self.workspace.exec_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.spec.memory:
            self._memory = limit_memory(proc.pid, self.spec.memory, self.spec.name)
            note(log, f"--memory {format_bytes(self.spec.memory)} enforced {self._memory.kind}")
        if self.spec.pin_cpus and (cores := pin(proc.pid, self.cpu_ids)):
            note(log, f"--cpus {self.spec.cpus:g}: cores {','.join(map(str, cores))}")
        self.recorder.running(proc.pid, _process_start(proc.pid))
        return proc

    def _launch_container(self, argv: Sequence[str], log: BinaryIO) -> subprocess.Popen[bytes]:
        """The docker CLI, attached to the container that runs ``argv`` (a script executed
        itself by its path in the exec dir, which is mounted at the same path)."""
        assert self._docker is not None and self.spec.image is not None
        ws = self.workspace
        variables, dropped = container.script_variables(self.environment({}), len(self.gpu_ids))
        if dropped:
            note(log, f"not passed to the container (docker's own): {', '.join(dropped)}")
        mounts = [container.Mount(ws.exec_dir, str(ws.exec_dir))]
        if self._datastore_dir is not None and self.spec.datastore is not None:
            target = self.spec.datastore.mount_dir
            mounts.append(container.Mount(self._datastore_dir, target, read_only=True))
            variables["GRIDCTL_DATASTORE_DIR"] = target
        mounts.append(container.Mount(self.scratch_dir, str(self.scratch_dir)))
        notices = ws.notice_file.parent
        notices.mkdir(parents=True, exist_ok=True)
        mounts.append(container.Mount(notices, str(notices), read_only=True))
        if argv[0] not in INTERPRETERS:
            argv = (str(ws.exec_dir / argv[0]), *argv[1:])
        run = container.Container(
            image=self.spec.image,
            name=container.container_name(self.own_name, self.resume_count, ws.exec_dir),
            argv=tuple(argv),
            workdir=ws.exec_dir,
            mounts=tuple(mounts),
            variables=tuple(variables),
            user=(os.getuid(), os.getgid()),
            gpu_ids=self.gpu_ids,
            cpus=self.spec.cpus if self.spec.pin_cpus else None,
            cpu_ids=self.cpu_ids if self.spec.pin_cpus else (),
            memory=self.spec.memory,
        )
        env = {**variables, **self.images.environment}
        note(log, f"container {run.name} from {run.image}")
        proc = subprocess.Popen(
            container.run_argv(run, self._docker),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = self.images.environment
        self._signal_container = container.signaller(self._docker, run.name, client, self._exited)
        self.recorder.running(proc.pid, _process_start(proc.pid))
        return proc

    def _supervise(self, proc: subprocess.Popen[bytes], log: BinaryIO, sync: ArtifactSync) -> int:
        assert proc.stdout is not None
        reader = threading.Thread(target=pump, args=(proc.stdout, log), daemon=True)
        reader.start()
        exited = threading.Event()
        interval = self.spec.sync_interval or self.settings.sync_interval

        def sync_periodically() -> None:
            while not exited.wait(interval):
                try:
                    sync.sync()
                except Exception as exc:  # the next round, or the final one, retries
                    note(log, f"artifact sync failed: {exc}")

        syncer = threading.Thread(target=sync_periodically, daemon=True)
        syncer.start()
        # A blocking wait: Popen.wait(timeout) polls and would add up to 50 ms per experiment.
        code = proc.wait()
        self.exited_at = time.time()
        with self._lock:
            self._exited.set()  # a notice from now on is too late to change the outcome
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


def _rank_folder(top: str) -> bool:
    """``node-R``: where a gang's rank R keeps its files inside rank 0's artifacts."""
    number = top.removeprefix("node-")
    return number != top and number.isdigit()


def _none(_top: str) -> bool:
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _process_start(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0
