"""``systemctl`` on a simulated node, which has no systemd: every call is recorded in
``$GRIDCTL_NODE_ROOT/var/lib/shims/systemctl.jsonl``; ``start`` (and ``enable --now``) of a
service runs its unit file's ExecStart with its Environment= and StandardOutput=append:,
in the background (or to the end for Type=oneshot), and ``stop`` does what KillMode=mixed
does: SIGTERM to the main process, SIGKILL to what is left after TimeoutStopSec; ``show
--property=ActiveState`` tells whether the main process lives. Timers are recorded only; a
test starts their service when it wants them to fire."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(os.environ["GRIDCTL_NODE_ROOT"])
UNITS = ROOT / "etc" / "systemd" / "system"
PIDS = ROOT / "run" / "shims"


def record(argv: list[str]) -> None:
    log = ROOT / "var" / "lib" / "shims" / "systemctl.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(argv) + "\n")


def unit(name: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit file, each key's values in order."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(name: str) -> int:
    if not name.endswith(".service"):
        return 0
    settings = unit(name)
    env = dict(os.environ)
    env.update(value.split("=", 1) for value in settings.get("Environment", []))
    output = settings["StandardOutput"][0].removeprefix("append:")
    (command,) = settings["ExecStart"]
    PIDS.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as out:
        process = subprocess.Popen(
            shlex.split(command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
    (PIDS / f"{name}.pid").write_text(str(process.pid))
    if settings.get("Type") == ["oneshot"]:
        return process.wait()
    return 0


def stop(name: str) -> int:
    try:
        pid = int((PIDS / f"{name}.pid").read_text())
    except FileNotFoundError:
        return 0
    settings = unit(name)
    assert settings.get("KillMode") == ["mixed"], "only KillMode=mixed is simulated"
    try:  # the unit's cgroup, as far as a process tree can tell
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + float(settings["TimeoutStopSec"][0])
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.kill()
    return 0


def show(name: str) -> int:
    """``show --property=ActiveState --value``: a unit whose process lives is active."""
    try:
        pid = int((PIDS / f"{name}.pid").read_text())
    except FileNotFoundError:
        pid = None
    print("active" if pid is not None and alive(pid) else "inactive")
    return 0


def main(argv: list[str]) -> int:
    record(argv)
    verb, *rest = argv
    names = [arg for arg in rest if not arg.startswith("--")]
    if verb == "daemon-reload":
        return 0
    if verb == "start" or (verb == "enable" and "--now" in rest):
        return max((start(n) for n in names), default=0)
    if verb == "enable":
        return 0
    if verb == "stop":
        return max((stop(n) for n in names), default=0)
    if verb == "show" and "--property=ActiveState" in rest:
        return show(names[0])
    sys.stderr.write(f"systemctl shim: unsupported call: {argv}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
