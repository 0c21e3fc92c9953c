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
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from gridctl.agent.core import state
from gridctl.agent.core.contract import (
    BUCKET_TAG,
    EXPERIMENT_TAG,
    GROUP_TAG,
    RUN_TAG,
    ExperimentKeys,
    StatusRecord,
    machine_key,
)
from gridctl.agent.core.guards import runtime_used
from gridctl.agent.core.resources import Capacity
from gridctl.agent.core.s3store import S3Store, boto_config
from gridctl.agent.core.scheduler import Allocation, Request, request_for, schedule
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec, Scratch
from gridctl.agent.core.state import ACTIVE_STATES, LOST_REASON, State
from gridctl.agent.node.budget import budget_of, watching
from gridctl.agent.node.controls import Broadcast, Halt, watch_controls
from gridctl.agent.node.ecr import EcrLogin
from gridctl.agent.node.imds import Identity, IMDSClient, IMDSError
from gridctl.agent.node.ledger import Meter, Price, price_of, share_of
from gridctl.agent.node.python import base_python
from gridctl.agent.node.report import BucketRecorder, LogShipper, heartbeat, say
from gridctl.agent.node.settings import NodeError, NodeSettings
from gridctl.agent.node.spot import SpotWatcher
from gridctl.agent.node.venvs import NodeVenvs
from gridctl.agent.runner.container import Images
from gridctl.agent.runner.experiment import KILL_MARGIN, BeforeLaunch, ExperimentRunner
from gridctl.agent.runner.notice import interruption
from gridctl.agent.runner.scratch import Disks, mount_instance_store, mount_volume

_TICK = 0.2
TERMINATED_REASON = "instance terminated"
STALE_BEATS = 3
"""Heartbeats a node may miss before a replacement takes its experiment over."""
NEEDED_TAGS = (BUCKET_TAG, RUN_TAG, EXPERIMENT_TAG)


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


@dataclass
class Job:
    """One experiment of this machine, recorded ``starting`` and waiting for its GPUs."""

    spec: ExperimentSpec
    recorder: BucketRecorder

    @property
    def request(self) -> Request:
        return request_for(self.spec)


