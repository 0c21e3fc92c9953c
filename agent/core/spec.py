"""What one experiment is, and what one machine runs: the plain records a backend hands
to the agent."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from gridctl.agent.core.contract import machine_key


@dataclass(frozen=True)
class DatastoreMount:
    """A complete datastore version, materialized read-only at ``mount_dir`` (absolute; on
    a node it lives under the node's root)."""

    name: str
    version: int
    mount_dir: str


@dataclass(frozen=True)
class Scratch:
    """Scratch space of ``size_gb`` at ``mount_path``: an EBS volume on AWS, a checked
    directory elsewhere."""

    size_gb: int
    mount_path: str


@dataclass(frozen=True)
class Source:
    """Where a run's code came from (SPEC section 10), so a result can be traced to a commit.

    ``git_url`` never holds a credential; None fields are unknown (a work tree without a
    remote has no URL; a tree outside any repository has no Source at all)."""

    git_url: str | None = None
    ref: str | None = None
    """The branch, tag or commit asked for (or the work tree's branch)."""
    commit: str | None = None
    dirty: bool | None = None
    """The bundle held changes the commit does not (an uncommitted work tree)."""

    @property
    def short(self) -> str | None:
        """The commit as people read it (git's own abbreviation)."""
        return None if self.commit is None else self.commit[:7]

    def environment(self) -> dict[str, str]:
        """``GRIDCTL_GIT_*`` for the script, the known ones only."""
        found = {
            "GRIDCTL_GIT_URL": self.git_url,
            "GRIDCTL_GIT_COMMIT": self.commit,
            "GRIDCTL_GIT_DIRTY": None if self.dirty is None else str(int(self.dirty)),
        }
        return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything the agent needs to run one experiment, serialisable as JSON.

    ``argv`` is the exact vector that executes (``python``, the script path relative to
    the project root, then its arguments); ``python`` and ``bash`` are looked up on the
    PATH of ``env`` (locally the submitter's, so the interpreter the user's PATH chose).
    """

    run: str
    name: str
    index: int
    argv: tuple[str, ...]
    bundle_key: str
    params: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cpus: float = 1.0
    pin_cpus: bool = False
    """``--cpus`` was given: the script is pinned to that many cores and told to use them;
    otherwise ``cpus`` only counts for scheduling."""
    gpus: int = 0
    memory: int = 0
    """Bytes the script's processes may use (``--memory``); 0: no limit."""
    auto_resume: bool = False
    sync_interval: float | None = None
    """Seconds between artifact syncs during the run; None: the agent's setting."""
    datastore: DatastoreMount | None = None
    scratch: Scratch | None = None
    nodes: int = 1
    """Machines the experiment spans (SPEC section 9): a gang of ``nodes`` ranks, each with
    ``cpus``/``gpus``/``memory`` of its own."""
    framework: str | None = None
    """How each node starts the script: ``torch`` through torchrun, anything else once per
    node (as Lightning expects)."""
    source: Source | None = None
    """The commit the bundle was made from, when known; the bundle, never a ref, is what
    every attempt runs."""
    dependency_file: str | None = None
    """The bundle's file the script's Python environment is built from (``--dependency_file``);
    None: ``requirements.txt``, else ``pyproject.toml``, when the bundle has one."""
    venv: bool = True
    """Build that environment; False (``--no_env``): run with the base Python as it is."""
    image: str | None = None
    """A Docker image to run the script in (``--image``) instead of a Python environment."""
    max_runtime: float | None = None
    """Seconds the experiment may run, over all its attempts (``--max_runtime``); then it is
    stopped as ``gridctl stop`` would. None: no limit."""
    max_cost: float | None = None
    """USD the whole run may cost (``--max_cost``): once its ledger reaches it, the run's
    active experiments are stopped. The same in every spec of the run; None: no budget."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        data = json.loads(text)
        data["argv"] = tuple(data["argv"])
        if data.get("datastore"):
            data["datastore"] = DatastoreMount(**data["datastore"])
        if data.get("scratch"):
            data["scratch"] = Scratch(**data["scratch"])
        if data.get("source"):
            data["source"] = Source(**data["source"])
        return cls(**data)


@dataclass(frozen=True)
class MachineSpec:
    """One node's work on AWS: the experiments that share it and what it offers them.

    A machine runs one experiment, or several when each asks for fewer GPUs than the
    instance has (Grid's semantics); the node's scheduler then gives each its own GPUs.
    ``cpus``/``gpus``/``memory`` are the instance type's, as the CLI's catalogue knows it.
    """

    run: str
    name: str
    experiments: tuple[str, ...]
    cpus: float
    gpus: int
    memory: int
    nodes: int = 1
    """Instances of its group: a gang's K, each running one rank of its one experiment."""
    spot: bool = False
    """The group buys spot instances only (``--use_spot``); else on-demand."""
    prices: dict[str, float] = field(default_factory=dict)
    """On-demand USD per hour of each type the group may launch, found by the CLI (Pricing
    API, its cache, or the price table): what an on-demand node is charged, and a spot
    node's price when the spot price history does not answer (spot never costs more)."""
    price_source: str | None = None
    """Where ``prices`` came from (``pricing api`` or ``price table``)."""

    @property
    def key(self) -> str:
        return machine_key(self.run, self.name)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> MachineSpec:
        data = json.loads(text)
        data["experiments"] = tuple(data["experiments"])
        return cls(**data)
