"""What the CLI and the agents agree on through the store: where each object lives, the
tags that lead a node to its work, and the records they exchange. The local backend keeps
the same layout in its directory store. Nothing else spells a key or a tag::

    runs/<run>/run.json                       the run (AWS: its machines and Terraform inputs)
    runs/<run>/machines/<machine>.json        one node's work (MachineSpec)
    runs/<run>/<experiment>/spec.json         ExperimentSpec, written by the CLI
    runs/<run>/<experiment>/status.json       StatusRecord, written by the node (missing: queued)
    runs/<run>/<experiment>/log               the whole log, shipped while it grows
    runs/<run>/<experiment>/artifacts/...     the exec dir's files
    runs/<run>/<experiment>/control/stop      gridctl stop (empty)
    runs/<run>/<experiment>/control/interrupt gridctl interrupt (InterruptRequest)
    runs/<run>/<experiment>/node-<R>/log      rank R's log (R > 0; rank 0's is ``log``)
    runs/<run>/<experiment>/artifacts/node-<R>/...   rank R's files (R > 0)
    runs/<run>/<experiment>/gang/<a>/members/<R>.json   who holds rank R in attempt a (Member)
    runs/<run>/<experiment>/gang/<a>/ready/<R>          rank R is prepared to start (empty)
    runs/<run>/<experiment>/gang/<a>/beats/<R>          rank R's last sign of life
    runs/<run>/<experiment>/gang/<a>/ended/<R>.json     how rank R's attempt ended (RankEnd)
    runs/<run>/<experiment>/gang/<a>/alarm              interrupts the attempt (InterruptRequest)
    runs/<run>/ledger/<experiment>/<a>.<R>.json   what rank R's instance cost in attempt a (Charge)
    bundles/<id>.tar.gz                       the project's code, shared by runs
    wheels/<file>.whl                         the agent a node installs
    datastores/<name>/objects/<sha256>        content shared by a name's versions
    datastores/<name>/versions/<v>/manifest.json   every file's path, size and hash
    datastores/<name>/versions/<v>/complete.json   written last: the version is usable
    venvs/<key>/claim                         the one node building the venv (VenvClaim)
    venvs/<key>/venv.tar                      the venv, archived by its builder
    venvs/<key>/manifest.json                 written last: the archive is usable (VenvManifest)
    venvs/<key>/failed.json                   its install failed (VenvFailure): waiters stop

Standard library only: the failsafe reads these on a bare interpreter.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from gridctl.agent.core.state import Attempt, History, State, start

RUNS = "runs"
BUNDLES = "bundles"
WHEELS = "wheels"
DATASTORES = "datastores"
VENVS = "venvs"
LEDGER = "ledger"

ENVIRONMENT_TAG = "gridctl:environment"
"""On everything an environment makes; the node role's rights are scoped by it."""
RUN_TAG = "gridctl:run"
EXPERIMENT_TAG = "gridctl:experiment"
"""The machine a node is for (named after its experiment when it runs only one)."""
BUCKET_TAG = "gridctl:bucket"
GROUP_TAG = "aws:autoscaling:groupName"
"""AWS's own tag on a group's instances."""


def run_prefix(run: str) -> str:
    return f"{RUNS}/{run}"


def run_key(run: str) -> str:
    return f"{run_prefix(run)}/run.json"


def run_of(key: str) -> str | None:
    """The run whose ``run.json`` ``key`` is, None for any other key."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == RUNS and parts[2] == "run.json":
        return parts[1]
    return None


def machine_key(run: str, name: str) -> str:
    """Where a machine's spec lives in the bucket; the node knows only its tags."""
    return f"{run_prefix(run)}/machines/{name}.json"


def ledger_prefix(run: str, experiment: str | None = None) -> str:
    """A run's charges (one listing sums a run, as its budget needs), or one experiment's.
    Beside the experiments' folders, as ``machines/`` is: no experiment is named ``ledger``."""
    base = f"{run_prefix(run)}/{LEDGER}/"
    return base if experiment is None else f"{base}{experiment}/"


def charge_key(run: str, experiment: str, attempt: int, rank: int) -> str:
    return f"{ledger_prefix(run, experiment)}{attempt}.{rank}.json"


