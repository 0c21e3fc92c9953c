"""From `gridctl run` options to a validated plan: the experiments, their argv and resources.

Settings take this precedence (``options.settle``): command-line flag > ``--config`` file >
default. Planning starts nothing and touches no backend beyond asking whether a run name is taken.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gridctl.agent.core.guards import GuardError, check_budget, parse_duration
from gridctl.agent.core.spec import DatastoreMount, ExperimentSpec, Scratch, Source
from gridctl.agent.core.venvkey import DependencyFileError, dependency_files
from gridctl.cli import sweep
from gridctl.cli.config import RunConfig, load_config, merge_params
from gridctl.cli.errors import GridctlError
from gridctl.cli.machines import (
    DEFAULT_DISK_SIZE,
    InstanceType,
    check_disk_size,
    check_fits,
    parse_memory,
    pick_instance_type,
    resolve_instance_type,
)
from gridctl.cli.names import experiment_name, generate_run_name, validate_run_name
from gridctl.cli.nodes import shape
from gridctl.cli.options import (
    CLOUDS,
    DEFAULT_DATASTORE_MOUNT_DIR,
    DEFAULT_SCRATCH_MOUNT_PATH,
    RUN_OPTIONS,
    RunOptions,
    RunSettings,
    settle,
)
from gridctl.cli.source import Code, project_folder

FRAMEWORKS = ("lightning", "torch", "tensorflow", "keras", "jax", "julia", "torchelastic")
DEFAULT_INSTANCE_TYPE = "t2.medium"


@dataclass(frozen=True)
class PlannedExperiment:
    name: str
    index: int
    params: dict[str, object]
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Resources:
    """What each node of an experiment asks for (an experiment of one node: the experiment)."""

    cpus: float
    gpus: int
    memory: int
    pin_cpus: bool = False
    """``--cpus`` was given, so the experiments are held to it (not only scheduled by it)."""


@dataclass(frozen=True)
class RunPlan:
    name: str
    cloud: str
    description: str | None
    localdir: Path
    script: str
    strategy: str
    seed: int
    resources: Resources
    experiments: tuple[PlannedExperiment, ...]
    nodes: int = 1
    """Machines each experiment spans, each with ``resources`` of its own."""
    instance_type: InstanceType | None = None
    use_spot: bool = False
    auto_resume: bool = False
    sync_interval: float | None = None
    credential: str | None = None
    framework: str | None = None
    datastore_name: str | None = None
    datastore_version: int | None = None
    datastore_mount_dir: str = DEFAULT_DATASTORE_MOUNT_DIR
    scratch_size: int | None = None
    scratch_mount_path: str = DEFAULT_SCRATCH_MOUNT_PATH
    disk_size: int | None = None
    """GiB of each instance's root disk; None on a local run."""
    script_env: dict[str, str] = field(default_factory=dict)
    """Environment variables for the script (``compute.train.environment``)."""
    source: Source | None = None
    """The commit ``localdir`` holds, when known (SPEC section 10)."""
    dependency_file: str | None = None
    venv: bool = True
    image: str | None = None
    max_runtime: float | None = None
    """Seconds each experiment may run over its attempts (``--max_runtime``)."""
    max_cost: float | None = None
    """USD the run may cost (``--max_cost``)."""
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def spec(self, e: PlannedExperiment, bundle_key: str, env: dict[str, str]) -> ExperimentSpec:
        """What the agent gets for one experiment; ``env`` is the script's environment variables."""
        datastore = None
        if self.datastore_name is not None:
            assert self.datastore_version is not None, "resolved by the backend first"
            datastore = DatastoreMount(
                self.datastore_name, self.datastore_version, self.datastore_mount_dir
            )
        scratch = Scratch(self.scratch_size, self.scratch_mount_path) if self.scratch_size else None
        return ExperimentSpec(
            run=self.name,
            name=e.name,
            index=e.index,
            argv=e.argv,
            bundle_key=bundle_key,
            params=e.params,
            env=env,
            cpus=self.resources.cpus,
            pin_cpus=self.resources.pin_cpus,
            gpus=self.resources.gpus,
            memory=self.resources.memory,
            auto_resume=self.auto_resume,
            sync_interval=self.sync_interval,
            datastore=datastore,
            scratch=scratch,
            nodes=self.nodes,
            framework=self.framework,
            source=self.source,
            dependency_file=self.dependency_file,
            venv=self.venv,
            image=self.image,
            max_runtime=self.max_runtime,
            max_cost=self.max_cost,
        )


