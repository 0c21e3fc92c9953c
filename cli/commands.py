"""One function per command, called by ``main.py`` with plain arguments; no printing here."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, cast

from gridctl.agent.core import datastore as datastores
from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.progress import Progress
from gridctl.agent.core.state import ACTIVE_STATES, STARTED_STATES
from gridctl.agent.core.store import Store
from gridctl.agent.core.units import format_bytes
from gridctl.cli.backends import Backend, get_backend
from gridctl.cli.backends.base import ExperimentStatus, RunStatus
from gridctl.cli.errors import GridctlError
from gridctl.cli.settings import default_cloud
from gridctl.infra import amis, terraform

if TYPE_CHECKING:
    from gridctl.agent.core.s3store import S3Store
    from gridctl.cli import bundle as bundles
    from gridctl.cli.estimate import Estimate
    from gridctl.cli.metrics import Metrics
    from gridctl.cli.options import RunOptions
    from gridctl.cli.plan import RunPlan

POLL = 0.2
POLL_SHARE = 0.1
"""At most this share of its time ``wait`` spends looking: a look at a run of 1000
experiments costs about 0.1 s of a core, which the experiments it waits for need."""


@dataclass(frozen=True)
class Submitted:
    plan: RunPlan
    bundle: bundles.Bundle
    uploaded: bool


def clouds(home: Path) -> list[str]:
    """The backends whose runs this user can see: local, and the default if it differs,
    unless the default's environment was destroyed."""
    default = default_cloud(home)
    if default == "aws" and _destroyed_notice(home):
        return ["local"]
    return sorted({"local", default})


def backend_for(home: Path, cloud: str) -> Backend:
    """Refuses, with the one line that says why, an AWS environment destroyed elsewhere."""
    if cloud == "aws":
        gone = _destroyed_notice(home)
        if gone:
            raise GridctlError(gone)
    return get_backend(cloud, home)


def notices(home: Path) -> list[str]:
    """What any command says besides its result: that this machine's AWS environment is
    gone, and how to recreate or forget it."""
    gone = _destroyed_notice(home)
    return [gone] if gone else []


@functools.cache
def _destroyed_notice(home: Path) -> str | None:
    """The notice for an AWS environment whose bucket someone destroyed (a teammate's
    ``down``), else None. Only a missing bucket counts: a network error or an access denial
    propagates as itself. Asked once per process: every command may ask."""
    from gridctl.agent.core.s3store import BucketMissing
    from gridctl.infra import environment

    record = environment.load(home)
    if record is None:
        return None
    try:
        cast("S3Store", get_backend("aws", home).store).check_bucket()
    except BucketMissing:
        options = "" if record.name == "default" else f" --name {record.name}"
        if record.region != _default_region():
            options += f" --region {record.region}"
        if record.profile:
            options += f" --credential {record.profile}"
        return (
            f"AWS environment {record.name} was destroyed (its bucket is gone):"
            f" 'gridctl up{options}' recreates it, 'gridctl down' forgets it on this machine"
        )
    return None