@dataclass(frozen=True)
class ExperimentKeys:
    """One experiment's objects."""

    run: str
    experiment: str

    @property
    def base(self) -> str:
        return f"{run_prefix(self.run)}/{self.experiment}"

    @property
    def spec(self) -> str:
        return f"{self.base}/spec.json"

    @property
    def status(self) -> str:
        return f"{self.base}/status.json"

    @property
    def log(self) -> str:
        return f"{self.base}/log"

    @property
    def artifacts(self) -> str:
        """A folder: an artifact's key is this, ``/``, its path in the exec dir."""
        return f"{self.base}/artifacts"

    @property
    def control(self) -> str:
        """Requests to the node: ``stop`` and ``interrupt``."""
        return f"{self.base}/control"

    @property
    def stop(self) -> str:
        return f"{self.control}/stop"

    @property
    def interrupt(self) -> str:
        return f"{self.control}/interrupt"

    def log_of(self, rank: int) -> str:
        """Rank 0's log is the experiment's; the others' lie beside it."""
        return self.log if rank == 0 else f"{self.base}/node-{rank}/log"

    def artifacts_of(self, rank: int) -> str:
        """Rank 0's files are the experiment's; rank R's are kept under ``node-R/``."""
        return self.artifacts if rank == 0 else f"{self.artifacts}/node-{rank}"

    def gang(self, attempt: int) -> str:
        """A gang attempt's rendezvous: each attempt (0, then one per resume) forms anew."""
        return f"{self.base}/gang/{attempt}"

    def member(self, attempt: int, rank: int) -> str:
        return f"{self.gang(attempt)}/members/{rank}.json"

    def ready(self, attempt: int, rank: int) -> str:
        """Rank R's bundle is unpacked and its Python environment ready: the barrier counts
        these, so the scripts start together however long each node took to prepare."""
        return f"{self.gang(attempt)}/ready/{rank}"

    def beat(self, attempt: int, rank: int) -> str:
        return f"{self.gang(attempt)}/beats/{rank}"

    def ended(self, attempt: int, rank: int) -> str:
        return f"{self.gang(attempt)}/ended/{rank}.json"

    def alarm(self, attempt: int) -> str:
        """Raised by the first node of a gang that hears of an interruption (a spot notice,
        ``gridctl interrupt``, a lost peer): the others stop within a look of it."""
        return f"{self.gang(attempt)}/alarm"


def bundle_key(bundle_id: str) -> str:
    """Where a bundle lives in the store: once, whatever number of runs use it."""
    return f"{BUNDLES}/{bundle_id}.tar.gz"


def wheel_key(filename: str) -> str:
    return f"{WHEELS}/{filename}"


def datastore_prefix(name: str) -> str:
    return f"{DATASTORES}/{name}"


def datastore_objects(name: str) -> str:
    return f"{datastore_prefix(name)}/objects"


def datastore_object_key(name: str, sha256: str) -> str:
    return f"{datastore_objects(name)}/{sha256}"


def datastore_versions(name: str) -> str:
    return f"{datastore_prefix(name)}/versions"


def datastore_version_key(name: str, version: int, file: str = "") -> str:
    """A version's folder, or the key of ``file`` in it."""
    folder = f"{datastore_versions(name)}/{version}"
    return f"{folder}/{file}" if file else folder


@dataclass(frozen=True)
class VenvKeys:
    """One cached venv's objects (``agent.core.venvkey`` makes the key)."""

    key: str

    @property
    def base(self) -> str:
        return f"{VENVS}/{self.key}"

    @property
    def claim(self) -> str:
        """Written only if absent: whoever writes it builds, the others wait for it."""
        return f"{self.base}/claim"

    @property
    def archive(self) -> str:
        return f"{self.base}/venv.tar"

    @property
    def manifest(self) -> str:
        """Written after the archive: its presence says the archive is whole."""
        return f"{self.base}/manifest.json"

    @property
    def failed(self) -> str:
        return f"{self.base}/failed.json"


@dataclass(frozen=True)
class VenvClaim:
    """``venvs/<key>/claim``: who builds the venv, and since when."""

    builder: str
    claimed_at: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class VenvManifest:
    """``venvs/<key>/manifest.json``: what a restore checks the archive against.
    ``root`` is where the builder had the venv: scripts' ``#!`` lines name it."""

    sha256: str
    size: int
    python: str
    built_at: float
    files: tuple[str, ...]
    root: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def decode(cls, data: bytes) -> VenvManifest:
        raw = json.loads(data)
        return cls(
            str(raw["sha256"]),
            int(raw["size"]),
            str(raw["python"]),
            float(raw["built_at"]),
            tuple(str(f) for f in raw["files"]),
            str(raw["root"]),
        )


@dataclass(frozen=True)
class VenvFailure:
    """``venvs/<key>/failed.json``: the builder's install failed; the same files would
    fail the same way, so waiters fail at once with its reason."""

    reason: str
    at: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> VenvFailure:
        raw = json.loads(data)
        return cls(str(raw["reason"]), float(raw["at"]))