def _relative(script: Path, root: Path) -> str:
    resolved_root = root.resolve()
    try:
        return script.resolve().relative_to(resolved_root).as_posix()
    except ValueError:
        raise GridctlError(
            f"script {script} is outside the project root {resolved_root} (see --localdir)"
        ) from None


def _script_argv(script: Path, rel: str) -> tuple[str, ...]:
    """``python``/``bash``/the executable itself, then the path relative to the root."""
    if script.suffix == ".py":
        return ("python", rel)
    if script.suffix == ".sh":
        return ("bash", rel)
    if not os.access(script, os.X_OK):
        raise GridctlError(
            f"script {rel} is neither .py nor .sh and is not executable (chmod +x it)"
        )
    return (rel if "/" in rel else f"./{rel}",)


def _positive(flag: str, value, kind=float):
    if value is not None and value <= 0:
        raise GridctlError(f"{flag} must be a positive {kind.__name__}, got {value}")
    return value


def _absolute(flag: str, path: str) -> str:
    if not path.startswith("/"):
        raise GridctlError(f"{flag} must be an absolute path, got {path!r}")
    return path


def _guards(settings: RunSettings) -> tuple[float | None, float | None]:
    """``--max_runtime`` in seconds and ``--max_cost`` in USD, None where not given."""
    try:
        runtime = None if settings.max_runtime is None else parse_duration(settings.max_runtime)
        cost = None if settings.max_cost is None else check_budget(settings.max_cost)
    except GuardError as exc:
        raise GridctlError(str(exc)) from None
    return runtime, cost


def _validate_name(name: str | None, run_exists: Callable[[str], bool]) -> str:
    if name is None:
        for _ in range(20):
            candidate = generate_run_name()
            if not run_exists(candidate):
                return candidate
        raise GridctlError("could not generate an unused run name; pass --name")
    validate_run_name(name)
    if run_exists(name):
        raise GridctlError(f"run name {name!r} is already used; pick another --name")
    return name


def _ignored_locally(cloud: str, settings: RunSettings) -> tuple[str, ...]:
    """A warning naming the options given that the run's backend does not use (those that
    choose AWS machines or credentials, on a local run); --instance_type is still checked
    against the request, so the command also works on AWS."""
    given = [
        entry.flags[0]
        for entry in RUN_OPTIONS
        if cloud not in entry.backends and getattr(settings, entry.name) != entry.default
    ]
    if not given:
        return ()
    verb, pronoun = ("applies", "it") if len(given) == 1 else ("apply", "them")
    return (f"{', '.join(given)} only {verb} to AWS runs; local runs ignore {pronoun}",)


