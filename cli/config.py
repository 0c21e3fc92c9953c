"""Grid's YAML run configuration (`gridctl run --config FILE.yml`), read strictly.

Every key is checked: a typo or a Grid feature gridctl lacks is an error naming the key,
never a silently different run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from gridctl.cli.errors import GridctlError
from gridctl.cli.machines import check_disk_size, parse_memory, resolve_instance_type
from gridctl.cli.names import validate_run_name

STRATEGIES = ("grid_search", "random_search", "none")
VENDORS = ("aws", "local")

_TOP_KEYS = ("name", "description", "compute", "hyper_params")
_COMPUTE_KEYS = ("provider", "train")
_PROVIDER_KEYS = ("vendor", "region", "credentials", "cluster")
_TRAIN_KEYS = (
    "cpus",
    "gpus",
    "instance",
    "memory",
    "use_spot",
    "auto_resume",
    "nodes",
    "datastore_name",
    "datastore_version",
    "datastore_mount_dir",
    "scratch",
    "environment",
    "framework",
    "disk_size",
    "actions",
    "scale_down_seconds",
    "distributed",
    "dockerfile",
    "dependency_file_info",
)
_SCRATCH_KEYS = ("size_gb", "mount_path", "name")
_HYPER_KEYS = ("settings", "params")
_SETTINGS_KEYS = ("strategy", "trials", "seed")

# Grid keys gridctl recognises but cannot honour yet; a value that asks for nothing
# (null, false, 0, empty) is accepted so Grid's own example files still load.
_UNSUPPORTED = {
    "compute.provider.cluster": "use --credential and --region for your own AWS account",
    "compute.train.actions": "run setup commands from your script",
    "compute.train.scale_down_seconds": "instances stop as soon as their experiment ends",
    "compute.train.distributed": "each experiment runs on one node",
    "compute.train.dockerfile": "scripts run in the instance's Python environment",
    "compute.train.dependency_file_info": "install dependencies from your script",
}

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FLAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RunConfig:
    """What a config file asks of `gridctl run`; None where the file is silent."""

    name: str | None = None
    description: str | None = None
    cloud: str | None = None
    region: str | None = None
    credential: str | None = None
    cpus: float | None = None
    gpus: int | None = None
    instance_type: str | None = None
    memory: str | None = None
    use_spot: bool | None = None
    auto_resume: bool | None = None
    datastore_name: str | None = None
    datastore_version: int | None = None
    datastore_mount_dir: str | None = None
    scratch_size: int | None = None
    scratch_mount_path: str | None = None
    disk_size: int | None = None
    framework: str | None = None
    strategy: str | None = None
    trials: int | None = None
    seed: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    params: tuple[tuple[str, str], ...] = ()


def load_config(path: Path) -> RunConfig:
    """Read and check a Grid YAML config; every problem is one line naming file and key."""
    return _Reader(str(path)).run_config(_read_yaml(path))


def merge_params(script_args: list[str], params: Iterable[tuple[str, str]]) -> list[str]:
    """Script args plus `--flag value` for each config param the command line did not set."""
    merged = list(script_args)
    for flag, value in params:
        option = f"--{flag}"
        if not any(arg == option or arg.startswith(f"{option}=") for arg in script_args):
            merged += [option, value]
    return merged


def _read_yaml(path: Path) -> Any:
    import yaml

    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridctlError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise GridctlError(f"{src}: is a directory, not a YAML file") from None
    except PermissionError:
        raise GridctlError(f"{src}: cannot read it (permission denied)") from None
    except UnicodeDecodeError:
        raise GridctlError(f"{src}: not UTF-8 text") from None
    except OSError as exc:
        raise GridctlError(f"{src}: cannot read it ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and problem.startswith("but "):
            problem = f"{exc.context} {problem}"
        raise GridctlError(f"{src}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise GridctlError(f"{src}: not valid YAML: {' '.join(str(exc).split())}") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Reader:
    """Checks a parsed file against Grid's layout; `src` prefixes every error."""

    def __init__(self, src: str) -> None:
        self.src = src

    def fail(self, key: str, problem: str) -> NoReturn:
        raise GridctlError(f"{self.src}: {key} {problem}")

    def run_config(self, data: Any) -> RunConfig:
        if data is None:
            raise GridctlError(f"{self.src}: the file is empty")
        if not isinstance(data, dict):
            raise GridctlError(
                f"{self.src}: expected a mapping with compute and hyper_params sections, "
                f"found {_shown(data)}"
            )
        top = self.mapping("", data, _TOP_KEYS)
        compute = self.mapping("compute", top.get("compute"), _COMPUTE_KEYS)
        provider = self.mapping("compute.provider", compute.get("provider"), _PROVIDER_KEYS)
        train = self.mapping("compute.train", compute.get("train"), _TRAIN_KEYS)
        hyper = self.mapping("hyper_params", top.get("hyper_params"), _HYPER_KEYS)
        settings = self.mapping("hyper_params.settings", hyper.get("settings"), _SETTINGS_KEYS)
        self.refuse_unsupported("compute.provider", provider)
        self.refuse_unsupported("compute.train", train)
        self.nodes(train.get("nodes"))
        scratch_size, scratch_mount_path = self.scratch(train.get("scratch"))
        return RunConfig(
            name=self.run_name(top.get("name")),
            description=self.string("description", top.get("description")),
            cloud=self.choice("compute.provider.vendor", provider.get("vendor"), VENDORS),
            region=self.string("compute.provider.region", provider.get("region")),
            credential=self.string("compute.provider.credentials", provider.get("credentials")),
            cpus=self.positive_number("compute.train.cpus", train.get("cpus")),
            gpus=self.integer("compute.train.gpus", train.get("gpus"), minimum=0),
            instance_type=self.instance(train.get("instance")),
            memory=self.memory(train.get("memory")),
            use_spot=self.boolean("compute.train.use_spot", train.get("use_spot")),
            auto_resume=self.boolean("compute.train.auto_resume", train.get("auto_resume")),
            datastore_name=self.string("compute.train.datastore_name", train.get("datastore_name")),
            datastore_version=self.integer(
                "compute.train.datastore_version", train.get("datastore_version"), minimum=1
            ),
            datastore_mount_dir=self.absolute_path(
                "compute.train.datastore_mount_dir", train.get("datastore_mount_dir")
            ),
            scratch_size=scratch_size,
            scratch_mount_path=scratch_mount_path,
            disk_size=self.disk_size(train.get("disk_size")),
            framework=self.string("compute.train.framework", train.get("framework")),
            strategy=self.choice(
                "hyper_params.settings.strategy", settings.get("strategy"), STRATEGIES
            ),
            trials=self.integer("hyper_params.settings.trials", settings.get("trials"), minimum=1),
            seed=self.integer("hyper_params.settings.seed", settings.get("seed"), minimum=0),
            environment=self.environment(train.get("environment")),
            params=self.params(hyper.get("params")),
        )

    def mapping(self, key: str, value: Any, allowed: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, not {_shown(value)}")
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                path = f"{key}.{name}" if key else str(name)
                raise GridctlError(f"{self.src}: unknown key {path}{hint}")
        return value

    def refuse_unsupported(self, section: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            key = f"{section}.{name}"
            if key in _UNSUPPORTED and value not in (None, False, [], {}):
                self.fail(key, f"is not supported yet ({_UNSUPPORTED[key]}); remove it")

    def nodes(self, value: Any) -> None:
        nodes = self.integer("compute.train.nodes", value, minimum=0)
        if nodes is not None and nodes > 1:
            self.fail(
                "compute.train.nodes",
                f"{nodes} is not supported yet (each experiment runs on one node); "
                "remove it or set it to 1",
            )

    def string(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, not {_shown(value)}")
        return value

    def boolean(self, key: str, value: Any) -> bool | None:
        if value is not None and not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_shown(value)}")
        return value

    def integer(self, key: str, value: Any, *, minimum: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
            self.fail(key, f"must be {kind}, not {_shown(value)}")
        return value

    def positive_number(self, key: str, value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.fail(key, f"must be a positive number, not {_shown(value)}")
        return value

    def choice(self, key: str, value: Any, choices: Sequence[str]) -> str | None:
        if value is not None and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, not {_shown(value)}")
        return value

    def absolute_path(self, key: str, value: Any) -> str | None:
        text = self.string(key, value)
        if text is not None and not text.startswith("/"):
            self.fail(key, f"must be an absolute path, not {_shown(text)}")
        return text

    def run_name(self, value: Any) -> str | None:
        text = self.string("name", value)
        if text is None:
            return None
        try:
            return validate_run_name(text)
        except GridctlError as exc:
            self.fail("name:", exc.message)

    def instance(self, value: Any) -> str | None:
        text = self.string("compute.train.instance", value)
        if text is None:
            return None
        try:
            return resolve_instance_type(text).name
        except GridctlError as exc:
            self.fail("compute.train.instance:", exc.message)

    def memory(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail("compute.train.memory", f"must be a size such as 10G, not {_shown(value)}")
        text = str(value)
        parse_memory(text, label=f"{self.src}: compute.train.memory")
        return text

    def disk_size(self, value: Any) -> int | None:
        if value is None:
            return None
        try:
            return check_disk_size(value, label="compute.train.disk_size")
        except GridctlError as exc:
            raise GridctlError(f"{self.src}: {exc.message}") from None

    def scratch(self, value: Any) -> tuple[int | None, str | None]:
        key = "compute.train.scratch"
        if value is None or value == []:
            return None, None
        if not isinstance(value, list):
            self.fail(key, f"must be a list with one entry, not {_shown(value)}")
        if len(value) > 1:
            self.fail(key, f"has {len(value)} entries; gridctl supports one scratch space")
        entry = self.mapping(f"{key}[0]", value[0], _SCRATCH_KEYS)
        if entry.get("size_gb") is None:
            self.fail(f"{key}[0].size_gb", "is required")
        self.string(f"{key}[0].name", entry.get("name"))
        return (
            self.integer(f"{key}[0].size_gb", entry["size_gb"], minimum=1),
            self.absolute_path(f"{key}[0].mount_path", entry.get("mount_path")),
        )

    def environment(self, value: Any) -> dict[str, str]:
        key = "compute.train.environment"
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping of NAME: value, not {_shown(value)}")
        env = {}
        for name, item in value.items():
            if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
                self.fail(key, f"has {_shown(name)}, which is not a valid variable name")
            if isinstance(item, list | dict) or item is None:
                self.fail(
                    f"{key}.{name}", f"must be a string, number or boolean, not {_shown(item)}"
                )
            env[name] = str(item)
        return env

    def params(self, value: Any) -> tuple[tuple[str, str], ...]:
        key = "hyper_params.params"
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping of flag: value, not {_shown(value)}")
        params: dict[str, str] = {}
        for name, item in value.items():
            flag = name.lstrip("-") if isinstance(name, str) else ""
            if not _FLAG_RE.fullmatch(flag):
                self.fail(key, f"has {_shown(name)}, which is not a valid flag name")
            if flag in params:
                self.fail(key, f"sets the flag {flag} twice")
            params[flag] = self.param_value(f"{key}.{name}", item)
        return tuple(params.items())

    def param_value(self, key: str, value: Any) -> str:
        if value is None:
            self.fail(key, "has no value; give one, or remove the flag")
        if isinstance(value, list):
            if not value:
                self.fail(key, "is an empty list")
            for element in value:
                if not isinstance(element, str | int | float | bool):
                    self.fail(key, f"may list only strings, numbers and booleans, not {element!r}")
            return str(value)
        if not isinstance(value, str | int | float | bool):
            self.fail(
                key,
                f"must be a string, number, boolean or list of those, not {_shown(value)} "
                "(quote it to pass it as text)",
            )
        return str(value)