@dataclass(frozen=True, kw_only=True)
class StatusRecord(History):
    """``status.json``: the one record of an experiment on AWS. The node writes it; the
    CLI writes it only for what no node can (a failed apply, a stop or a node it found
    lost), and reads everything it shows from it."""

    instance: str | None = None
    heartbeat_at: float | None = None
    """Moves while the agent lives, so the CLI can tell a lost node."""

    @classmethod
    def first(cls, instance: str, now: float) -> StatusRecord:
        """The first attempt, on ``instance``."""
        return start(cls(instance=instance, heartbeat_at=now), instance, now)

    def beat(self, now: float) -> StatusRecord:
        """The record as written at ``now``: every write is a sign of life."""
        return replace(self, heartbeat_at=now)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StatusRecord:
        """Lenient about keys it lacks or does not know, so an older or newer writer does
        not break it."""
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        values["status"] = State(raw.get("status") or State.QUEUED)
        values["attempts"] = tuple(Attempt(**a) for a in raw.get("attempts") or ())
        return cls(**values)


SPOT = "spot"
ON_DEMAND = "on-demand"
"""The markets an instance is bought on (IMDS's ``instance-life-cycle`` words)."""
PRICING_API = "pricing api"
PRICE_TABLE = "price table"
SPOT_HISTORY = "spot price history"
"""Where a price came from (a charge's and a machine's ``price_source``): the CLI asks the
Pricing API or falls back to its shipped table; a spot node reads its zone's history."""


@dataclass(frozen=True, kw_only=True)
class Charge:
    """``ledger/<experiment>/<a>.<R>.json``: what one instance ran for one attempt of an
    experiment (rank R of a gang), at what price. The node writes it when the attempt starts,
    moves ``seen_at`` while it lives and sets ``ended_at`` at its end, so a teammate's CLI
    and the run's budget see the same figures (``agent.core.cost`` turns them into USD)."""

    experiment: str
    attempt: int
    rank: int
    instance: str
    instance_type: str
    zone: str | None
    market: str
    """``spot`` or ``on-demand``."""
    price_per_hour: float | None
    """USD per hour for the whole instance; None: no price could be found."""
    price_source: str
    """Where the price came from (``spot price history``, ``pricing api``, ``price table``),
    so a figure can be questioned."""
    share: float = 1.0
    """The part of the instance the experiment holds: a machine shared by experiments is
    split between them, so a run's sum is what AWS bills."""
    gpus: int = 0
    """GPUs the experiment holds on this instance (for GPU-hours)."""
    started_at: float
    seen_at: float
    """The node's last word: a node that went silent is billed until then."""
    ended_at: float | None = None
    beat_interval: float = 30.0
    """Seconds between the node's rewrites of ``seen_at``: how stale an open charge may get
    before it counts as a lost node's."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def decode(cls, data: bytes) -> Charge:
        """Lenient about keys it does not know, so a newer writer does not break it."""
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True)
class InterruptRequest:
    """``control/interrupt``: ``gridctl interrupt`` asks the node to act as if reclaimed, and
    a gang's node that is reclaimed asks its peers to stop with it."""

    window: float | None
    """Seconds the script gets to save; None: the spot notice's own."""
    requested_at: float | None = None
    node: int | None = None
    """The rank whose machine goes away; None: every node's. Every rank is interrupted
    either way: a gang runs whole or not at all."""
    attempt: int | None = None
    """The attempt it interrupts (a gang's later attempts ignore it); None: the current."""
    reason: str | None = None
    """What the node that raised a gang's alarm heard (a spot notice, a lost peer)."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> InterruptRequest:
        """Anything unreadable asks for the default window rather than nothing."""
        try:
            raw = json.loads(data or b"{}")
        except ValueError:
            raw = {}
        raw = raw if isinstance(raw, dict) else {}
        window = raw.get("window")
        valid = isinstance(window, int | float) and window > 0
        at = raw.get("requested_at")
        return cls(
            float(window) if valid and window is not None else None,
            at if isinstance(at, int | float) else None,
            _count(raw.get("node")),
            _count(raw.get("attempt")),
            raw["reason"] if isinstance(raw.get("reason"), str) else None,
        )


def _count(value: object) -> int | None:
    """A rank or attempt number, None when it is none."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


@dataclass(frozen=True)
class Member:
    """``gang/<a>/members/<R>.json``: the node that holds rank R in attempt a. Written only
    if absent, so each rank has one holder; rank 0's ``port`` is the gang's master port."""

    rank: int
    instance: str
    address: str
    port: int | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> Member:
        raw = json.loads(data)
        return cls(int(raw["rank"]), str(raw["instance"]), str(raw["address"]), raw.get("port"))


@dataclass(frozen=True)
class RankEnd:
    """``gang/<a>/ended/<R>.json``: how rank R's part of attempt a ended, once its final sync
    is done. ``stays``: its machine remains for the next attempt (a resume replaces only
    the machines that went away)."""

    rank: int
    status: State
    exit_code: int | None
    reason: str | None
    ended_at: float
    stays: bool = True
    instance: str | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> RankEnd:
        raw = json.loads(data)
        raw["status"] = State(raw["status"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
