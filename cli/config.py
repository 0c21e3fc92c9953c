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

from gridctl.cli import checks
from gridctl.cli.checks import Check, shown
from gridctl.cli.errors import GridctlError
from gridctl.cli.options import RUN_OPTIONS

NOT_OPTIONS = (
    "compute.provider.region",
    "compute.train.environment",
    "compute.train.scratch[0].name",
    "compute.train.dependency_file_info.package_manager",
    "hyper_params.params",
)
"""Keys that set no `run` option (the options' keys come from ``RUN_OPTIONS``)."""

# Grid keys gridctl recognises but cannot honour yet; a value that asks for nothing
# (null, false, 0, empty) is accepted so Grid's own example files still load.
_UNSUPPORTED = {
    "compute.provider.cluster": "use --credential and --region for your own AWS account",
    "compute.train.actions": "run setup commands from your script",
    "compute.train.scale_down_seconds": "instances stop as soon as their experiment ends",
    "compute.train.distributed": "set compute.train.nodes for a multi-node experiment",
    "compute.train.dockerfile": "scripts run in the instance's Python environment",
}

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FLAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SCRATCH = "compute.train.scratch"
_MANAGER = "compute.train.dependency_file_info.package_manager"
PACKAGE_MANAGERS = ("pip", "uv")
"""What Grid's ``package_manager`` may say: either installs the file the same way (conda
environments are not supported)."""


def _sections() -> dict[str, tuple[str, ...]]:
    """Each section of the file (``""`` the top, ``compute.train``) and the keys it may hold."""
    sections: dict[str, dict[str, None]] = {}
    configured = [o.config for o in RUN_OPTIONS if o.config is not None]
    for path in (*configured, *NOT_OPTIONS, *_UNSUPPORTED):
        parts = path.split(".")
        for depth in range(len(parts)):
            section = ".".join(parts[:depth])
            sections.setdefault(section, {})[parts[depth].removesuffix("[0]")] = None
    return {section: tuple(keys) for section, keys in sections.items()}


_SECTIONS = _sections()


@dataclass(frozen=True)
class RunConfig:
    """What a config file asks of `gridctl run`; ``values`` maps an option's name to the
    file's value, for the options the file sets."""

    values: dict[str, Any] = field(default_factory=dict)
    region: str | None = None
    script_env: dict[str, str] = field(default_factory=dict)
    """The script's environment variables (``compute.train.environment``)."""
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


class _Reader:
    """Checks a parsed file against Grid's layout; `src` prefixes every error."""

    def __init__(self, src: str) -> None:
        self.src = src

    def fail(self, key: str, problem: str) -> NoReturn:
        raise GridctlError(f"{self.src}: {key} {problem}")

    def check(self, check: Check | None, key: str, value: Any) -> Any:
        """``value`` as ``check`` makes it; None stays None (the file is silent)."""
        if value is None:
            return None
        assert check is not None, f"{key} sets an option but names no check"
        try:
            return check(key, value)
        except GridctlError as exc:
            raise GridctlError(f"{self.src}: {exc.message}") from None

    def run_config(self, data: Any) -> RunConfig:
        if data is None:
            raise GridctlError(f"{self.src}: the file is empty")
        if not isinstance(data, dict):
            raise GridctlError(
                f"{self.src}: expected a mapping with compute and hyper_params sections, "
                f"found {shown(data)}"
            )
        found: dict[str, Any] = {}
        self.section("", data, found)
        for key, reason in _UNSUPPORTED.items():
            if found.get(key) not in (None, False, [], {}):
                self.fail(key, f"is not supported yet ({reason}); remove it")
        if f"{_SCRATCH}[0]" in found and found.get(f"{_SCRATCH}[0].size_gb") is None:
            self.fail(f"{_SCRATCH}[0].size_gb", "is required")
        checked = {
            entry.name: self.check(entry.check, entry.config, found[entry.config])
            for entry in RUN_OPTIONS
            if entry.config is not None and found.get(entry.config) is not None
        }
        values = {name: value for name, value in checked.items() if value is not None}
        self.check(checks.text, f"{_SCRATCH}[0].name", found.get(f"{_SCRATCH}[0].name"))
        self.check(checks.choice(PACKAGE_MANAGERS), _MANAGER, found.get(_MANAGER))
        return RunConfig(
            values=values,
            region=self.check(
                checks.text, "compute.provider.region", found.get("compute.provider.region")
            ),
            script_env=self.script_env(found.get("compute.train.environment")),
            params=self.params(found.get("hyper_params.params")),
        )

    def section(self, key: str, value: Any, found: dict[str, Any]) -> None:
        """Every key of the section at ``key``, its subsections' keys too, into ``found``."""
        for name, item in self.mapping(key, value, _SECTIONS[key]).items():
            path = f"{key}.{name}" if key else str(name)
            found[path] = item
            if path in _SECTIONS:
                self.section(path, item, found)
            elif f"{path}[0]" in _SECTIONS:
                for entry in self.single(path, item):
                    found[f"{path}[0]"] = entry
                    self.section(f"{path}[0]", entry, found)

    def mapping(self, key: str, value: Any, allowed: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, not {shown(value)}")
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                path = f"{key}.{name}" if key else str(name)
                raise GridctlError(f"{self.src}: unknown key {path}{hint}")
        return value

    def single(self, key: str, value: Any) -> list[Any]:
        """A list that Grid allows several entries in (scratch spaces), held to one."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"must be a list with one entry, not {shown(value)}")
        if len(value) > 1:
            self.fail(key, f"has {len(value)} entries; gridctl supports one scratch space")
        return value

    def script_env(self, value: Any) -> dict[str, str]:
        key = "compute.train.environment"
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping of NAME: value, not {shown(value)}")
        env = {}
        for name, item in value.items():
            if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
                self.fail(key, f"has {shown(name)}, which is not a valid variable name")
            if isinstance(item, list | dict) or item is None:
                self.fail(
                    f"{key}.{name}", f"must be a string, number or boolean, not {shown(item)}"
                )
            env[name] = str(item)
        return env

    def params(self, value: Any) -> tuple[tuple[str, str], ...]:
        key = "hyper_params.params"
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping of flag: value, not {shown(value)}")
        params: dict[str, str] = {}
        for name, item in value.items():
            flag = name.lstrip("-") if isinstance(name, str) else ""
            if not _FLAG_RE.fullmatch(flag):
                self.fail(key, f"has {shown(name)}, which is not a valid flag name")
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
                f"must be a string, number, boolean or list of those, not {shown(value)} "
                "(quote it to pass it as text)",
            )
        return str(value)