@dataclass(frozen=True)
class Node:
    """This instance: who it is (from IMDS) and how the agent is set up on it."""

    identity: Identity
    tags: dict[str, str]
    settings: NodeSettings
    imds: IMDSClient | None = None
    venvs: NodeVenvs | None = None
    """The scripts' Python environments; None: scripts run on the node's PATH as it is."""
    broadcast: Broadcast = field(default_factory=Broadcast)
    halt: Halt = field(default_factory=Halt)
    disks: Disks = field(default_factory=Disks)
    images: Images = field(default_factory=Images)

    def serve(self) -> int:
        """Run the machine's experiments, then hand the instance back: 0 once every one has
        ended (or been interrupted) and been recorded, whatever its outcome."""
        try:
            store, machine = self.locate()
        except Exception as exc:  # without its work the node has no purpose
            say(f"cannot find this node's work: {exc}")
            self.scale_to_zero()
            return 1
        if machine.nodes > 1:
            return self.serve_gang(store, machine)
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
        budget = budget_of(store, (job.spec for job in jobs))
        with watching(budget, self.halt, self.settings.budget_interval):
            outcomes = self.run_all(jobs, machine)
        if None in outcomes:
            self.scale_to_zero()
            return 1
        if State.INTERRUPTED in outcomes and any(job.spec.auto_resume for job in jobs):
            # The group keeps its capacity, so a replacement resumes the experiments; after
            # `gridctl interrupt` this node ends its own instance, as a reclaim would.
            return 0 if not self.broadcast.requested or self.terminate_self() else 1
        return 0 if self.scale_to_zero() and clean else 1

    def serve_gang(self, store: S3Store, machine: MachineSpec) -> int:
        """One rank of the machine's one experiment, which spans its group's instances."""
        from gridctl.agent.node.gang import GangNode

        (name,) = machine.experiments
        keys = ExperimentKeys(machine.run, name)
        try:
            if self.imds is None:
                raise NodeError("a node of a gang needs its metadata service")
            address = self.imds.local_ipv4()
            spec = read_spec(store, keys)
        except Exception as exc:  # recorded, unless the gang's record says more already
            say(f"cannot start {name}: {exc}")
            now = time.time()
            record = StatusRecord.first(self.identity.instance_id, now)
            why = f"the node could not start it: {exc}"
            record = state.finish(record, State.FAILED, None, why, now).beat(now)
            with contextlib.suppress(Exception):  # the bucket itself may be the cause
                store.put_if_absent(keys.status, record.to_json())
            self.scale_to_zero()
            return 1
        if spec.scratch is not None:
            self.mount_scratch(spec.scratch)
        if spec.datastore is not None:
            self.mount_instance_store()
        with watching(budget_of(store, [spec]), self.halt, self.settings.budget_interval):
            return GangNode(self, store, machine, spec, address).serve()

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

    def preparing(self, store: S3Store, spec: ExperimentSpec) -> BeforeLaunch | None:
        """The script's venv, unless it runs in an image (its own environment)."""
        if self.venvs is None or spec.image is not None:
            return None
        return self.venvs.hook(store, spec)

    def run_all(self, jobs: list[Job], machine: MachineSpec) -> list[str | None]:
        """Each job once the scheduler gives it room (the CLI packed them to fit at once);
        the recorded outcome of each, None where it could not be recorded."""
        capacity = Capacity(machine.cpus, machine.gpus, machine.memory)
        price = self.price(machine)
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
                    args=(job, allocation, ended, self.meter(job, allocation, machine, price)),
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

    def price(self, machine: MachineSpec) -> Price:
        """This instance's price, looked up once for all its experiments."""
        return price_of(self.identity, machine, self.settings.endpoint_url)

    def meter(self, job: Job, allocation: Allocation, machine: MachineSpec, price: Price) -> Meter:
        """The job's charge, from the moment it has the instance's room."""
        gpus = len(allocation.gpu_ids)
        return Meter.start(
            job.recorder.store,
            machine.run,
            experiment=job.spec.name,
            attempt=job.recorder.record.resumes,
            rank=0,
            identity=self.identity,
            price=price,
            share=share_of(machine, gpus),
            gpus=gpus,
            beat_interval=self.settings.heartbeat_interval,
        )

    def _work(
        self,
        job: Job,
        allocation: Allocation,
        ended: queue.Queue[tuple[str, str | None]],
        meter: Meter,
    ) -> None:
        """A job's thread: whatever happens, its charge ends and ``run_all`` hears that it
        ended."""
        outcome = None
        try:
            outcome = self.run_one(job, allocation, meter)
        finally:
            meter.end()
            ended.put((job.spec.name, outcome))

    def run_one(self, job: Job, allocation: Allocation, meter: Meter) -> str | None:
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
            before_launch=self.preparing(recorder.store, job.spec),
            resume_count=recorder.record.resumes,
            images=self.images,
            runtime_used=runtime_used(recorder.record.attempts),
        )
        self.broadcast.join(runner)
        self.halt.join(runner)
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
            threading.Thread(
                target=meter.watch, args=(done,), name=f"meter-{job.spec.name}", daemon=True
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

    def _autoscaling(self) -> Any:
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
        return self.terminate(self.identity.instance_id)

    def terminate(self, instance_id: str) -> bool:
        """End an instance of the group (this one, or a gang's peer found lost) and keep
        the group's capacity, so that the group replaces it."""
        try:
            self._autoscaling().terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
            )
        except Exception as exc:  # reported, and the exit status shows it
            say(f"cannot terminate {instance_id}: {exc}")
            return False
        say(f"terminated {instance_id}; its group starts a replacement")
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
    # A script's ``python`` is its venv's, else the node's base: never the agent's own.
    base = base_python(settings.root)
    os.environ["PATH"] = os.pathsep.join([str(base.parent), os.environ.get("PATH", os.defpath)])
    say(f"scripts run on {base}")
    try:
        imds = IMDSClient()
        identity, tags = imds.identity(), read_tags(imds, settings.tags_timeout)
        images = Images(config_dir=settings.docker_config, login=EcrLogin(settings.endpoint_url))
        venvs = NodeVenvs(settings.root, base, identity.image or "unknown", identity.instance_id)
        node = Node(identity, tags, settings, imds, venvs, images=images)
    except IMDSError as exc:
        say(f"cannot read the instance metadata: {exc}")
        return 1
    # The instance going away (systemd stopping the agent) is an interruption too, with
    # the grace period to save in.
    window = settings.runner.grace_period + KILL_MARGIN

    def on_termination() -> None:
        terminated.wait()
        node.broadcast.deliver(interruption(TERMINATED_REASON, window))

    threading.Thread(
        target=on_termination,
        name="terminated",
        daemon=True,
    ).start()
    watcher = SpotWatcher(imds, node.broadcast.deliver, settings.spot_interval).start()
    try:
        return node.serve()
    finally:
        watcher.stop()
