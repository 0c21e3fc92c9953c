"""``python -m gridctl.agent node``: run the experiments this EC2 instance exists for.

The instance learns its machine from its tags (IMDSv2) and reads the machine's spec from
the bucket: one experiment, or several that share the instance's GPUs. Each runs with the
same ExperimentRunner as the local backend, given its GPUs by the same scheduler, and
reports only through ``status.json`` next to its spec, from which the CLI derives
everything. Once every experiment has ended the agent scales its Auto Scaling group to
zero, so no instance keeps running after its scripts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from gridctl.agent import state
from gridctl.agent.contract import (
    BUCKET_TAG,
    EXPERIMENT_TAG,
    GROUP_TAG,
    RUN_TAG,
    ExperimentKeys,
    InterruptRequest,
    StatusRecord,
    machine_key,
)
from gridctl.agent.imds import Identity, IMDSClient, IMDSError
from gridctl.agent.logs import note, stamp
from gridctl.agent.resources import Capacity
from gridctl.agent.runner import KILL_MARGIN, ExperimentRunner, RunnerSettings, Workspace
from gridctl.agent.s3store import S3Store, boto_config
from gridctl.agent.scheduler import Allocation, Request, request_for, schedule
from gridctl.agent.scratch import Disks, mount_instance_store, mount_volume
from gridctl.agent.spec import ExperimentSpec, MachineSpec, Scratch
from gridctl.agent.spot import (
    INTERRUPTION,
    REQUESTED_REASON,
    WINDOW,
    Notice,
    SpotWatcher,
    interruption,
)
from gridctl.agent.state import ACTIVE_STATES, LOST_REASON, State

_TICK = 0.2
TERMINATED_REASON = "instance terminated"
STALE_BEATS = 3
"""Heartbeats a node may miss before a replacement takes its experiment over."""
NEEDED_TAGS = (BUCKET_TAG, RUN_TAG, EXPERIMENT_TAG)


class NodeError(RuntimeError):
    """This node cannot start its experiment; the message says why."""


@dataclass(frozen=True)
class NodeSettings:
    root: Path
    runner: RunnerSettings
    # Each look at the bucket is a billed request; these defaults cost at most 840 requests
    # per experiment-hour (README, "Before your first real run"). Spot notices come from
    # the metadata service, which is free, and keep their one-second interval.
    heartbeat_interval: float = 30.0
    """Seconds between status writes that tell the CLI the agent lives (one PUT each)."""
    log_interval: float = 10.0
    """Seconds between log uploads while the log grows (one PUT each)."""
    control_interval: float = 10.0
    """Seconds between looks for ``gridctl stop``/``interrupt`` requests (one LIST each)."""
    spot_interval: float = 1.0
    endpoint_url: str | None = None
    tags_timeout: float = 180.0
    """Seconds to wait for the instance's tags to show in IMDS, which lags behind a boot."""

    @classmethod
    def from_env(cls, runner: RunnerSettings) -> NodeSettings:
        env = os.environ
        return cls(
            root=Path(env.get("GRIDCTL_NODE_ROOT") or "/"),
            runner=runner,
            heartbeat_interval=float(env.get("GRIDCTL_HEARTBEAT_INTERVAL", cls.heartbeat_interval)),
            log_interval=float(env.get("GRIDCTL_LOG_INTERVAL", cls.log_interval)),
            control_interval=float(env.get("GRIDCTL_CONTROL_INTERVAL", cls.control_interval)),
            spot_interval=float(env.get("GRIDCTL_SPOT_INTERVAL", cls.spot_interval)),
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            tags_timeout=float(env.get("GRIDCTL_TAGS_TIMEOUT", cls.tags_timeout)),
        )

    def workspace(self, experiment: str, disks: Disks | None = None) -> Workspace:
        """Every path under the node root, so several simulated nodes share a machine."""
        opt = self.root / "opt" / "gridctl"
        disks = disks or Disks()
        return Workspace(
            exec_dir=opt / "work" / experiment,
            scratch_dir=self.root / "scratch" / experiment,
            log_path=opt / "logs" / f"{experiment}.log",
            bundle_cache=opt / "cache",
            notice_file=opt / "notices" / f"{experiment}.json",
            mount_root=self.root,
            datastore_cache=disks.datastore_cache(opt / "datastores"),
            scratch_disk=disks.scratch_disk is not None,
        )

    @property
    def instance_store(self) -> Path:
        """Where the instance store is mounted when the instance has one."""
        return self.root / "opt" / "gridctl" / "instance-store"