def _default_region() -> str:
    """The region ``up`` uses without --region."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def plan(
    options: RunOptions, home: Path, confirm: Callable[[int], bool], *, dry_run: bool
) -> RunPlan:
    """Validate and expand, then let the target backend check it can host the plan.

    A dry run for a cloud that is not set up yet skips only the backend's own checks.
    """
    from gridctl.cli import source
    from gridctl.cli.plan import plan_run

    visible = clouds(home)
    result = plan_run(
        options,
        default_cloud=default_cloud(home),
        run_exists=lambda name: any(backend_for(home, c).run_exists(name) for c in visible),
        confirm=confirm,
        locate=functools.partial(source.locate, home=home),
    )
    if result.cloud == "aws" and not dry_run:
        terraform.check_version()  # before anything is uploaded
    if not dry_run or result.cloud in visible:
        backend = backend_for(home, result.cloud)
        warnings = backend.check_plan(result)
        result = dataclasses.replace(result, warnings=(*result.warnings, *warnings))
        if result.datastore_name is not None:
            with _datastore_errors():
                manifest = datastores.resolve(
                    backend.store, result.datastore_name, result.datastore_version
                )
            result = dataclasses.replace(result, datastore_version=manifest.version)
    elif result.cloud == "aws" and result.instance_type is not None:
        # No environment yet, so no AMI of the user's own: runs would boot the default ones.
        amis.image_for(result.instance_type.name, result.instance_type.gpu_model, None)
    return result


def estimate(plan: RunPlan, home: Path) -> Estimate:
    """What the plan costs per hour: from AWS as the environment's account (or, before
    ``gridctl up``, as the user's credentials in the default region), else the shipped table;
    never an error, so a dry run works offline."""
    from gridctl.cli import estimate as estimates
    from gridctl.infra import environment
    from gridctl.infra.aws import Account
    from gridctl.infra.prices import Prices

    if plan.cloud != "aws" or plan.instance_type is None:
        return estimates.free(plan)
    record = environment.load(home)
    account = record.account if record else Account(plan.credential, _default_region())
    prices = Prices(account, account.region, home)
    lookup = prices.spot if plan.use_spot else prices.on_demand
    name = plan.instance_type.name
    return estimates.priced(plan, lookup([name]).get(name))


@contextlib.contextmanager
def _datastore_errors() -> Iterator[None]:
    """The agent's datastore errors are the user's bad input here (exit 2)."""
    try:
        yield
    except datastores.DatastoreError as exc:
        raise GridctlError(str(exc)) from None


def datastore_create(
    home: Path, name: str, source: Path, cloud: str | None, progress: Progress | None = None
) -> datastores.CreateResult:
    backend = backend_for(home, cloud or default_cloud(home))
    with _datastore_errors():
        return datastores.create(backend.store, name, source, progress=progress)


def datastore_list(home: Path, cloud: str | None) -> list[tuple[str, list[datastores.Version]]]:
    return _datastores(backend_for(home, cloud or default_cloud(home)).store)


def _datastores(store: Store) -> list[tuple[str, list[datastores.Version]]]:
    found = [(name, datastores.versions(store, name)) for name in datastores.names(store)]
    return [(name, versions) for name, versions in found if versions]


def datastore_delete(
    home: Path, name: str, version: int | None, *, force: bool, cloud: str | None
) -> list[int]:
    """Refuses while a queued or running experiment uses what would go, unless forced."""
    backend = backend_for(home, cloud or default_cloud(home))
    users = [
        e.name
        for run in backend.runs()
        for e in run.experiments
        if e.status in ACTIVE_STATES
        and e.datastore is not None
        and e.datastore.name == name
        and version in (None, e.datastore.version)
    ]
    if users and not force:
        what = name if version is None else f"{name} version {version}"
        raise GridctlError(
            f"datastore {what} is in use by {', '.join(users)}; stop them or pass --force"
        )
    with _datastore_errors():
        return backend.delete_datastore(name, version)


def scan(localdir: Path, home: Path) -> bundles.Bundle:
    from gridctl.cli import bundle as bundles

    return bundles.scan(localdir, cache_dir=home / "cache" / "hashes", home=home)


def bundle_warnings(bundle: bundles.Bundle, ignore_warnings: bool) -> list[str]:
    from gridctl.cli import bundle as bundles

    found = list(bundle.warnings)
    if bundle.total_bytes > bundles.SIZE_WARNING_BYTES and not ignore_warnings:
        found.append(
            f"the code bundle is {format_bytes(bundle.total_bytes)}; add large files to"
            " .gridignore (or use a datastore) to speed up every run"
        )
    return found


def submit(
    plan: RunPlan,
    backend: Backend,
    bundle: bundles.Bundle,
    progress: Progress | None = None,
    provisioning: Progress | None = None,
) -> Submitted:
    if plan.script not in {entry.path for entry in bundle.entries}:
        raise GridctlError(
            f"script {plan.script} is excluded from the code bundle by an ignore file"
        )
    from gridctl.cli import bundle as bundles

    uploaded = bundles.upload(bundle, backend.store, progress=progress)
    backend.submit(plan, bundle_key=bundle.key, bundle_id=bundle.bundle_id, progress=provisioning)
    return Submitted(plan=plan, bundle=bundle, uploaded=uploaded)


MAX_WINDOW = 3600.0


def _lookup(home: Path, name: str) -> tuple[Backend, ExperimentStatus | None]:
    """The backend that knows this run or experiment name, with the experiment when the
    name is one (None for a run, whose experiments are not looked up: a sweep's can be a
    thousand). Callers use what it found: on AWS each look is a request to the bucket."""
    for cloud in clouds(home):
        backend = backend_for(home, cloud)
        if backend.run_exists(name):
            return backend, None
        try:
            (found,) = backend.experiments([name])
        except GridctlError:
            continue
        return backend, found
    raise GridctlError(f"no run or experiment named {name!r} (see gridctl status)")


def _find(home: Path, name: str) -> Backend:
    return _lookup(home, name)[0]


def runs(home: Path) -> list[RunStatus]:
    found = [r for cloud in clouds(home) for r in backend_for(home, cloud).runs()]
    return sorted(found, key=lambda r: r.created_at)


def run_status(home: Path, name: str) -> RunStatus:
    return _find(home, name).run(name)


def since(text: str) -> float:
    """``--since``: an ISO date or date and time, in UTC unless it names its zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise GridctlError(
            f"--since {text!r}: not an ISO date (e.g. 2026-12-01 or 2026-12-01T09:30)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def costs(home: Path, name: str | None, after: float | None) -> list[RunStatus]:
    """The runs to account for: ``name``, or every run; only those created at or after
    ``after`` when given."""
    found = [run_status(home, name)] if name else runs(home)
    return [r for r in found if after is None or r.created_at >= after]


def status(home: Path, name: str) -> RunStatus | ExperimentStatus:
    """A run's status, or one experiment's when ``name`` is an experiment."""
    backend, found = _lookup(home, name)
    if found is None:
        run = backend.run(name)
        return dataclasses.replace(run, experiments=tuple(backend.explain_waits(run.experiments)))
    (experiment,) = backend.explain_waits([found])
    return experiment


def _only(backend: Backend, name: str) -> str:
    """The experiment ``name`` denotes: itself, or the only experiment of a run."""
    found = backend.experiments([name])
    if len(found) != 1:
        shown = ", ".join(e.name for e in found[:5]) + (", ..." if len(found) > 5 else "")
        raise GridctlError(f"run {name} has {len(found)} experiments ({shown}); name one of them")
    return found[0].name


def wait(home: Path, name: str, on_change: Callable[[RunStatus], None] | None = None) -> RunStatus:
    backend = _find(home, name)
    last = None
    while True:
        looked = time.monotonic()
        current = backend.run(name)
        took = time.monotonic() - looked
        if on_change and current != last:
            on_change(current)
        last = current
        if current.status not in ACTIVE_STATES:
            return current
        time.sleep(max(POLL, took / POLL_SHARE - took))


def _check_rank(node: int | None) -> None:
    if node is not None and node < 0:
        raise GridctlError(f"--node must be zero or more, got {node}")


def _check_node(experiment: ExperimentStatus, node: int | None) -> None:
    """Refuse a rank the experiment does not have."""
    if node is None or node < experiment.nodes:
        return
    if experiment.nodes == 1:
        raise GridctlError(f"--node {node}: {experiment.name} runs on one node, rank 0")
    raise GridctlError(
        f"--node {node}: {experiment.name} spans {experiment.nodes} nodes,"
        f" ranks 0 to {experiment.nodes - 1}"
    )


def logs(home: Path, name: str, *, follow: bool, tail: int | None, node: int = 0):
    """The log of the experiment ``name``, or of the only experiment of the run ``name``;
    of its rank ``node`` when it spans several nodes."""
    if tail is not None and tail < 0:
        raise GridctlError(f"--tail must be zero or more, got {tail}")
    _check_rank(node)
    backend = _find(home, name)
    experiment = _only(backend, name)
    if node:
        (found,) = backend.experiments([experiment])
        _check_node(found, node)
    return backend.logs(experiment, follow=follow, tail=tail, node=node)


def artifacts(home: Path, names: Sequence[str], dest: Path, match: str | None) -> list[Path]:
    """Download into ``dest``, marked so that no bundle ever takes it along."""
    from gridctl.cli import bundle as bundles

    if match is not None:
        import re

        try:
            re.compile(match)
        except re.error as exc:
            raise GridctlError(
                f"--match {match!r} is not a valid regular expression: {exc}"
            ) from None
    found = [(_find(home, name), name) for name in names]
    bundles.mark_downloads(dest)
    copied: list[Path] = []
    for backend, name in found:
        copied += backend.artifacts([name], dest, match)
    return copied


@dataclass(frozen=True)
class Artifact:
    path: str
    """Where the script left it, relative to its working directory."""
    size: int


@dataclass(frozen=True)
class Outputs:
    """What an experiment has left so far, as its web page shows it."""

    experiment: ExperimentStatus
    artifacts: list[Artifact]
    metrics: Metrics
    log: list[str]


def _located(home: Path, name: str) -> tuple[Backend, ExperimentStatus]:
    """The experiment ``name`` (a run's name does not do) and the backend that has it,
    looked up once for all that is read of it."""
    backend, found = _lookup(home, name)
    if found is None:
        raise GridctlError(f"{name} is a run, not an experiment")
    return backend, found


def experiment(home: Path, name: str) -> ExperimentStatus:
    return _located(home, name)[1]


def outputs(home: Path, name: str, lines: int) -> Outputs:
    """The experiment with its artifacts, metrics and the last ``lines`` of its log."""
    backend, found = _located(home, name)
    return Outputs(
        found,
        _artifact_list(backend, found),
        _metrics(home, backend, found),
        list(backend.logs(found.name, follow=False, tail=lines)),
    )


def artifact_list(home: Path, name: str) -> list[Artifact]:
    """The experiment's artifacts as they lie in the store now (synced while it runs)."""
    return _artifact_list(*_located(home, name))


def _artifact_list(backend: Backend, experiment: ExperimentStatus) -> list[Artifact]:
    prefix = _artifacts_prefix(experiment.run, experiment.name)
    listing = backend.store.listing(prefix)
    return [Artifact(key[len(prefix) :], listed.size) for key, listed in sorted(listing.items())]


@contextlib.contextmanager
def artifact_file(home: Path, name: str, path: str) -> Iterator[Path]:
    """A local copy of one artifact, only one that ``artifact_list`` names: any other
    path, however spelt, is unknown."""
    backend, found = _located(home, name)
    prefix = _artifacts_prefix(found.run, found.name)
    key = prefix + path
    if key not in set(backend.store.list(prefix)):
        raise GridctlError(f"{name} has no artifact {path!r} (see gridctl artifacts)")
    local = backend.store.local_path(key)
    if local is not None:
        yield local
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gridctl-artifact-") as tmp:
        copy = Path(tmp, "artifact")
        backend.store.get_file(key, copy)
        yield copy


def _artifacts_prefix(run: str, experiment: str) -> str:
    return ExperimentKeys(run, experiment).artifacts + "/"


def metrics(home: Path, name: str) -> Metrics:
    """The scalar metrics the experiment's artifacts hold (SPEC section 12)."""
    backend, found = _located(home, name)
    return _metrics(home, backend, found)


def _metrics(home: Path, backend: Backend, experiment: ExperimentStatus) -> Metrics:
    from gridctl.cli.metrics import read_metrics

    prefix = _artifacts_prefix(experiment.run, experiment.name)
    return read_metrics(backend.store, prefix, _cache(home, backend))


def run_metrics(home: Path, run: RunStatus) -> dict[str, Metrics]:
    """Each experiment's metrics, by experiment name, read from the run's one store."""
    backend = _find(home, run.name)
    return {e.name: _metrics(home, backend, e) for e in run.experiments}


def _cache(home: Path, backend: Backend) -> Path:
    """Metrics are cached per store: one store's version tags mean nothing in another."""
    return home / "cache" / backend.name


def log_tail(home: Path, name: str, lines: int) -> list[str]:
    """The last ``lines`` lines of the experiment's log (rank 0's), as they are now."""
    return list(logs(home, name, follow=False, tail=lines))


def _by_backend(home: Path, names: Sequence[str]) -> list[tuple[Backend, list[str]]]:
    """The names grouped by the backend that knows them (all checked before any acts), so
    that each backend handles its share at once (on AWS: one Terraform apply)."""
    groups: dict[str, tuple[Backend, list[str]]] = {}
    for name in names:
        backend = _find(home, name)
        groups.setdefault(backend.name, (backend, []))[1].append(name)
    return list(groups.values())


def stop(home: Path, names: Sequence[str]) -> list[ExperimentStatus]:
    return [e for backend, share in _by_backend(home, names) for e in backend.stop(share)]


def delete(home: Path, names: Sequence[str]) -> list[str]:
    return [e for backend, share in _by_backend(home, names) for e in backend.delete(share)]


def interrupt(
    home: Path, names: Sequence[str], window: float, node: int | None = None
) -> list[ExperimentStatus]:
    """Deliver a simulated spot interruption: the same path as a real notice. ``node``: the
    rank whose machine is reclaimed; every rank of the experiment is interrupted."""
    if not 0 < window <= MAX_WINDOW:
        raise GridctlError(f"--window must be above 0 and at most {MAX_WINDOW:g} seconds")
    _check_rank(node)
    shares = [(backend, backend.experiments(share)) for backend, share in _by_backend(home, names)]
    for _, experiments in shares:
        idle = [e.name for e in experiments if e.status not in STARTED_STATES]
        if idle:
            raise GridctlError(
                f"only running experiments can be interrupted; not running: {', '.join(idle)}"
            )
        for e in experiments:
            _check_node(e, node)
    found: list[ExperimentStatus] = []
    for backend, experiments in shares:
        found += backend.interrupt([e.name for e in experiments], window, node)
    return found


ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,22}[a-z0-9]|[a-z]")


