"""The backend interface the CLI drives, and the plain data it returns."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.progress import Progress
from gridctl.agent.core.spec import DatastoreMount, ExperimentSpec, Source
from gridctl.agent.core.state import Attempt, History, State, run_state
from gridctl.agent.core.store import Store

if TYPE_CHECKING:
    from gridctl.cli.plan import RunPlan


@dataclass(frozen=True)
class ExperimentStatus:
    name: str
    run: str
    status: State
    params: dict[str, object]
    argv: tuple[str, ...]
    exit_code: int | None = None
    resumes: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    reason: str | None = None
    instance: str | None = None
    attempts: tuple[Attempt, ...] = ()
    datastore: DatastoreMount | None = None
    nodes: int = 1
    """Machines it spans; it has one status whatever their number."""
    source: Source | None = None
    cost: float | None = None
    """USD so far (an estimate while it runs); 0 locally, None where a price is unknown."""
    gpu_hours: float = 0.0


def experiment_status(
    run: str,
    name: str,
    spec: ExperimentSpec,
    record: History,
    instance: str | None,
    *,
    cost: float | None = None,
    gpu_hours: float = 0.0,
) -> ExperimentStatus:
    """What every backend shows of an experiment: its spec and its state's record (and its
    cost when the backend knows it at once)."""
    return ExperimentStatus(
        name=name,
        run=run,
        status=record.status,
        params=spec.params,
        argv=spec.argv,
        exit_code=record.exit_code,
        resumes=record.resumes,
        started_at=record.started_at,
        finished_at=record.finished_at,
        reason=record.reason,
        instance=instance,
        attempts=record.attempts,
        datastore=spec.datastore,
        nodes=spec.nodes,
        source=spec.source,
        cost=cost,
        gpu_hours=gpu_hours,
    )


@dataclass(frozen=True)
class RunStatus:
    name: str
    backend: str
    created_at: float
    description: str | None
    seed: int
    strategy: str
    experiments: tuple[ExperimentStatus, ...] = field(default_factory=tuple)

    @property
    def status(self) -> State:
        return run_state(e.status for e in self.experiments)

    @property
    def source(self) -> Source | None:
        """Where the run's code came from: the same for all its experiments."""
        return self.experiments[0].source if self.experiments else None

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(e.status for e in self.experiments)
        return {state: found[state] for state in State if found[state]}

    @property
    def cost(self) -> float | None:
        """USD of all its experiments; None when any is unknown (a part is not the whole)."""
        return total_of(e.cost for e in self.experiments)

    @property
    def gpu_hours(self) -> float:
        return sum(e.gpu_hours for e in self.experiments)

    @property
    def started_at(self) -> float | None:
        return min((e.started_at for e in self.experiments if e.started_at), default=None)

    @property
    def finished_at(self) -> float | None:
        if any(e.finished_at is None for e in self.experiments):
            return None
        return max((e.finished_at for e in self.experiments if e.finished_at), default=None)


def total_of(costs: Iterable[float | None]) -> float | None:
    """The sum of costs, None when any is unknown."""
    total = 0.0
    for cost in costs:
        if cost is None:
            return None
        total += cost
    return total


def download_artifacts(
    store: Store, experiments: Sequence[tuple[str, str]], dest: Path, match: str | None
) -> list[Path]:
    """Copy each (run, experiment)'s artifacts to ``dest/<experiment>/``, filtered by regex."""
    pattern = re.compile(match) if match else None
    copied: list[Path] = []
    for run, experiment in experiments:
        prefix = ExperimentKeys(run, experiment).artifacts + "/"
        for key in store.list(prefix):
            rel = key[len(prefix) :]
            if pattern and not pattern.search(rel):
                continue
            target = dest / experiment / rel
            store.get_file(key, target)
            copied.append(target)
    return copied


class Backend(Protocol):
    """Where experiments execute. Names are run or experiment names as the user typed them."""

    name: str
    store: Store

    def check_plan(self, plan: RunPlan) -> list[str]:
        """Refuse (GridctlError) what can never run here: resources, datastore; return
        warnings about what will run, but not as asked."""

    def run_exists(self, name: str) -> bool: ...

    def submit(
        self,
        plan: RunPlan,
        *,
        bundle_key: str,
        bundle_id: str,
        progress: Progress | None = None,
    ) -> None:
        """Start the plan's experiments; ``progress`` hears of each resource provisioned, if any."""

    def runs(self) -> list[RunStatus]: ...

    def run(self, name: str) -> RunStatus: ...

    def experiments(self, names: Sequence[str]) -> list[ExperimentStatus]:
        """The experiments the names denote (a run name means all of its experiments)."""

    def explain_waits(self, experiments: Sequence[ExperimentStatus]) -> list[ExperimentStatus]:
        """The experiments as ``status`` shows them: those that wait with why, where their
        records cannot tell (it may ask the cloud, so lookups of names do without it)."""

    def logs(
        self, experiment: str, *, follow: bool, tail: int | None, node: int = 0
    ) -> Iterator[str]:
        """The log of rank ``node`` (checked by the caller against the experiment's nodes)."""

    def artifacts(self, names: Sequence[str], dest: Path, match: str | None) -> list[Path]: ...

    def stop(self, names: Sequence[str]) -> list[ExperimentStatus]: ...

    def interrupt(
        self, names: Sequence[str], window: float, node: int | None = None
    ) -> list[ExperimentStatus]:
        """Interrupt running experiments as a spot reclaim with ``window`` seconds' notice
        would; returns at once, the experiments then end or resume on their own. ``node``:
        the rank whose machine is reclaimed (None: every machine's); every rank of a
        multi-node experiment is interrupted either way."""

    def delete(self, names: Sequence[str]) -> list[str]:
        """Delete experiments (a run name: all of its experiments); a run goes with its last
        experiment. Returns the experiment names deleted."""

    def delete_datastore(self, name: str, version: int | None) -> list[int]:
        """Delete a datastore (or one version) wherever this backend keeps it; returns the
        versions deleted."""
