"""The AWS backend: one Auto Scaling group per machine, state and records in the bucket.

A machine runs one experiment, or several when each asks for fewer GPUs than the instance
type has (Grid's semantics). Everything a teammate needs to see a run lives in the
environment's bucket: ``run.json`` (the run, its machines and its Terraform inputs), each
machine's spec, each experiment's ``spec.json`` and the node agent's ``status.json``, logs
and artifacts. This machine keeps nothing that another could not rebuild.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

from gridctl.agent.core import cost as costs
from gridctl.agent.core import datastore as datastores
from gridctl.agent.core import state
from gridctl.agent.core.contract import (
    RUNS,
    Charge,
    ExperimentKeys,
    InterruptRequest,
    StatusRecord,
    ledger_prefix,
    machine_key,
    run_key,
    run_of,
    run_prefix,
)
from gridctl.agent.core.progress import Progress
from gridctl.agent.core.resources import Capacity
from gridctl.agent.core.scheduler import Request, pack
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
from gridctl.agent.core.state import ACTIVE_STATES, LOST_REASON, State
from gridctl.cli import bundle as bundles
from gridctl.cli.backends import lost
from gridctl.cli.backends.base import (
    ExperimentStatus,
    RunStatus,
    download_artifacts,
    experiment_status,
)
from gridctl.cli.errors import EXIT_FAILED, GridctlError
from gridctl.cli.machines import InstanceType, equivalent_types
from gridctl.cli.plan import RunPlan
from gridctl.infra import activities, amis, environment, quotas, rootmodule, runs, zones
from gridctl.infra.aws import endpoint_url
from gridctl.infra.errors import InfraError
from gridctl.infra.prices import Prices
from gridctl.infra.prices import sources as price_sources
from gridctl.infra.wheel import build_agent_wheel

STOP_WAIT = 60.0
POLL = 2.0
WAITING_STATES = (State.QUEUED, State.STARTING)
"""Their group may be failing to launch: status says why."""


def group_name(environment: str, machine: str) -> str:
    """The machine's Auto Scaling group and launch template: unique per environment, so two
    environments in one account and region may each have a run of the same name. At most
    8 + 24 + 1 + 52 (a 40-character run, ``-machine`` and an index) of the 128 allowed."""
    return f"gridctl-{environment}-{machine}"


def _groups(run: dict) -> dict[str, str]:
    """Each machine's group, as recorded at submission (runs recorded before groups were
    scoped by environment have ``gridctl-<machine>``)."""
    return run.get("groups") or {m: f"gridctl-{m}" for m in run["machines"]}


def instance_types(plan: RunPlan) -> list[str]:
    """The requested type, and with spot the equivalent ones that add capacity pools."""
    assert plan.instance_type is not None
    types = [plan.instance_type.name]
    if plan.use_spot:
        types += [t.name for t in equivalent_types(plan.instance_type)]
    return types


def machines_for(plan: RunPlan) -> list[MachineSpec]:
    """Which experiments share an instance: several when each asks for fewer GPUs than the
    type has, packed by the node's own scheduler; otherwise one each. A machine of one
    experiment is named after it, a shared one ``<run>-machine<N>``. A multi-node
    experiment's machine is its own: a group of ``plan.nodes`` instances, never shared."""
    itype = plan.instance_type
    assert itype is not None
    capacity = Capacity(float(itype.vcpus), itype.gpus, int(itype.memory_gib * 2**30))
    r = plan.resources
    requests = [Request(e.name, r.cpus, r.gpus, r.memory) for e in plan.experiments]
    if 0 < r.gpus < itype.gpus and plan.nodes == 1:
        groups = [[a.name for a in machine] for machine in pack(requests, capacity)]
    else:
        groups = [[request.name] for request in requests]
    return [
        MachineSpec(
            run=plan.name,
            name=members[0] if len(members) == 1 else f"{plan.name}-machine{index}",
            experiments=tuple(members),
            cpus=capacity.cpus,
            gpus=capacity.gpus,
            memory=capacity.memory,
            nodes=plan.nodes,
            spot=plan.use_spot,
        )
        for index, members in enumerate(groups)
    ]