def up(
    home: Path,
    *,
    cloud: str,
    region: str | None,
    name: str,
    ami: str | None,
    vpc_id: str | None,
    subnet_ids: str | None,
    credential: str | None,
    step: Callable[[str], None],
    progress: Progress | None = None,
):
    from gridctl.infra import environment
    from gridctl.infra.aws import Account

    if cloud != "aws":
        raise GridctlError(f"gridctl up makes cloud environments; --cloud {cloud} needs none")
    if not ENVIRONMENT_NAME.fullmatch(name):
        raise GridctlError(
            f"--name {name!r}: use 1-24 lowercase letters, digits and '-', starting with a letter"
        )
    subnets = tuple(s.strip() for s in (subnet_ids or "").split(",") if s.strip())
    if bool(vpc_id) != bool(subnets):
        raise GridctlError("--vpc-id and --subnet-ids go together (subnets of that VPC)")
    current = environment.load(home)
    if current is not None and current.name != name:
        raise GridctlError(
            f"this machine already uses environment {current.name!r}; gridctl down it first"
        )
    account = Account(credential, region or _default_region())
    # moto evaluates a conditional deny as unconditional, so the TLS-only bucket policy
    # would lock the emulator out; this switch exists for emulators only.
    tls_only = os.environ.get("GRIDCTL_BUCKET_TLS_POLICY", "on") != "off"
    return environment.up(
        home,
        account,
        name,
        ami=ami,
        vpc_id=vpc_id,
        subnet_ids=subnets,
        step=step,
        progress=progress,
        deny_insecure_transport=tls_only,
    )


