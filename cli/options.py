"""The options of `gridctl run`, declared once: each field of ``RunSettings`` is one option.

A field gives the option's name, type and default; its ``option(...)`` metadata gives the
help, any extra spellings, the key of a Grid YAML file that sets it and the backends that use
it. From these come the command's flags (``main.run``), the Grid YAML reader
(``config.load_config``) and the precedence (``settle``): a flag given on the command line,
else the ``--config`` file's value, else the default. Adding an option is one field here plus
the code that uses it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridctl.cli import checks
from gridctl.cli.checks import Check

CLOUDS = ("local", "aws")
DEFAULT_DATASTORE_MOUNT_DIR = "/opt/datastore"
DEFAULT_SCRATCH_MOUNT_PATH = "/scratch"


@dataclass(frozen=True)
class RunOption:
    """One option of `gridctl run`."""

    name: str
    type: type
    """What the flag parses to; the settled value may also be None where the default is."""
    default: Any
    help: str | None = None
    aliases: tuple[str, ...] = ()
    """Spellings beyond ``--name`` and ``--name-with-dashes``."""
    config: str | None = None
    """Where a Grid YAML file sets it, e.g. ``compute.train.instance``; None: flag only."""
    check: Check | None = None
    """How the reader checks the file's value (flags are checked where they are used)."""
    backends: tuple[str, ...] = CLOUDS
    """The backends that use it; the others ignore it, with a warning."""
    envvar: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """``--disk_size`` as Grid spells it, then ``--disk-size``, then any alias."""
        spellings = (f"--{self.name}", f"--{self.name.replace('_', '-')}", *self.aliases)
        return tuple(dict.fromkeys(spellings))


def option(
    default: Any = None,
    help: str | None = None,
    *,
    config: str | None = None,
    check: Check | None = None,
    backends: tuple[str, ...] = CLOUDS,
    aliases: tuple[str, ...] = (),
    envvar: str | None = None,
) -> Any:
    """A ``RunSettings`` field that is a `run` option."""
    spec = {"help": help, "config": config, "check": check, "backends": backends}
    spec |= {"aliases": aliases, "envvar": envvar}
    return field(default=default, metadata={"option": spec})


AWS = ("aws",)