class LogShipper:
    """Uploads the whole log file every few seconds while it changes, and once at the end."""

    def __init__(self, store: S3Store, key: str, path: Path, interval: float) -> None:
        self.store = store
        self.key = key
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._shipped: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def ship(self) -> None:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return
            if (st.st_size, st.st_mtime_ns) != self._shipped:
                self.store.put_file(self.key, self.path)
                self._shipped = (st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        """Stop the periodic uploads and upload what is left."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
        self.ship()

    def _loop(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self.ship()
            except Exception as exc:  # the next round tries again
                say(f"cannot upload the log: {exc}")


class BucketRecorder:
    """The runner's Recorder on a node: each change rewrites status.json, one at a time."""

    def __init__(
        self, store: S3Store, keys: ExperimentKeys, record: StatusRecord, log: LogShipper
    ) -> None:
        self.store = store
        self.keys = keys
        self.record = record
        self.log = log
        self._lock = threading.Lock()
        self._ended = False

    def starting(self) -> None:
        with self._lock:
            self._write()

    def running(self, pid: int, pid_started: float) -> None:
        with self._lock:
            now = time.time()
            record = state.running(self.record)
            # A resumed experiment started with its first attempt.
            started = record.started_at if record.resumes else now
            self.record = replace(record, heartbeat_at=now, started_at=started)
            self._write()

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None:
        """The log goes up before the status: an ended experiment has all its files."""
        try:
            self.log.close()
        except Exception as exc:  # a lost log must not leave the status open
            say(f"cannot upload the final log: {exc}")
        with self._lock:
            self._ended = True
            now = time.time()
            self.record = state.finish(self.record, status, exit_code, reason, now).beat(now)
            self._write()

    def heartbeat(self) -> None:
        with self._lock:
            if not self._ended:
                self.record = self.record.beat(time.time())
                self._write()

    def _write(self) -> None:
        self.store.put_bytes(self.keys.status, self.record.to_json())


def install_requirements(exec_dir: Path, log: BinaryIO) -> None:
    """The bundle's requirements.txt, for the interpreter the agent runs (and puts first
    on the script's PATH), with pip's output in the experiment's log."""
    if not (exec_dir / "requirements.txt").is_file():
        return
    command = [sys.executable, "-m", "pip", "install", "-r", "requirements.txt"]
    note(log, "pip install -r requirements.txt")
    log.flush()
    proc = subprocess.Popen(
        command,
        cwd=exec_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    error = None
    with proc.stdout:
        for line in proc.stdout:
            log.write(stamp() + line.rstrip(b"\n") + b"\n")
            log.flush()
            if line.startswith(b"ERROR:"):
                error = line.decode(errors="replace").strip()
    code = proc.wait()
    if code != 0:
        detail = f": {error}" if error else ""
        raise NodeError(f"pip install -r requirements.txt failed (exit code {code}){detail}")


def _resumable(record: StatusRecord, spec: ExperimentSpec) -> bool:
    """Whether a replacement has anything to do: the experiment had not ended, or it was
    interrupted and resumes."""
    if record.status == State.INTERRUPTED:
        return spec.auto_resume
    return record.status in ACTIVE_STATES


def _beat(record: StatusRecord) -> float:
    return record.heartbeat_at or 0.0


def read_status(store: S3Store, keys: ExperimentKeys) -> bytes | None:
    try:
        return store.get_bytes(keys.status)
    except FileNotFoundError:
        return None


def read_spec(store: S3Store, keys: ExperimentKeys) -> ExperimentSpec:
    try:
        spec = ExperimentSpec.from_json(store.get_bytes(keys.spec).decode())
    except FileNotFoundError:
        raise NodeError(f"no experiment spec at s3://{store.bucket}/{keys.spec}") from None
    if (spec.run, spec.name) != (keys.run, keys.experiment):
        raise NodeError(f"s3://{store.bucket}/{keys.spec} is for {spec.run}/{spec.name}")
    return spec


class Broadcast:
    """The machine's notices: every experiment on it hears each one, also those that start
    after it came; the first interruption is the one that counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runners: list[ExperimentRunner] = []
        self._seen: list[Notice] = []
        self.interruption: Notice | None = None
        self.requested = False
        """Whether the interruption came from ``gridctl interrupt`` (the node then ends its
        own instance, as AWS would)."""

    def join(self, runner: ExperimentRunner) -> None:
        with self._lock:
            self._runners.append(runner)
            seen = list(self._seen)
        for notice in seen:
            runner.notice(notice)

    def deliver(self, notice: Notice, *, requested: bool = False) -> None:
        with self._lock:
            if notice.kind == INTERRUPTION:
                if self.interruption is not None:
                    return
                self.interruption, self.requested = notice, requested
            self._seen.append(notice)
            runners = list(self._runners)
        say(notice.reason)
        for runner in runners:
            runner.notice(notice)


def read_interrupt(store: S3Store, keys: ExperimentKeys) -> Notice | None:
    """``control/interrupt``, written by ``gridctl interrupt``."""
    try:
        request = InterruptRequest.decode(store.get_bytes(keys.interrupt))
    except FileNotFoundError:
        return None
    return interruption(REQUESTED_REASON, request.window or WINDOW)


def watch_controls(
    runner: ExperimentRunner,
    keys: ExperimentKeys,
    broadcast: Broadcast,
    interval: float,
    done: threading.Event,
) -> None:
    """Turn a stop object in the bucket into a stop request, and an interrupt object into
    an interruption of the whole machine (as a reclaim would be)."""
    store = runner.store
    assert isinstance(store, S3Store)
    while not done.wait(interval):
        try:
            requests = set(store.list(keys.control))  # one request per look, not one per kind
            if keys.stop in requests:
                runner.request_stop()
            notice = read_interrupt(store, keys) if keys.interrupt in requests else None
            if notice is not None:
                broadcast.deliver(notice, requested=True)
        except Exception as exc:  # the next look tries again
            say(f"cannot look for control requests: {exc}")


def heartbeat(recorder: BucketRecorder, interval: float, done: threading.Event) -> None:
    """``heartbeat_at`` moves while the agent lives, so the CLI can tell a lost node."""
    while not done.wait(interval):
        try:
            recorder.heartbeat()
        except Exception as exc:  # the next beat tries again
            say(f"cannot write the heartbeat: {exc}")


def say(message: str) -> None:
    sys.stderr.write(f"{stamp().decode()}gridctl agent: {message}\n")
    sys.stderr.flush()


@dataclass
class Job:
    """One experiment of this machine, recorded ``starting`` and waiting for its GPUs."""

    spec: ExperimentSpec
    recorder: BucketRecorder

    @property
    def request(self) -> Request:
        return request_for(self.spec)


class Requirements:
    """``before_launch`` for every experiment of the node: the bundle's requirements.txt is
    installed once, by whichever experiment unpacks it first; the others wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[str, NodeError | None] = {}

    def __call__(self, exec_dir: Path, log: BinaryIO) -> None:
        path = exec_dir / "requirements.txt"
        if not path.is_file():
            return
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with self._lock:
            if digest in self._outcomes:
                note(log, "requirements.txt already installed on this node")
            else:
                try:
                    install_requirements(exec_dir, log)
                    self._outcomes[digest] = None
                except NodeError as exc:
                    self._outcomes[digest] = exc
            error = self._outcomes[digest]
        if error is not None:
            raise error


@dataclass(frozen=True)
class Node:
    """This instance: who it is (from IMDS) and how the agent is set up on it."""

    identity: Identity
    tags: dict[str, str]
    settings: NodeSettings
    requirements: Requirements = field(default_factory=Requirements)
    broadcast: Broadcast = field(default_factory=Broadcast)
    disks: Disks = field(default_factory=Disks)

    def serve(self) -> int:
        """Run the machine's experiments, then hand the instance back: 0 once every one has
        ended (or been interrupted) and been recorded, whatever its outcome."""
        try:
            store, machine = self.locate()
        except Exception as exc:  # without its work the node has no purpose
            say(f"cannot find this node's work: {exc}")
            self.scale_to_zero()
            return 1
        jobs: list[Job] = []
        clean = True
        for name in machine.experiments:
            prepared = self.prepare(store, ExperimentKeys(machine.run, name))
            if isinstance(prepared, Job):
                jobs.append(prepared)
            else:
                clean = clean and prepared
        scratch = next((job.spec.scratch for job in jobs if job.spec.scratch), None)
        if scratch is not None:
            self.mount_scratch(scratch)
        if any(job.spec.datastore for job in jobs):
            self.mount_instance_store()
        outcomes = self.run_all(jobs, machine)
        if None in outcomes:
            self.scale_to_zero()
            return 1
        if State.INTERRUPTED in outcomes and any(job.spec.auto_resume for job in jobs):
            # The group keeps its capacity, so a replacement resumes the experiments; after
            # `gridctl interrupt` this node ends its own instance, as a reclaim would.
            return 0 if not self.broadcast.requested or self.terminate_self() else 1
        return 0 if self.scale_to_zero() and clean else 1

    def mount_scratch(self, scratch: Scratch) -> None:
        """The launch template's scratch disk, once for all the machine's experiments."""
        path = self.settings.root / scratch.mount_path.lstrip("/")
        self.disks.scratch = path
        try:
            device = mount_volume(path, scratch.size_gb)
        except (OSError, subprocess.CalledProcessError) as exc:
            say(f"cannot mount the scratch disk at {path}: {exc}")
            return
        if device is None:
            say(f"no {scratch.size_gb} GiB scratch disk on this machine: {path} is a directory")
        else:
            self.disks.scratch_disk = device
            say(f"scratch disk {device} mounted at {path}")

    def mount_instance_store(self) -> None:
        """The instance's NVMe instance store, where it has one, for the datastore cache."""
        path = self.settings.instance_store
        try:
            device = mount_instance_store(path)
        except (OSError, subprocess.CalledProcessError) as exc:
            say(f"cannot mount the instance store at {path}: {exc}")
            return
        if device is not None:
            self.disks.instance_store = path
            say(f"instance store {device} mounted at {path}")

    def locate(self) -> tuple[S3Store, MachineSpec]:
        missing = [t for t in NEEDED_TAGS if not self.tags.get(t)]
        if missing:
            raise NodeError(
                f"instance {self.identity.instance_id} lacks the tags {', '.join(missing)} "
                "in its metadata (are instance metadata tags enabled?)"
            )
        store = S3Store(self.tags[BUCKET_TAG], self.identity.region, self.settings.endpoint_url)
        key = machine_key(self.tags[RUN_TAG], self.tags[EXPERIMENT_TAG])
        try:
            return store, MachineSpec.from_json(store.get_bytes(key).decode())
        except FileNotFoundError:
            raise NodeError(f"no machine spec at s3://{store.bucket}/{key}") from None

    def prepare(self, store: S3Store, keys: ExperimentKeys) -> Job | bool:
        """The experiment recorded ``starting`` (a first attempt or a resume); or, when
        there is nothing to run, whether that was settled cleanly (a failure to start is
        recorded in its status.json)."""
        record = StatusRecord.first(self.identity.instance_id, time.time())
        try:
            spec = read_spec(store, keys)
            previous = read_status(store, keys)
            if previous is not None:
                resumed = self.take_over(store, keys, spec, previous)
                if resumed is None:
                    return True
                record = resumed
            log_path = self.settings.workspace(keys.experiment).log_path
            if record.resumes:
                # The log is shipped whole: carry on from the earlier attempts' log.
                with contextlib.suppress(FileNotFoundError):
                    store.get_file(keys.log, log_path)
            log = LogShipper(store, keys.log, log_path, self.settings.log_interval)
            recorder = BucketRecorder(store, keys, record, log)
            recorder.starting()
            return Job(spec, recorder)
        except Exception as exc:  # every failure to start is reported
            say(f"cannot start {keys.experiment}: {exc}")
            why = f"the node could not start it: {exc}"
            now = time.time()
            record = state.finish(record, State.FAILED, None, why, now).beat(now)
            try:
                store.put_bytes(keys.status, record.to_json())
            except Exception as error:  # the bucket itself may be the cause
                say(f"cannot record the failure: {error}")
            return False

    def take_over(
        self, store: S3Store, keys: ExperimentKeys, spec: ExperimentSpec, previous: bytes
    ) -> StatusRecord | None:
        """This instance replaces one that ran the experiment: the record of the next
        attempt when it resumes (``--auto_resume``), None when it has ended."""
        record = StatusRecord.from_json(previous)
        if not _resumable(record, spec):
            say(f"{keys.experiment} has ended ({record.status}): nothing to run")
            return None
        stale_after = STALE_BEATS * self.settings.heartbeat_interval
        # A replacement can boot before the node it replaces has finished its final sync.
        while record.status in ACTIVE_STATES and time.time() - _beat(record) < stale_after:
            time.sleep(min(self.settings.heartbeat_interval, 1.0))
            record = StatusRecord.from_json(store.get_bytes(keys.status))
        now = time.time()
        if record.status in ACTIVE_STATES:
            say(f"{keys.experiment} was left {record.status} by {record.instance}")
            if not spec.auto_resume:
                record = state.finish(record, State.FAILED, None, LOST_REASON, now).beat(now)
                store.put_bytes(keys.status, record.to_json())
                return None
            record = state.finish(record, State.INTERRUPTED, None, LOST_REASON, _beat(record))
        elif not _resumable(record, spec):
            say(f"{keys.experiment} has ended ({record.status}): nothing to run")
            return None
        store.delete_prefix(keys.interrupt)  # served by the attempt it interrupted
        instance = self.identity.instance_id
        record = replace(state.resume(record, instance, now), instance=instance).beat(now)
        say(f"{keys.experiment}: resume {record.resumes}")
        return record

    def run_all(self, jobs: list[Job], machine: MachineSpec) -> list[str | None]:
        """Each job once the scheduler gives it room (the CLI packed them to fit at once);
        the recorded outcome of each, None where it could not be recorded."""
        capacity = Capacity(machine.cpus, machine.gpus, machine.memory)
        queued = {job.spec.name: job for job in jobs}
        running: dict[str, Allocation] = {}
        ended: queue.Queue[tuple[str, str | None]] = queue.Queue()
        outcomes: list[str | None] = []
        for job in jobs:
            if not schedule([job.request], [], capacity):
                queued.pop(job.spec.name)
                reason = f"it does not fit this machine ({capacity})"
                job.recorder.finished(State.FAILED, None, reason)
                outcomes.append(State.FAILED)
        while queued or running:
            notice = self.broadcast.interruption
            if notice is not None:
                for job in queued.values():
                    job.recorder.finished(State.INTERRUPTED, None, notice.reason)
                    outcomes.append(State.INTERRUPTED)
                queued.clear()
            requests = [job.request for job in queued.values()]
            for allocation in schedule(requests, list(running.values()), capacity):
                running[allocation.name] = allocation
                job = queued.pop(allocation.name)
                work = threading.Thread(
                    target=self._work,
                    args=(job, allocation, ended),
                    name=job.spec.name,
                    daemon=True,
                )
                work.start()
            if running:
                with contextlib.suppress(queue.Empty):
                    name, outcome = ended.get(timeout=_TICK)
                    running.pop(name)
                    outcomes.append(outcome)
        return outcomes

    def _work(
        self, job: Job, allocation: Allocation, ended: queue.Queue[tuple[str, str | None]]
    ) -> None:
        """A job's thread: whatever happens, ``run_all`` hears that it ended."""
        outcome = None
        try:
            outcome = self.run_one(job, allocation)
        finally:
            ended.put((job.spec.name, outcome))

    def run_one(self, job: Job, allocation: Allocation) -> str | None:
        recorder = job.recorder
        # The node's own environment (the agent's service) is the script's base here.
        runner = ExperimentRunner(
            job.spec,
            recorder.store,
            self.settings.workspace(job.spec.name, self.disks),
            recorder,
            gpu_ids=allocation.gpu_ids,
            cpu_ids=allocation.cpu_ids,
            base_env=os.environ,
            settings=self.settings.runner,
            before_launch=self.requirements,
            resume_count=recorder.record.resumes,
        )
        self.broadcast.join(runner)
        done = threading.Event()
        helpers = [
            threading.Thread(
                target=watch_controls,
                args=(runner, recorder.keys, self.broadcast, self.settings.control_interval, done),
                name=f"controls-{job.spec.name}",
                daemon=True,
            ),
            threading.Thread(
                target=heartbeat,
                args=(recorder, self.settings.heartbeat_interval, done),
                name=f"heartbeat-{job.spec.name}",
                daemon=True,
            ),
        ]
        for helper in helpers:
            helper.start()
        recorder.log.start()
        try:
            runner.run()
            outcome: str | None = recorder.record.status
        except Exception as exc:  # the runner could not write the status
            say(f"cannot record the outcome of {job.spec.name}: {exc}")
            outcome = None
        done.set()
        for helper in helpers:
            helper.join()
        record = recorder.record
        say(f"{job.spec.name} {record.status}" + (f": {record.reason}" if record.reason else ""))
        return outcome

    def _autoscaling(self):
        import boto3

        return boto3.session.Session().client(
            "autoscaling",
            region_name=self.identity.region,
            endpoint_url=self.settings.endpoint_url,
            config=boto_config(self.settings.endpoint_url),
        )

    def terminate_self(self) -> bool:
        """End this instance but keep the group's capacity, so that the group replaces it
        exactly as after a spot reclaim."""
        try:
            self._autoscaling().terminate_instance_in_auto_scaling_group(
                InstanceId=self.identity.instance_id, ShouldDecrementDesiredCapacity=False
            )
        except Exception as exc:  # reported, and the exit status shows it
            say(f"cannot terminate this instance: {exc}")
            return False
        say(f"terminated {self.identity.instance_id}; its group starts a replacement")
        return True

    def scale_to_zero(self) -> bool:
        """Set this instance's Auto Scaling group to zero, which also ends this instance;
        False when that failed (the agent then exits non-zero, so it shows)."""
        try:
            client = self._autoscaling()
            instance_id = self.identity.instance_id
            found = client.describe_auto_scaling_instances(InstanceIds=[instance_id])
            groups = [i["AutoScalingGroupName"] for i in found["AutoScalingInstances"]]
            group = groups[0] if groups else self.tags.get(GROUP_TAG)
            if group is None:
                say(f"{instance_id} is in no Auto Scaling group: nothing to scale")
                return True
            # The group's min size is 0 already; the node role grants no UpdateAutoScalingGroup.
            client.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
        except Exception as exc:  # reported, and the exit status shows it
            say(f"cannot scale the Auto Scaling group to zero: {exc}")
            return False
        say(f"scaled {group} to zero")
        return True


def read_tags(imds: IMDSClient, timeout: float) -> dict[str, str]:
    """The instance's tags once the gridctl ones are there: right after a boot IMDS may not
    have them yet (the listing 404s or lacks keys), so look again with backoff for up to
    ``timeout`` seconds; then what there is (``Node.locate`` says what is missing)."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        tags = imds.tags()
        left = deadline - time.monotonic()
        if all(tags.get(t) for t in NEEDED_TAGS) or left <= 0:
            return tags
        if delay == 0.25:
            say("this instance's gridctl tags are not in its metadata yet: waiting for them")
        time.sleep(min(delay, left))
        delay = min(delay * 2, 10.0)


def serve_node(settings: NodeSettings) -> int:
    """Run this instance's experiments: 0 once they have ended, whatever their outcome."""
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: terminated.set())
    # ``python`` in the script is the interpreter requirements.txt was installed for.
    os.environ["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)]
    )
    try:
        imds = IMDSClient()
        node = Node(imds.identity(), read_tags(imds, settings.tags_timeout), settings)
    except IMDSError as exc:
        say(f"cannot read the instance metadata: {exc}")
        return 1
    # The instance going away (systemd stopping the agent) is an interruption too, with
    # the grace period to save in.
    window = settings.runner.grace_period + KILL_MARGIN
    threading.Thread(
        target=lambda: (
            terminated.wait() and node.broadcast.deliver(interruption(TERMINATED_REASON, window))
        ),
        name="terminated",
        daemon=True,
    ).start()
    watcher = SpotWatcher(imds, node.broadcast.deliver, settings.spot_interval).start()
    try:
        return node.serve()
    finally:
        watcher.stop()
