"""The local backend: experiments run on this machine under the local scheduler."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gridctl.agent.core import datastore as datastores
from gridctl.agent.core import logs as logfiles
from gridctl.agent.core.contract import ExperimentKeys, run_prefix
from gridctl.agent.core.progress import Progress
from gridctl.agent.core.resources import machine_capacity
from gridctl.agent.core.state import ACTIVE_STATES
from gridctl.agent.core.units import format_bytes
from gridctl.agent.runner.experiment import INTERPRETERS, resolve_interpreter
from gridctl.agent.runner.scratch import nearest_existing, shortfall
from gridctl.agent.service import daemon
from gridctl.agent.service.home import Home
from gridctl.agent.service.registry import DuplicateRunError, ExperimentRecord, Registry, RunRecord
from gridctl.cli.backends.base import (
    ExperimentStatus,
    RunStatus,
    download_artifacts,
    experiment_status,
)
from gridctl.cli.errors import GridctlError

if TYPE_CHECKING:
    from gridctl.cli.plan import RunPlan

STOP_WAIT = 60.0


def _check_writable(flag: str, path: Path, where: Path) -> None:
    if not os.access(where, os.W_OK | os.X_OK):
        raise GridctlError(f"{flag} {path}: you cannot create it ({where} is not writable)")


def _status(record: ExperimentRecord) -> ExperimentStatus:
    """Free here (SPEC section 11), but its GPU-hours count: every attempt's time on its GPUs."""
    gpus = record.spec.gpus * record.spec.nodes
    held = 0.0
    if gpus:
        now = time.time()
        held = sum((a.finished_at or now) - a.started_at for a in record.attempts)
    return experiment_status(
        record.run,
        record.name,
        record.spec,
        record,
        "local",
        cost=0.0,
        gpu_hours=gpus * held / 3600,
    )


