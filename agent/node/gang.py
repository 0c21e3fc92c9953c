"""One node of a multi-node experiment on AWS (SPEC section 9): each of the group's K
instances runs one rank, and the nodes find each other through the bucket
(``agent/core/gang.py``), with no server.

Each attempt forms its gang anew. A node learns which attempt it belongs to from the
experiment's status record: none yet is the first (0); an interrupted one that resumes is
the next; an active one it joins while that attempt's gang is still gathering, else it
waits for that attempt to end (a replacement can boot before the node it replaces has
finished its final sync, and a gang whose nodes all went silent is settled by it). Rank 0
keeps the one status record up (starting, running, heartbeats); whichever rank completes
the attempt's ends writes how the experiment ended, reading the record fresh and writing
only if it is unchanged. A node whose machine stays (a reclaim took a peer's) carries on
into the next attempt on the same instance, so only lost machines are replaced; a node
whose machine goes away ends, and the group replaces it; the machine of a peer found
silent is ended by a node that stays, so that the group replaces it too. Once the
experiment has ended for good, the nodes scale the group to zero.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

from gridctl.agent.core import state
from gridctl.agent.core.contract import ExperimentKeys, InterruptRequest, StatusRecord
from gridctl.agent.core.gang import LOST_PEER_REASON, Rendezvous, combine
from gridctl.agent.core.guards import runtime_used
from gridctl.agent.core.resources import Capacity
from gridctl.agent.core.s3store import S3Store
from gridctl.agent.core.scheduler import request_for, schedule
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
from gridctl.agent.core.state import ENDED_STATES, STARTED_STATES, State
from gridctl.agent.node.agent import STALE_BEATS, Node
from gridctl.agent.node.controls import read_interrupt, watch_controls
from gridctl.agent.node.ledger import Meter, Price, price_of, share_of
from gridctl.agent.node.report import BucketRecorder, LogShipper, heartbeat, say
from gridctl.agent.runner.experiment import ExperimentRunner
from gridctl.agent.runner.gang import GangMember, GangSettings, Outcome
from gridctl.agent.runner.notice import (
    INTERRUPTION,
    REQUESTED_REASON,
    WINDOW,
    Notice,
    interruption,
)

SETTLE_ATTEMPTS = 5
"""Conditional writes of the experiment's end tried before giving up to a peer's."""


def settle(
    store: S3Store, keys: ExperimentKeys, attempt: int, outcome: Outcome, instance: str
) -> bool:
    """Record how ``attempt`` ended the experiment, unless its record moved on already (a
    peer or the CLI ended it, or a later attempt began); True when this wrote it."""
    status, exit_code, reason = outcome
    for _ in range(SETTLE_ATTEMPTS):
        etag: str | None = None
        now = time.time()
        try:
            data, etag = store.get_with_etag(keys.status)
            record = StatusRecord.from_json(data)
        except FileNotFoundError:
            record = StatusRecord.first(instance, now)  # rank 0 never came
        if record.status == State.INTERRUPTED and record.resumes == attempt - 1:
            record = replace(state.resume(record, instance, now), instance=instance)
        elif record.status not in STARTED_STATES or record.resumes != attempt:
            return False
        if status == State.INTERRUPTED:
            store.delete_prefix(keys.interrupt)  # served: it must not interrupt the resume
        ended = state.finish(record, status, exit_code, reason, now).beat(now).to_json()
        if etag is None and store.put_if_absent(keys.status, ended):
            return True
        if etag is not None and store.put_if_unchanged(keys.status, ended, etag):
            return True
    return False


class GangRecorder(BucketRecorder):
    """One rank's Recorder: rank 0 writes the experiment's status record while the attempt
    runs; at the end every rank records its own end, and the one that completes the
    attempt's ends (or waits until a peer does) records the experiment's."""

    def __init__(
        self,
        store: S3Store,
        keys: ExperimentKeys,
        record: StatusRecord,
        log: LogShipper,
        member: GangMember,
        waits: Callable[[], bool],
        interval: float,
        interrupted: Callable[[], None],
    ) -> None:
        super().__init__(store, keys, record, log)
        self.member = member
        self.interrupted = interrupted
        """Called as the rank's interrupted attempt ends, before its end is recorded."""
        self.waits = waits
        """Whether this rank waits for its peers' ends: its machine stays, so it needs to
        know whether the gang resumes."""
        self.interval = interval
        self.exited_at: Callable[[], float | None] = lambda: None
        self.outcome: Outcome | None = None
        """The experiment's end of this attempt, once this rank knows it."""

    def _write(self) -> None:
        if self.member.rank == 0:
            super()._write()

    def running(self, pid: int, pid_started: float) -> None:
        if self.member.rank == 0:
            super().running(pid, pid_started)

    def finished(self, status: State, exit_code: int | None, reason: str | None) -> None:
        self.close_log()
        with self._lock:
            self._ended = True  # no heartbeat from now on may overwrite the end
        if status == State.INTERRUPTED:
            self.interrupted()
        outcome = self.member.finish(status, exit_code, reason, self.exited_at())
        if not self.member.formed:
            # No script ran anywhere (the barrier timed out, or the attempt was interrupted
            # or stopped while its nodes gathered): no peer will complete the ends.
            outcome = (status, exit_code, reason)
        while outcome is None and self.waits():
            time.sleep(self.interval)
            look = self.member.rendezvous.look()
            outcome = combine(look.ends, self.member.nodes, look.alarm)
        self.outcome = outcome
        if outcome is not None:
            rendezvous = self.member.rendezvous
            settle(self.store, self.keys, rendezvous.attempt, outcome, rendezvous.instance)