def _failed(record: StatusRecord, reason: str, now: float) -> StatusRecord:
    """The record of an experiment whose machine could not be made."""
    if record.status == State.QUEUED:
        return state.fail(record, reason, now)
    return state.finish(record, State.FAILED, None, reason, now)


class AwsBackend:
    name = "aws"

    def __init__(self, home: Path) -> None:
        record = environment.load(home)
        if record is None:
            raise GridctlError("no AWS environment yet: run 'gridctl up' first")
        self.home = home
        self.record = record
        self.account = record.account
        from gridctl.agent.core.s3store import S3Store

        self.store = S3Store(record.bucket, record.region, endpoint_url())

    # -- submission -------------------------------------------------------------------

    def check_plan(self, plan: RunPlan) -> list[str]:
        """Refuse what would wait forever: a type no zone of the environment's subnets
        offers, or a vCPU quota too small for one machine."""
        assert plan.instance_type is not None
        self._image(plan.instance_type)
        self._launch_subnets(instance_types(plan))
        return self._check_quota(plan)

    def _launch_subnets(self, types: Sequence[str]) -> tuple[str, ...]:
        """The environment's subnets in zones that offer one of ``types``. A subnet that no
        longer exists is left for the apply to report (the run then fails, leaving nothing)."""
        import botocore.exceptions

        ec2 = self.account.client("ec2")
        every = tuple(self.record.outputs["subnet_ids"])
        try:
            subnets = zones.subnet_zones(ec2, every)
        except botocore.exceptions.ClientError as exc:
            if "InvalidSubnetID" in str(exc):
                return every
            raise
        offered = zones.offered_zones(ec2, types)
        usable = zones.launchable(subnets, offered)
        if usable:
            return usable
        what = f"instance type {types[0]}"
        if len(types) > 1:
            what += f" (nor its spot alternatives {', '.join(types[1:])})"
        region = self.record.region
        if not offered:
            raise GridctlError(f"{what} is not offered in {region}")
        raise GridctlError(
            f"{what} is not offered in the zones of environment {self.record.name}'s subnets"
            f" ({', '.join(sorted(set(subnets.values())))}); {region} offers it in"
            f" {', '.join(sorted(offered))}: choose another --instance_type, or give"
            " 'gridctl up' --vpc-id and --subnet-ids with a subnet there"
        )

    def _check_quota(self, plan: RunPlan) -> list[str]:
        """The warnings to show: the quota runs fewer machines at once than the run has,
        or it could not be read (then nothing is refused)."""
        itype = plan.instance_type
        assert itype is not None
        quota = quotas.quota_for(itype.name, spot=plan.use_spot)
        if quota is None:
            return []
        try:
            vcpus = quotas.value(self.account, quota)
        except quotas.QuotaUnknown as exc:
            return [f"EC2 vCPU quota {quota.code} not checked: {exc}"]
        fits = quotas.machines_within(vcpus, itype.vcpus)
        wanted = sum(m.nodes for m in machines_for(plan))
        where = f"EC2 quota {quota.code} ({quota.name}) in {self.record.region}"
        more = quota.increase_command(itype.vcpus * wanted)
        if fits < plan.nodes:
            # A gang starts whole or not at all: fewer than K instances would wait forever.
            needs = (
                f"one {itype.name} needs {itype.vcpus}"
                if plan.nodes == 1
                else f"one experiment's {plan.nodes} nodes ({itype.name}), which start"
                f" together, need {itype.vcpus * plan.nodes}"
            )
            raise GridctlError(
                f"the {where} is {vcpus:g} vCPUs, and {needs}: ask for more on the Service"
                f" Quotas page of the AWS console, or run: {more}"
            )
        if fits < wanted:
            return [
                f"the {where} is {vcpus:g} vCPUs: only {fits} of this run's {wanted} machines"
                f" ({itype.name}, {itype.vcpus} vCPUs each) run at a time, the rest wait;"
                f" for more run: {more}"
            ]
        return []

    def run_exists(self, name: str) -> bool:
        return self.store.exists(run_key(name))

    def _image(self, itype: InstanceType) -> amis.Image:
        return amis.image_for(itype.name, itype.gpu_model, self.record.own_image)

    def _inputs(self, run: dict) -> rootmodule.RunInputs:
        groups = _groups(run)
        # Runs recorded before the AMI was picked per instance type used the environment's.
        image = amis.Image(**run["image"]) if "image" in run else self.record.own_image
        return rootmodule.RunInputs(
            environment=self.record.name,
            run=run["name"],
            use_spot=run["use_spot"],
            auto_resume=run.get("auto_resume", False),
            agent_wheel_key=run["agent_wheel_key"],
            outputs=self.record.outputs,
            scratch_size=run["scratch_size"] or 0,
            subnet_ids=tuple(run.get("subnet_ids", ())),
            disk_size=run.get("disk_size"),  # None for runs recorded before it was an option
            image=image or amis.BASE_OSS_DRIVER,
            # Emulators such as moto have no placement groups; real AWS always does.
            placement_group=os.environ.get("GRIDCTL_PLACEMENT_GROUP", "on") != "off",
            groups=tuple(
                rootmodule.MachineInputs(
                    name=groups[machine],
                    machine=machine,
                    instance_types=tuple(run["instance_types"]),
                    # The size of the group comes from the spec its nodes read, so the two
                    # cannot disagree (specs of runs from before gangs say one node).
                    node_count=MachineSpec.from_json(
                        self.store.get_bytes(machine_key(run["name"], machine))
                    ).nodes,
                )
                for machine in run["machines"]
            ),
        )

    def submit(
        self, plan: RunPlan, *, bundle_key: str, bundle_id: str, progress: Progress | None = None
    ) -> None:
        assert plan.instance_type is not None
        wheel = build_agent_wheel()
        if not self.store.exists(wheel.key):
            self.store.put_bytes(wheel.key, wheel.data)
        types = instance_types(plan)
        every = list(self.record.outputs["subnet_ids"])
        subnets = list(self._launch_subnets(types))
        prices = Prices(self.account, self.record.region, self.home).on_demand(types)
        machines = [
            dataclasses.replace(
                m,
                prices={t: p.usd_per_hour for t, p in prices.items()},
                price_source=price_sources(prices.values()),
            )
            for m in machines_for(plan)
        ]
        run = {
            "name": plan.name,
            "backend": self.name,
            "created_at": time.time(),
            "description": plan.description,
            "strategy": plan.strategy,
            "seed": plan.seed,
            "bundle_id": bundle_id,
            "use_spot": plan.use_spot,
            "auto_resume": plan.auto_resume,
            "scratch_size": plan.scratch_size,
            "disk_size": plan.disk_size,
            "instance_types": types,
            "subnet_ids": [] if subnets == every else subnets,  # empty: all of them
            "agent_wheel_key": wheel.key,
            "experiments": [e.name for e in plan.experiments],
            "machines": {m.name: list(m.experiments) for m in machines},
            "groups": {m.name: group_name(self.record.name, m.name) for m in machines},
            "image": dataclasses.asdict(self._image(plan.instance_type)),
        }
        for e in plan.experiments:
            spec = plan.spec(e, bundle_key, dict(plan.script_env))
            self.store.put_bytes(ExperimentKeys(plan.name, e.name).spec, spec.to_json().encode())
        for machine in machines:
            self.store.put_bytes(machine.key, machine.to_json().encode())
        self.store.put_bytes(run_key(plan.name), json.dumps(run).encode())
        try:
            runs.apply(self.home, self.record, self._inputs(run), progress)
        except InfraError as exc:
            self._fail_run(run, exc.message, progress)
            raise InfraError(exc.message, EXIT_FAILED) from None

    def _fail_run(self, run: dict, reason: str, progress: Progress | None) -> None:
        """A failed apply leaves nothing running or billable, and says why on every experiment."""
        # Should this fail too, the run's state stays in the bucket for `gridctl delete`.
        with contextlib.suppress(InfraError):
            runs.destroy(self.home, self.record, self._inputs(run), progress)
        for name in run["experiments"]:
            self._write_status(run["name"], name, lambda r, now: _failed(r, reason, now))

    def _write_status(
        self, run: str, experiment: str, move: Callable[[StatusRecord, float], StatusRecord]
    ) -> None:
        """Record what the state machine's ``move(record, now)`` makes of the experiment's
        record (a queued one has none yet); one that ended meanwhile keeps its end."""
        now = time.time()
        record = self._status(run, experiment) or StatusRecord()
        if record.status in ACTIVE_STATES:
            record = move(record, now).beat(now)
            self.store.put_bytes(ExperimentKeys(run, experiment).status, record.to_json())

    # -- reading ----------------------------------------------------------------------

    def _run_record(self, name: str) -> dict | None:
        try:
            return json.loads(self.store.get_bytes(run_key(name)))
        except FileNotFoundError:
            return None

    def _status(self, run: str, experiment: str) -> StatusRecord | None:
        try:
            return StatusRecord.from_json(
                self.store.get_bytes(ExperimentKeys(run, experiment).status)
            )
        except FileNotFoundError:
            return None

    def _experiment(self, run: str, name: str) -> ExperimentStatus:
        spec = ExperimentSpec.from_json(
            self.store.get_bytes(ExperimentKeys(run, name).spec).decode()
        )
        status = self._status(run, name) or StatusRecord()
        if lost.is_stale(status, time.time(), self._lost_after):
            status = self._settle_lost(run, name, spec.auto_resume)
        return experiment_status(run, name, spec, status, status.instance)

    @cached_property
    def _lost_after(self) -> float:
        return lost.lost_after(os.environ)

    def _settle_lost(self, run: str, name: str, auto_resume: bool) -> StatusRecord:
        """The experiment's record once its silent node is settled: failed with the agent's
        own reason, its machine's group at zero unless another experiment still runs there.
        With --auto_resume, an instance EC2 no longer runs was reclaimed with no notice: its
        group is replacing it, and the replacement takes the experiment over.

        The record is rewritten only if unchanged since read (a conditional write), so a
        node that speaks again, or a teammate's CLI doing the same, is never overwritten."""
        key = ExperimentKeys(run, name).status
        try:
            data, etag = self.store.get_with_etag(key)
        except FileNotFoundError:
            return StatusRecord()
        record = StatusRecord.from_json(data)
        if not lost.is_stale(record, time.time(), self._lost_after):
            return record
        instance = record.instance
        if auto_resume and lost.instance_gone(self._instance_state(instance)):
            return dataclasses.replace(
                record, reason=f"{instance} was lost: waiting for its replacement"
            )
        now = time.time()
        record = state.finish(record, State.FAILED, None, LOST_REASON, now).beat(now)
        if not self.store.put_if_unchanged(key, record.to_json(), etag):
            return self._status(run, name) or StatusRecord()
        self._scale_to_zero(self._idle_groups(self.experiments([name])))
        return record

    def _instance_state(self, instance_id: str | None) -> str | None:
        """The instance's EC2 state, None when EC2 does not know it (any more)."""
        import botocore.exceptions

        if not instance_id:
            return None
        try:
            found = self.account.client("ec2").describe_instances(InstanceIds=[instance_id])
        except botocore.exceptions.ClientError as exc:
            if "InvalidInstanceID" in str(exc):
                return None
            raise
        states = [i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]]
        return states[0] if states else None

    def _charges(self, run: str) -> dict[str, list[Charge]]:
        """The run's ledger, by experiment: one listing, whatever its size."""
        found: dict[str, list[Charge]] = {}
        for key in self.store.list(ledger_prefix(run)):
            try:
                charge = Charge.decode(self.store.get_bytes(key))
            except FileNotFoundError:  # its experiment was deleted meanwhile
                continue
            found.setdefault(charge.experiment, []).append(charge)
        return found

    def _priced(self, run: str, experiments: Sequence[ExperimentStatus]) -> list[ExperimentStatus]:
        """The experiments with what their charges add up to so far (an estimate while they
        run): nothing yet before a node has charged them."""
        charges = self._charges(run)
        now = time.time()
        return [
            dataclasses.replace(
                e,
                cost=costs.total_cost(charges.get(e.name, []), now),
                gpu_hours=costs.gpu_hours(charges.get(e.name, []), now),
            )
            for e in experiments
        ]

    def _run_status(self, run: dict) -> RunStatus:
        experiments = [self._experiment(run["name"], e) for e in run["experiments"]]
        return RunStatus(
            name=run["name"],
            backend=self.name,
            created_at=run["created_at"],
            description=run.get("description"),
            seed=run["seed"],
            strategy=run["strategy"],
            experiments=tuple(self._priced(run["name"], experiments)),
        )

    def _run_records(self) -> list[dict]:
        names = {run for key in self.store.list(RUNS) if (run := run_of(key)) is not None}
        found = [self._run_record(n) for n in sorted(names)]
        return [r for r in found if r is not None]

    def runs(self) -> list[RunStatus]:
        return [self._run_status(r) for r in self._run_records()]

    def run(self, name: str) -> RunStatus:
        record = self._run_record(name)
        if record is None:
            raise GridctlError(f"no run named {name!r} (see gridctl status)")
        return self._run_status(record)

    def experiments(self, names: Sequence[str]) -> list[ExperimentStatus]:
        found = self._experiments(names)
        by_run: dict[str, list[ExperimentStatus]] = {}
        for e in found:
            by_run.setdefault(e.run, []).append(e)
        priced = {e.name: e for run, group in by_run.items() for e in self._priced(run, group)}
        return [priced[e.name] for e in found]

    def _experiments(self, names: Sequence[str]) -> list[ExperimentStatus]:
        """What ``experiments`` shows, but their costs (which read the ledger): for the
        loops that only need their states."""
        found: dict[str, ExperimentStatus] = {}
        for name in names:
            record = self._run_record(name)
            if record is not None:
                found.update((e, self._experiment(name, e)) for e in record["experiments"])
                continue
            run = name.rsplit("-exp", 1)[0]
            record = self._run_record(run) if "-exp" in name else None
            if record is None or name not in record["experiments"]:
                raise GridctlError(f"no run or experiment named {name!r} (see gridctl status)")
            found[name] = self._experiment(run, name)
        return list(found.values())

    def explain_waits(self, experiments: Sequence[ExperimentStatus]) -> list[ExperimentStatus]:
        """Queued or starting experiments whose group fails to launch get its latest scaling
        activity as their reason: one call per such group, none for the others."""
        waiting = [e for e in experiments if e.status in WAITING_STATES]
        troubles: dict[tuple[str, str], str] = {}
        for run in sorted({e.run for e in waiting}):
            record = self._run_record(run)
            if record is None:
                continue
            groups = _groups(record)
            names = {e.name for e in waiting if e.run == run}
            for machine, members in record["machines"].items():
                if names.isdisjoint(members):
                    continue
                trouble = activities.launch_trouble(self.account, groups[machine])
                if trouble is not None:
                    troubles.update(((run, m), trouble) for m in members)
        explained = []
        for e in experiments:
            trouble = troubles.get((e.run, e.name)) if e.status in WAITING_STATES else None
            if trouble is not None:
                e = dataclasses.replace(e, reason="; ".join(filter(None, (e.reason, trouble))))
            explained.append(e)
        return explained

    def logs(
        self, experiment: str, *, follow: bool, tail: int | None, node: int = 0
    ) -> Iterator[str]:
        (status,) = self.experiments([experiment])
        key = ExperimentKeys(status.run, experiment).log_of(node)

        def text() -> str:
            try:
                return self.store.get_bytes(key).decode("utf-8", "replace")
            except FileNotFoundError:
                return ""

        lines = text().splitlines(keepends=True)
        shown = lines if tail is None else lines[len(lines) - tail :] if tail else []
        yield from shown
        if not follow:
            return
        seen = len(lines)
        while True:
            (status,) = self._experiments([experiment])
            ended = status.status not in ACTIVE_STATES
            lines = text().splitlines(keepends=True)
            yield from lines[seen:]
            seen = len(lines)
            if ended:
                return
            time.sleep(POLL)

    def artifacts(self, names: Sequence[str], dest: Path, match: str | None) -> list[Path]:
        pairs = [(e.run, e.name) for e in self.experiments(names)]
        return download_artifacts(self.store, pairs, dest, match)

    # -- stopping ---------------------------------------------------------------------

    def _scale_to_zero(self, groups: Sequence[str]) -> None:
        import botocore.exceptions

        autoscaling = self.account.client("autoscaling")
        for name in groups:
            try:
                autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0
                )
            except botocore.exceptions.ClientError as exc:
                if "not found" not in str(exc).lower():
                    raise

    def _idle_groups(self, stopping: Sequence[ExperimentStatus]) -> list[str]:
        """The groups of the machines of ``stopping`` on which no other experiment is left
        to run."""
        names = {e.name for e in stopping}
        idle: list[str] = []
        for run in sorted({e.run for e in stopping}):
            record = self._run_record(run) or {"machines": {}}
            groups = _groups(record)
            for machine, members in record["machines"].items():
                others = [m for m in members if m not in names]
                if len(others) < len(members) and not any(
                    e.status in ACTIVE_STATES for e in self._experiments(others)
                ):
                    idle.append(groups[machine])
        return idle

    def stop(self, names: Sequence[str]) -> list[ExperimentStatus]:
        """Ask each node to stop (SIGTERM, grace, SIGKILL, final sync), then scale to zero
        the machines left with nothing to run."""
        targets = [e for e in self.experiments(names) if e.status in ACTIVE_STATES]
        for e in targets:
            self.store.put_bytes(ExperimentKeys(e.run, e.name).stop, b"")
        deadline = time.monotonic() + STOP_WAIT
        pending = [e for e in targets if e.status != State.QUEUED]
        while pending and time.monotonic() < deadline:
            time.sleep(POLL)
            pending = [e for e in self._experiments([e.name for e in pending])]
            pending = [e for e in pending if e.status in ACTIVE_STATES]
        self._scale_to_zero(self._idle_groups(targets))
        for e in self.experiments([e.name for e in targets]):
            if e.status in ACTIVE_STATES:
                self._write_status(e.run, e.name, state.stop)
        return self.experiments(names)

    def delete_datastore(self, name: str, version: int | None) -> list[int]:
        """Only the bucket holds datastores: nodes' copies go with their instances."""
        return datastores.delete(self.store, name, version)

    def interrupt(
        self, names: Sequence[str], window: float, node: int | None = None
    ) -> list[ExperimentStatus]:
        """The node hears it through the bucket, handles it as a spot notice for its whole
        machine, then ends its instance; the group replaces it as after a reclaim. A gang's
        request names the attempt it interrupts (a later one ignores it) and the rank whose
        machine goes away (None: every rank's)."""
        targets = self.experiments(names)
        for e in targets:
            attempt = e.resumes if e.nodes > 1 else None
            request = InterruptRequest(window, time.time(), node=node, attempt=attempt)
            self.store.put_bytes(ExperimentKeys(e.run, e.name).interrupt, request.encode())
        return targets

    def delete(self, names: Sequence[str]) -> list[str]:
        """Whole runs, or single experiments: an experiment's machine goes with its last
        experiment, and a run with its last experiment."""
        doomed: dict[str, set[str]] = {}
        for e in self.experiments(names):
            doomed.setdefault(e.run, set()).add(e.name)
        deleted: list[str] = []
        emptied: list[str] = []
        for run, experiments in doomed.items():
            record = self._run_record(run)
            assert record is not None
            self.stop(sorted(experiments))
            if experiments.issuperset(record["experiments"]):
                runs.destroy(self.home, self.record, self._inputs(record))
                self.store.delete_prefix(run_prefix(run))
                self.store.delete_prefix(runs.state_key(run))
                emptied.append(record["bundle_id"])
                deleted += record["experiments"]
                continue
            kept = {
                machine: [m for m in members if m not in experiments]
                for machine, members in record["machines"].items()
            }
            record["experiments"] = [e for e in record["experiments"] if e not in experiments]
            record["machines"] = {machine: members for machine, members in kept.items() if members}
            self.store.put_bytes(run_key(run), json.dumps(record).encode())
            for machine, members in record["machines"].items():
                # A replacement node must not look for the deleted experiments.
                spec = MachineSpec.from_json(self.store.get_bytes(machine_key(run, machine)))
                narrowed = dataclasses.replace(spec, experiments=tuple(members))
                self.store.put_bytes(narrowed.key, narrowed.to_json().encode())
            # The machines left empty drop out of the module, so the apply destroys them.
            runs.apply(self.home, self.record, self._inputs(record))
            for machine in sorted(set(kept) - set(record["machines"])):
                self.store.delete_prefix(machine_key(run, machine))
            for name in sorted(experiments):
                self.store.delete_prefix(ExperimentKeys(run, name).base)
                self.store.delete_prefix(ledger_prefix(run, name))
                deleted.append(name)
        if emptied:
            in_use = (r["bundle_id"] for r in self._run_records())
            bundles.delete_unused(self.store, emptied, in_use)
        return deleted