class LocalBackend:
    name = "local"

    def __init__(self, home: Path) -> None:
        self.home = Home(home)
        self.store = self.home.store
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.home.registry)
            daemon.reconcile(self.home)
        return self._registry

    def check_plan(self, plan: RunPlan) -> list[str]:
        """A gang's K nodes all run here at once: K times a node's request must fit."""
        k = plan.nodes
        cpus, gpus, memory = plan.resources.cpus, plan.resources.gpus, plan.resources.memory
        capacity = machine_capacity()
        if gpus * k > capacity.gpus:
            raise GridctlError(
                f"--gpus {gpus * k}: this machine has {capacity.gpus} GPU(s) (use --cloud aws)"
            )
        if cpus * k > capacity.cpus:
            asked = f"--nodes {k} with --cpus {cpus:g} each need {cpus * k:g}" if k > 1 else ""
            raise GridctlError(
                f"{asked or f'--cpus {cpus:g}'}: this machine has {capacity.cpus:g} CPUs"
            )
        if memory * k > capacity.memory:
            size = format_bytes(memory)
            asked = f"--nodes {k} with --memory {size} each need {format_bytes(memory * k)}"
            raise GridctlError(
                f"{asked if k > 1 else f'--memory {size}'}: this machine has"
                f" {format_bytes(capacity.memory)}"
            )
        if plan.image is not None and shutil.which("docker") is None:
            raise GridctlError(f"--image {plan.image}: docker is not on your PATH (install Docker)")
        # Here the paths are this machine's own: refuse what could never be set up.
        if plan.datastore_name is not None:
            mount_dir = Path(plan.datastore_mount_dir)
            where = nearest_existing(mount_dir.parent)
            _check_writable("--datastore_mount_dir", mount_dir, where)
        if plan.scratch_size:
            scratch = Path(plan.scratch_mount_path)
            _check_writable("--scratch_mount_path", scratch, nearest_existing(scratch))
            problem = shortfall(scratch, plan.scratch_size)
            if problem:
                raise GridctlError(problem)
        return []

    def run_exists(self, name: str) -> bool:
        return self.registry.run_exists(name)

    def submit(
        self, plan: RunPlan, *, bundle_key: str, bundle_id: str, progress: Progress | None = None
    ) -> None:
        """Queue the experiments for the local scheduler (nothing to provision here)."""
        # In an image the script sees its variables alone, as on a node, not this shell's.
        env = dict(plan.script_env) if plan.image else {**os.environ, **plan.script_env}
        argv0 = plan.experiments[0].argv[0]
        interpreter = argv0 in INTERPRETERS and not plan.image
        if interpreter and resolve_interpreter(argv0, env.get("PATH")) is None:
            raise GridctlError(f"{argv0} is not on your PATH")
        specs = [plan.spec(e, bundle_key, env) for e in plan.experiments]
        record = RunRecord(
            name=plan.name,
            backend=self.name,
            created_at=time.time(),
            description=plan.description,
            strategy=plan.strategy,
            seed=plan.seed,
            bundle_id=bundle_id,
            localdir=str(plan.localdir),
        )
        try:
            self.registry.create_run(record, specs)
        except DuplicateRunError:
            raise GridctlError(f"run name {plan.name!r} is already used") from None
        daemon.reconcile(self.home)

    def _run_status(self, run: RunRecord) -> RunStatus:
        return RunStatus(
            name=run.name,
            backend=run.backend,
            created_at=run.created_at,
            description=run.description,
            seed=run.seed,
            strategy=run.strategy,
            experiments=tuple(_status(e) for e in self.registry.experiments(run.name, env=False)),
        )

    def runs(self) -> list[RunStatus]:
        return [self._run_status(r) for r in self.registry.runs()]

    def run(self, name: str) -> RunStatus:
        record = self.registry.get_run(name)
        if record is None:
            raise GridctlError(f"no run named {name!r} (see gridctl status)")
        return self._run_status(record)

    def _records(self, names: Sequence[str]) -> list[ExperimentRecord]:
        """A run's records come without their specs' ``env``: nothing here runs them."""
        found: dict[str, ExperimentRecord] = {}
        for name in names:
            if self.registry.get_run(name) is not None:
                found.update((e.name, e) for e in self.registry.experiments(name, env=False))
                continue
            record = self.registry.get_experiment(name)
            if record is None:
                raise GridctlError(f"no run or experiment named {name!r} (see gridctl status)")
            found[record.name] = record
        return list(found.values())

    def experiments(self, names: Sequence[str]) -> list[ExperimentStatus]:
        return [_status(r) for r in self._records(names)]

    def explain_waits(self, experiments: Sequence[ExperimentStatus]) -> list[ExperimentStatus]:
        """The daemon records why each queued experiment waits as it schedules."""
        return list(experiments)

    def logs(
        self, experiment: str, *, follow: bool, tail: int | None, node: int = 0
    ) -> Iterator[str]:
        record = self.registry.get_experiment(experiment)
        if record is None:
            raise GridctlError(f"no experiment named {experiment!r} (see gridctl status RUN)")
        path = self.home.workspace(record.run, record.name, node).log_path
        start = 0
        if tail is not None:
            yield from logfiles.tail(path, tail)
            start = path.stat().st_size if path.exists() else 0
            if not follow:
                return
        elif not follow:
            if path.exists():
                with path.open("r", encoding="utf-8", errors="replace") as f:
                    yield from f
            return

        def ended() -> bool:
            current = self.registry.get_experiment(experiment)
            return current is None or current.status not in ACTIVE_STATES

        yield from logfiles.follow(path, ended, start=start)

    def artifacts(self, names: Sequence[str], dest: Path, match: str | None) -> list[Path]:
        pairs = [(r.run, r.name) for r in self._records(names)]
        return download_artifacts(self.store, pairs, dest, match)

    def stop(self, names: Sequence[str]) -> list[ExperimentStatus]:
        targets = [r.name for r in self._records(names)]
        self.registry.request_stop(targets)
        daemon.reconcile(self.home)
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            current = [self.registry.get_experiment(n) for n in targets]
            if all(r is None or r.status not in ACTIVE_STATES for r in current):
                break
            time.sleep(0.1)
        return self.experiments(targets)

    def interrupt(
        self, names: Sequence[str], window: float, node: int | None = None
    ) -> list[ExperimentStatus]:
        """The local scheduler hands the runner a notice, as a node's spot watcher would;
        every rank of a gang hears it (here no machine goes away, whichever ``node``)."""
        flagged = self.registry.request_interrupt([r.name for r in self._records(names)], window)
        daemon.reconcile(self.home)
        return self.experiments(flagged)

    def delete(self, names: Sequence[str]) -> list[str]:
        """Experiments, and each run left without any; a bundle goes with the last run
        that used it."""
        records = self._records(names)
        active = [r.name for r in records if r.status in ACTIVE_STATES]
        if active:
            self.stop(active)
        for record in records:
            self.store.delete_prefix(ExperimentKeys(record.run, record.name).base)
            shutil.rmtree(self.home.workspace(record.run, record.name).scratch_dir, True)
            self.registry.delete_experiment(record.name)
        emptied: list[str] = []
        for run in sorted({r.run for r in records}):
            found = self.registry.get_run(run)
            if found is None or self.registry.experiments(run):
                continue
            self.store.delete_prefix(run_prefix(run))
            self.registry.delete_run(run)
            emptied.append(found.bundle_id)
        if emptied:
            from gridctl.cli import bundle as bundles

            bundles.delete_unused(self.store, emptied, (r.bundle_id for r in self.registry.runs()))
        return [r.name for r in records]

    def delete_datastore(self, name: str, version: int | None) -> list[int]:
        """From the store, and this machine's copies of it with the mount dirs made of them."""
        deleted = datastores.delete(self.store, name, version)
        datastores.forget(self.home.datastore_cache, name, None if version is None else deleted)
        return deleted