@dataclass(frozen=True)
class RunSettings:
    """`gridctl run`'s settings once flags, config file and defaults are settled."""

    cloud: str | None = option(
        help="local or aws (default: local until up)",
        config="compute.provider.vendor",
        check=checks.choice(sorted(CLOUDS)),
    )
    name: str | None = option(
        help="run name (default: generated)", config="name", check=checks.run_name
    )
    description: str | None = option(
        help="free text kept with the run", config="description", check=checks.text
    )
    config: Path | None = option(help="Grid-style YAML file")
    cpus: float | None = option(
        help="CPUs per experiment (per node when it spans several; default 1)",
        config="compute.train.cpus",
        check=checks.positive_number,
    )
    gpus: int = option(
        0,
        "GPUs per experiment, all nodes together (default 0); more than the --instance_type"
        " has spread over nodes of it: --gpus 8 --instance_type 4_v100_16gb is 2 nodes",
        config="compute.train.gpus",
        check=checks.whole_number(0),
    )
    nodes: int | None = option(
        help="machines one experiment spans, starting its script together (default: as"
        " --gpus and --instance_type make it, else 1); --gpus must divide by it",
        config="compute.train.nodes",
        check=checks.nodes,
    )
    memory: str | None = option(
        help="memory per experiment (per node when it spans several), unit required: 10G",
        config="compute.train.memory",
        check=checks.memory,
    )
    instance_type: str | None = option(
        help="AWS type or Grid nickname (8_v100_32gb)",
        config="compute.train.instance",
        check=checks.instance,
        backends=AWS,
    )
    use_spot: bool = option(
        False, "spot instances", config="compute.train.use_spot", check=checks.boolean, backends=AWS
    )
    auto_resume: bool = option(
        False,
        "resume after a spot interruption",
        config="compute.train.auto_resume",
        check=checks.boolean,
    )
    sync_interval: float | None = option(
        help="seconds between artifact syncs while the script runs [default: 60]: at most"
        " this much work is lost when a machine dies with no notice",
        envvar="GRIDCTL_SYNC_INTERVAL",
    )
    max_runtime: str | None = option(
        help="stop each experiment once its attempts together have run this long, its"
        " preparation included: 90s, 30m, 2h, 1h30m (as gridctl stop would: SIGTERM, grace,"
        " artifacts kept)",
        config="compute.train.max_runtime",
        check=checks.duration,
    )
    max_cost: float | None = option(
        help="USD the whole run may cost: once its instances have cost this much, its"
        " experiments are stopped and those not started never start (local runs cost nothing)",
        config="compute.train.max_cost",
        check=checks.budget,
        backends=AWS,
    )
    strategy: str = option(
        "grid_search",
        "grid_search, random_search or none",
        config="hyper_params.settings.strategy",
        check=checks.strategy,
    )
    trials: int | None = option(
        help="combinations to pick with random_search",
        config="hyper_params.settings.trials",
        check=checks.whole_number(1),
    )
    seed: int | None = option(
        help="seed for samples and picks",
        config="hyper_params.settings.seed",
        check=checks.whole_number(0),
    )
    ignore_warnings: bool = option(False, "skip warnings and prompts")
    datastore_name: str | None = option(config="compute.train.datastore_name", check=checks.text)
    datastore_version: int | None = option(
        config="compute.train.datastore_version", check=checks.whole_number(1)
    )
    datastore_mount_dir: str = option(
        DEFAULT_DATASTORE_MOUNT_DIR,
        "default /opt/datastore",
        config="compute.train.datastore_mount_dir",
        check=checks.absolute_path,
    )
    scratch_size: int | None = option(
        help="scratch space in GB",
        config="compute.train.scratch[0].size_gb",
        check=checks.whole_number(1),
    )
    scratch_mount_path: str = option(
        DEFAULT_SCRATCH_MOUNT_PATH,
        "default /scratch",
        config="compute.train.scratch[0].mount_path",
        check=checks.absolute_path,
    )
    disk_size: int | None = option(
        help="root disk of each AWS instance in GiB [default: 100]",
        config="compute.train.disk_size",
        check=checks.disk_size,
        backends=AWS,
    )
    framework: str | None = option(
        help="lightning, torch, tensorflow, ...; on several nodes torch starts the script"
        " through torchrun, any other once per node",
        config="compute.train.framework",
        check=checks.text,
    )
    credential: str | None = option(
        help="AWS profile to use",
        config="compute.provider.credentials",
        check=checks.text,
        backends=AWS,
    )
    dependency_file: str | None = option(
        help="the file the script's Python environment is built from, in the project"
        " (default: requirements.txt, else pyproject.toml, when there is one)",
        config="compute.train.dependency_file_info.path",
        check=checks.text,
    )
    no_env: bool = option(
        False, "run with the Python as it is: build no environment from the dependency file"
    )
    image: str | None = option(
        help="Docker image to run the script in (its environment: no dependency file is installed)",
        config="compute.train.image",
        check=checks.text,
    )
    localdir: Path | None = option(help="project root (default: current dir)")
    git: str | None = option(
        help="run SCRIPT (a path in the repository) from URL@REF: a branch, tag or commit,"
        " default the remote's HEAD; fetched here with your git, never on the machines",
        config="git",
        check=checks.text,
    )
    dashes_to_underscores: bool = option(False, "rewrite --a-b script flags to --a_b as Grid did")


def _flag_type(hint: Any) -> type:
    """``float`` for ``float | None``: the type a flag parses to."""
    if isinstance(hint, types.UnionType):
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not types.NoneType)
        return inner
    return hint


def _table() -> tuple[RunOption, ...]:
    hints = typing.get_type_hints(RunSettings)
    return tuple(
        RunOption(f.name, _flag_type(hints[f.name]), f.default, **f.metadata["option"])
        for f in dataclasses.fields(RunSettings)
    )


RUN_OPTIONS = _table()


@dataclass(frozen=True)
class RunOptions:
    """`gridctl run` as the user typed it: ``flags`` maps an option's name to its value,
    None where it was not given."""

    script: str
    script_args: tuple[str, ...] = ()
    flags: Mapping[str, Any] = field(default_factory=dict)


def settle(flags: Mapping[str, Any], configured: Mapping[str, Any]) -> RunSettings:
    """Each option's value: its flag if given, else the config file's value, else the default.
    None in either mapping means "not given there"."""
    values = {}
    for entry in RUN_OPTIONS:
        given = (source.get(entry.name) for source in (flags, configured))
        value = next((v for v in given if v is not None), None)
        if value is not None:
            values[entry.name] = value
    return RunSettings(**values)