@dataclass(frozen=True)
class Teardown:
    """What ``gridctl down`` deletes, listed for the user before anything goes.

    ``destroyed``: someone else already destroyed the environment; down only forgets it.
    """

    environment: str
    bucket: str
    destroyed: bool = False
    runs: tuple[RunStatus, ...] = ()
    datastores: tuple[tuple[str, tuple[int, ...]], ...] = ()
    objects: int = 0
    bytes: int = 0


def teardown(home: Path, *, name: str | None, force: bool) -> Teardown:
    """The team's runs, datastores and stored bytes that ``down`` would delete; refuses
    while runs are active, unless forced."""
    from gridctl.infra import environment

    record = environment.load(home)
    if record is None or (name is not None and name != record.name):
        raise GridctlError(f"no AWS environment {name or ''} on this machine (see gridctl up)")
    if _destroyed_notice(home):
        return Teardown(record.name, record.bucket, destroyed=True)
    backend = backend_for(home, "aws")
    existing = backend.runs()
    _refuse_active(existing, force)
    objects, size = cast("S3Store", backend.store).usage()  # the AWS backend's bucket
    return Teardown(
        record.name,
        record.bucket,
        runs=tuple(existing),
        datastores=tuple(
            (store, tuple(v.version for v in versions))
            for store, versions in _datastores(backend.store)
        ),
        objects=objects,
        bytes=size,
    )


def _refuse_active(existing: Sequence[RunStatus], force: bool) -> None:
    active = [r.name for r in existing if r.status in ACTIVE_STATES]
    if active and not force:
        raise GridctlError(f"runs still active: {', '.join(active)}; stop them or pass --force")


def down(
    home: Path,
    doomed: Teardown,
    *,
    force: bool,
    step: Callable[[str], None],
    progress: Progress | None = None,
) -> None:
    """Delete every run, then the environment; for one destroyed elsewhere, forget it here.

    The runs are listed again: one started since ``teardown`` goes too, or stops the
    teardown while active."""
    from gridctl.infra import environment

    record = environment.load(home)
    assert record is not None and record.name == doomed.environment
    if doomed.destroyed:
        environment.forget(home, record, step=step, progress=progress)
        return
    backend = backend_for(home, "aws")
    existing = backend.runs()
    _refuse_active(existing, force)
    for run in existing:
        step(f"deleting run {run.name}")
        backend.delete([run.name])
    environment.down(home, record, step=step, progress=progress)
