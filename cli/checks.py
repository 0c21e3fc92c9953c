"""Checks for one value of a Grid YAML file each: the value as gridctl keeps it, or a
GridctlError that names the key (the reader adds the file name).

A check takes the key and the parsed YAML value, never None (an absent key is not checked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from gridctl.cli.errors import GridctlError

Check = Callable[[str, Any], Any]


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def fail(key: str, problem: str) -> NoReturn:
    raise GridctlError(f"{key} {problem}")


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        fail(key, f"must be a non-empty string, not {shown(value)}")
    return value


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(key, f"must be true or false, not {shown(value)}")
    return value


def whole_number(minimum: int) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
            fail(key, f"must be {kind}, not {shown(value)}")
        return value

    return check


def positive_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        fail(key, f"must be a positive number, not {shown(value)}")
    return value


def choice(choices: Sequence[str]) -> Check:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            fail(key, f"must be one of {', '.join(choices)}, not {shown(value)}")
        return value

    return check


def absolute_path(key: str, value: Any) -> str:
    path = text(key, value)
    if not path.startswith("/"):
        fail(key, f"must be an absolute path, not {shown(path)}")
    return path


# The checks that need the instance catalogue, run names or sweeps import them when they
# run: the option table is built at every start, `gridctl --help` included.


def run_name(key: str, value: Any) -> str:
    from gridctl.cli.names import validate_run_name

    name = text(key, value)
    try:
        return validate_run_name(name)
    except GridctlError as exc:
        raise GridctlError(f"{key}: {exc.message}") from None


def instance(key: str, value: Any) -> str:
    """A Grid nickname (1_v100_16gb) becomes its AWS type name."""
    from gridctl.cli.machines import resolve_instance_type

    name = text(key, value)
    try:
        return resolve_instance_type(name).name
    except GridctlError as exc:
        raise GridctlError(f"{key}: {exc.message}") from None


def memory(key: str, value: Any) -> str:
    from gridctl.cli.machines import parse_memory

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        fail(key, f"must be a size such as 10G, not {shown(value)}")
    size = str(value)
    parse_memory(size, label=key)
    return size


def disk_size(key: str, value: Any) -> int:
    from gridctl.cli.machines import check_disk_size

    return check_disk_size(value, label=key)


def strategy(key: str, value: Any) -> str:
    from gridctl.cli.sweep import STRATEGIES

    return choice(STRATEGIES)(key, value)


def nodes(key: str, value: Any) -> int | None:
    """Grid's own files say ``nodes: 0`` for "not multi-node": that asks for nothing."""
    from gridctl.cli.nodes import check_count

    count = whole_number(0)(key, value)
    return check_count(count, key) if count else None


def duration(key: str, value: Any) -> str:
    """``90s``, ``30m``, ``2h``: kept as written, since the flag is read the same way."""
    from gridctl.agent.core.guards import GuardError, parse_duration

    if not isinstance(value, str):
        fail(key, f"must be a duration such as 90s, 30m or 2h, not {shown(value)}")
    try:
        parse_duration(value, key)
    except GuardError as exc:
        raise GridctlError(str(exc)) from None
    return value


def budget(key: str, value: Any) -> float:
    from gridctl.agent.core.guards import GuardError, check_budget

    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(key, f"must be an amount of USD such as 25 or 0.5, not {shown(value)}")
    try:
        return check_budget(value, key)
    except GuardError as exc:
        raise GridctlError(str(exc)) from None