def plan_run(
    options: RunOptions,
    *,
    default_cloud: str,
    run_exists: Callable[[str], bool],
    confirm: Callable[[int], bool],
    locate: Callable[[RunSettings, str], Code] = project_folder,
) -> RunPlan:
    """Validate everything and expand the sweep; raises GridctlError on any bad input.

    ``confirm(count)`` is asked when the sweep is large (above ``sweep.CONFIRM_ABOVE``)
    and ``--ignore_warnings`` was not given; it returns False to refuse. ``locate(settings,
    script)`` finds the code (``source.locate`` fetches a commit for ``--git``).
    """
    config_path = options.flags.get("config")
    cfg = load_config(config_path) if config_path else RunConfig()
    s = settle(options.flags, cfg.values)
    cloud = s.cloud or default_cloud
    if cloud not in CLOUDS:
        raise GridctlError(f"--cloud must be one of {', '.join(CLOUDS)}, got {cloud!r}")
    if s.framework is not None and s.framework not in FRAMEWORKS:
        raise GridctlError(
            f"--framework {s.framework}: use one of {', '.join(FRAMEWORKS)}"
            " (or leave it out: the script then runs once per node)"
        )

    cpus = _positive("--cpus", s.cpus)
    if s.gpus < 0:
        raise GridctlError(f"--gpus must be zero or more, got {s.gpus}")
    memory = parse_memory(s.memory) if s.memory is not None else 0
    instance = resolve_instance_type(s.instance_type) if s.instance_type is not None else None
    gang = shape(s.gpus, s.nodes, instance, s.instance_type)
    notes: list[str] = []
    if instance is not None:
        check_fits(instance, cpus=cpus, gpus=gang.gpus_per_node, memory_bytes=memory or None)
    elif cloud == "aws":
        default = resolve_instance_type(DEFAULT_INSTANCE_TYPE)
        instance = pick_instance_type(
            default, cpus=cpus, gpus=gang.gpus_per_node, memory_bytes=memory or None
        )
        if instance != default:
            what = "one experiment" if gang.nodes == 1 else "one node"
            notes.append(
                f"no --instance_type given; using {instance.name} ({instance.summary}), the"
                f" smallest type that fits {what}"
            )
    resources = Resources(
        cpus=cpus or 1.0, gpus=gang.gpus_per_node, memory=memory, pin_cpus=cpus is not None
    )
    scratch_size = _positive("--scratch_size", s.scratch_size, int)
    datastore_version = _positive("--datastore_version", s.datastore_version, int)
    if s.disk_size is not None:
        check_disk_size(s.disk_size)
    if datastore_version is not None and s.datastore_name is None:
        raise GridctlError("--datastore_version needs --datastore_name")
    max_runtime, max_cost = _guards(s)

    seed = s.seed if s.seed is not None else secrets.randbits(31)
    args = merge_params(list(options.script_args), cfg.params)
    parsed = sweep.parse_args(
        args, strategy=s.strategy, dashes_to_underscores=s.dashes_to_underscores
    )
    count = sweep.experiment_count(parsed, strategy=s.strategy, trials=s.trials)
    sweep.check_limit(count)
    if count > sweep.CONFIRM_ABOVE and not s.ignore_warnings and not confirm(count):
        raise GridctlError(
            f"this sweep makes {count} experiments (more than {sweep.CONFIRM_ABOVE});"
            " pass --ignore_warnings to start them"
        )
    # Last of the checks: finding the code may mean fetching a commit.
    code = locate(s, options.script)
    if s.dependency_file is not None:
        try:
            dependency_files(code.root, s.dependency_file)
        except DependencyFileError as exc:
            raise GridctlError(str(exc)) from None
    script_rel = _relative(code.script, code.root)
    argv0 = _script_argv(code.script, script_rel)
    name = _validate_name(s.name, run_exists)
    expansion = sweep.expand(parsed, strategy=s.strategy, trials=s.trials, seed=seed)
    experiments = tuple(
        PlannedExperiment(
            name=experiment_name(name, i), index=i, params=combo.params, argv=argv0 + combo.args
        )
        for i, combo in enumerate(expansion.combinations)
    )
    return RunPlan(
        name=name,
        cloud=cloud,
        description=s.description,
        localdir=code.root,
        script=script_rel,
        strategy=s.strategy,
        seed=seed,
        resources=resources,
        experiments=experiments,
        nodes=gang.nodes,
        instance_type=instance,
        use_spot=s.use_spot,
        auto_resume=s.auto_resume,
        sync_interval=_positive("--sync_interval", s.sync_interval),
        credential=s.credential,
        framework=s.framework,
        datastore_name=s.datastore_name,
        datastore_version=datastore_version,
        datastore_mount_dir=_absolute("--datastore_mount_dir", s.datastore_mount_dir),
        scratch_size=scratch_size,
        scratch_mount_path=_absolute("--scratch_mount_path", s.scratch_mount_path),
        disk_size=(DEFAULT_DISK_SIZE if s.disk_size is None else s.disk_size)
        if cloud == "aws"
        else None,
        script_env=dict(cfg.script_env),
        source=code.source,
        dependency_file=s.dependency_file,
        venv=not s.no_env,
        image=s.image,
        max_runtime=max_runtime,
        max_cost=max_cost,
        warnings=_ignored_locally(cloud, s) + code.warnings + expansion.warnings,
        notes=tuple(notes),
    )