@dataclass(frozen=True)
class RankOfMachine:
    """What hears this machine's notices in a gang: the rank's script, and (for an
    interruption) the peers, through the attempt's alarm; this machine is the one that
    goes away."""

    runner: ExperimentRunner
    member: GangMember

    def notice(self, notice: Notice) -> bool:
        heard = self.runner.notice(notice)
        if notice.kind == INTERRUPTION:
            try:
                self.member.alarm(notice, leaving=True)
            except Exception as exc:  # the peers still find this rank's end
                say(f"cannot alarm the other nodes: {exc}")
        return heard


@dataclass
class Part:
    """How this node's part of one attempt ended."""

    outcome: Outcome | None
    leaving: bool


class GangNode:
    """This instance's life in its gang: attempts until the experiment ends for good, or
    until its machine goes away."""

    def __init__(
        self, node: Node, store: S3Store, machine: MachineSpec, spec: ExperimentSpec, address: str
    ) -> None:
        self.node = node
        self.store = store
        self.machine = machine
        self.spec = spec
        self.keys = ExperimentKeys(spec.run, spec.name)
        self.address = address
        self.instance = node.identity.instance_id
        settings = node.settings
        # A rank beats at most once per look: a shorter beat would make peers stale.
        beat = max(settings.heartbeat_interval, settings.gang_interval)
        self.gang_settings = GangSettings(
            timeout=settings.gang_timeout,
            interval=settings.gang_interval,
            beat_interval=beat,
            stale_beats=STALE_BEATS,
        )
        self.stale_after = STALE_BEATS * beat
        """Seconds of silence after which a node is taken for lost."""

    def serve(self) -> int:
        last = -1
        while True:
            attempt = self.plan(after=last)
            if attempt is None:
                return 0 if self.node.scale_to_zero() else 1
            ended = self.run(attempt)
            if ended is None:
                continue  # every rank was taken meanwhile: look again
            last = attempt
            if ended.leaving and self.spec.auto_resume:
                # The group keeps its capacity and replaces this machine; after `gridctl
                # interrupt` the node ends its own instance, as a reclaim would.
                requested = self.node.broadcast.requested
                return 0 if not requested or self.node.terminate_self() else 1
            if ended.leaving:
                return 0 if self.node.scale_to_zero() else 1
            self.end_lost(attempt)

    @cached_property
    def price(self) -> Price:
        """This instance's price, for each attempt it runs a rank of."""
        return price_of(self.node.identity, self.machine, self.node.settings.endpoint_url)

    def rendezvous(self, attempt: int) -> Rendezvous:
        return Rendezvous(
            self.store, self.keys, self.machine.nodes, attempt, self.instance, self.address
        )

    def plan(self, after: int) -> int | None:
        """The attempt to join (later than ``after``); None once the experiment has ended
        for good."""
        waited = -1
        while True:
            data = self._status()
            if data is None:
                return 0 if after < 0 else None
            record = StatusRecord.from_json(data)
            if record.status == State.INTERRUPTED:
                return record.resumes + 1 if self.spec.auto_resume else None
            if record.status in ENDED_STATES:
                if after < 0:
                    say(f"{self.keys.experiment} has ended ({record.status}): nothing to run")
                return None
            attempt = record.resumes
            if attempt > after:
                rendezvous = self.rendezvous(attempt)
                members = rendezvous.members()
                mine = any(m.instance == self.instance for m in members.values())
                if len(members) < self.machine.nodes or mine:
                    return attempt
            if attempt != waited:
                waited = attempt
                say(f"{self.keys.experiment}: waiting for attempt {attempt} to end")
            self.settle_silent(self.rendezvous(attempt))
            time.sleep(self.node.settings.gang_interval)

    def _status(self) -> bytes | None:
        try:
            return self.store.get_bytes(self.keys.status)
        except FileNotFoundError:
            return None

    def settle_silent(self, rendezvous: Rendezvous) -> None:
        """An attempt whose every node that has not ended went silent (their machines were
        lost with no word) is ended for them, so that the experiment moves on."""
        look = rendezvous.look()
        unended = [r for r in range(self.machine.nodes) if r not in look.ends]
        if rendezvous.stale(unended, self.stale_after) != unended:
            return
        for rank in unended:
            rendezvous.record_lost(rank)
        if unended:
            self.end_lost(rendezvous.attempt)
        look = rendezvous.look()
        outcome = combine(look.ends, self.machine.nodes, look.alarm)
        # With every end in, the rank that completed them is writing the same outcome (or
        # died doing so): the conditional write keeps one.
        if outcome is not None:
            wrote = settle(self.store, self.keys, rendezvous.attempt, outcome, self.instance)
            if wrote and unended:
                silent = ", ".join(map(str, unended))
                say(f"{self.keys.experiment} attempt {rendezvous.attempt}: node {silent} was lost")

    def end_lost(self, attempt: int) -> None:
        """The machines of peers that ``attempt`` found silent are ended, so that their
        group replaces them: EC2 replaces a dead instance only once its status checks fail,
        and never one whose agent died while the machine lives."""
        rendezvous = self.rendezvous(attempt)
        members = rendezvous.members()
        for rank, end in rendezvous.look().ends.items():
            member = members.get(rank)
            lost = end.reason == LOST_PEER_REASON.format(rank=rank)
            if lost and member is not None and member.instance != self.instance:
                self.node.terminate(member.instance)

    def first_record(self, attempt: int) -> StatusRecord:
        """What rank 0 writes as the attempt starts: the first, or a resume."""
        now = time.time()
        data = self._status()
        if data is None:
            return StatusRecord.first(self.instance, now)
        record = StatusRecord.from_json(data)
        if record.status == State.INTERRUPTED and record.resumes == attempt - 1:
            resumed = replace(state.resume(record, self.instance, now), instance=self.instance)
            return resumed.beat(now)
        return record

    def run(self, attempt: int) -> Part | None:
        """This node's rank of ``attempt``, run to its end; None when no rank was free."""
        node, settings, spec = self.node, self.node.settings, self.spec
        rendezvous = self.rendezvous(attempt)
        rank = rendezvous.register(port=settings.master_port)
        if rank is None:
            time.sleep(settings.gang_interval)
            return None
        rendezvous.beat(rank)  # a node waiting for this attempt to end sees it alive
        say(f"{spec.name}: node {rank} of {self.machine.nodes} in attempt {attempt}")
        record = self.first_record(attempt) if rank == 0 else StatusRecord()
        workspace = settings.workspace(spec.name, node.disks)
        if attempt:
            # The log is shipped whole: carry on from the rank's earlier attempts' log.
            with contextlib.suppress(FileNotFoundError):
                self.store.get_file(self.keys.log_of(rank), workspace.log_path)
        log = LogShipper(
            self.store, self.keys.log_of(rank), workspace.log_path, settings.log_interval
        )
        member = GangMember(rendezvous, rank, spec, self.gang_settings)

        def serves(request: InterruptRequest) -> bool:
            """``gridctl interrupt [--node R]`` for this attempt and this machine."""
            current = request.attempt is None or request.attempt == attempt
            return current and request.node in (None, rank)

        def last_look() -> None:
            """An interrupt of every node ends this machine too, though its script may end
            (on the alarm a peer raised) before its own look at the controls is due."""
            request = read_interrupt(self.store, self.keys)
            if request is not None and serves(request):
                notice = interruption(REQUESTED_REASON, request.window or WINDOW)
                node.broadcast.deliver(notice, requested=True)

        resumes = spec.auto_resume
        recorder = GangRecorder(
            self.store,
            self.keys,
            record,
            log,
            member,
            waits=lambda: not (member.leaving and resumes),
            interval=settings.gang_interval,
            interrupted=last_look,
        )
        recorder.starting()
        capacity = Capacity(self.machine.cpus, self.machine.gpus, self.machine.memory)
        allocations = schedule([request_for(spec)], [], capacity)
        if not allocations:
            recorder.finished(State.FAILED, None, f"it does not fit this machine ({capacity})")
            return Part(recorder.outcome, member.leaving)
        (allocation,) = allocations
        gpus = len(allocation.gpu_ids)
        meter = Meter.start(
            self.store,
            spec.run,
            experiment=spec.name,
            attempt=attempt,
            rank=rank,
            identity=node.identity,
            price=self.price,
            share=share_of(self.machine, gpus),
            gpus=gpus,
            beat_interval=self.gang_settings.beat_interval,
        )
        stored = self._status()
        used = runtime_used(StatusRecord.from_json(stored).attempts) if stored else 0.0
        runner = ExperimentRunner(
            spec,
            self.store,
            workspace,
            recorder,
            gpu_ids=allocation.gpu_ids,
            cpu_ids=allocation.cpu_ids,
            base_env=os.environ,
            settings=settings.runner,
            before_launch=node.preparing(self.store, spec),
            resume_count=attempt,
            gang=member,
            images=node.images,
            runtime_used=used,
        )
        recorder.exited_at = lambda: runner.exited_at
        node.broadcast.join(RankOfMachine(runner, member))
        node.halt.join(runner)
        done = threading.Event()

        helpers = [
            threading.Thread(
                target=watch_controls,
                args=(runner, self.keys, node.broadcast, settings.control_interval, done),
                kwargs={"serves": serves},
                name="controls",
                daemon=True,
            ),
            threading.Thread(target=member.watch, args=(runner, done), name="gang", daemon=True),
            threading.Thread(target=meter.watch, args=(done,), name="meter", daemon=True),
        ]
        if rank == 0:
            helpers.append(
                threading.Thread(
                    target=heartbeat,
                    args=(recorder, settings.heartbeat_interval, done),
                    name="heartbeat",
                    daemon=True,
                )
            )
        for helper in helpers:
            helper.start()
        log.start()
        try:
            runner.run()
        except Exception as exc:  # the runner could not write the status
            say(f"cannot record the end of node {rank}: {exc}")
        finally:
            meter.end()
        done.set()
        for helper in helpers:
            helper.join()
        outcome = recorder.outcome
        if outcome is None:
            say(f"{spec.name} attempt {attempt}: node {rank} ended; the others record the end")
        else:
            why = f": {outcome[2]}" if outcome[2] else ""
            say(f"{spec.name} attempt {attempt}: {outcome[0]}{why}")
        return Part(outcome, member.leaving)
