"""Driving the ``terraform`` binary: one command at a time, output to a log file.

python-terraform builds the command lines. Its ``cmd()`` takes the process's variables
from ``os.environ`` alone and cannot stream output (0.10.1 leaks ``-synchronous`` into argv
when asked not to wait), so the process itself is run here, with per-call variables
(``TF_DATA_DIR``, ``TF_WORKSPACE``, the account's), and each resource it finishes
reported as progress.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gridctl.agent.core.progress import Progress
from gridctl.infra.errors import InfraError

# The S3 backend's use_lockfile, which locks run and environment state, came in 1.10.
MINIMUM_VERSION = (1, 10)
INSTALL = "https://developer.hashicorp.com/terraform/install"
MISSING = (
    f"terraform was not found on PATH: install Terraform"
    f" {'.'.join(map(str, MINIMUM_VERSION))} or newer ({INSTALL})"
)
_ERROR = re.compile(r"^(?:│\s*)?Error: (.*)$")
_DETAIL = re.compile(r"^(?:│\s*)(\S.*)$")

LOCK_TIMEOUT = "120s"

_FINISHED = re.compile(r"^(\S+): (Creat|Destroy|Modif|Read)\w* complete")
_DONE = {"Creat": "created", "Destroy": "destroyed", "Modif": "modified", "Read": "read"}


@dataclass(frozen=True)
class Workdir:
    """A root module directory and how Terraform should treat it."""

    path: Path
    log_path: Path
    data_dir: Path | None = None
    workspace: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if found is None:
        raise InfraError(MISSING)
    return found


@functools.cache
def check_version() -> str:
    """The version of the ``terraform`` on PATH; refuses one older than MINIMUM_VERSION.
    Asked once per process (each call starts Terraform)."""
    binary = terraform_binary()
    needed = ".".join(map(str, MINIMUM_VERSION))
    try:
        out = subprocess.run(
            [binary, "version", "-json"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        version = str(json.loads(out)["terraform_version"])
        found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        raise InfraError(
            f"cannot tell the version of {binary} ('terraform version -json' failed):"
            f" gridctl needs Terraform {needed} or newer ({INSTALL})"
        ) from None
    if len(found) < 2 or found < MINIMUM_VERSION:
        raise InfraError(
            f"terraform {version} ({binary}) is too old: gridctl needs Terraform {needed} or"
            f" newer, for state locking in S3 ({INSTALL})"
        )
    return version


def summarize_error(output: str) -> str:
    """Terraform's own first error, with its first detail line, as one line."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        match = _ERROR.match(line.strip())
        if match:
            detail = next((m.group(1) for m in map(_DETAIL.match, lines[i + 1 : i + 6]) if m), "")
            return f"{match.group(1)}" + (f": {detail}" if detail else "")
    tail = [line for line in lines if line.strip()]
    return tail[-1] if tail else "terraform failed"


def run(
    workdir: Workdir,
    command: str,
    *args: str,
    progress: Progress | None = None,
    **options,
) -> str:
    """Run one Terraform command; returns its stdout, raises InfraError with its error."""
    from python_terraform import IsFlagged, Terraform

    tf = Terraform(working_dir=str(workdir.path), terraform_bin_path=terraform_binary())
    options.setdefault("no_color", IsFlagged)
    if command in ("apply", "destroy", "init", "plan"):
        options.setdefault("input", False)
    if command in ("apply", "destroy"):
        # Wait for a run's other Terraform (a teammate's, an interrupted one) to let go.
        options.setdefault("lock_timeout", LOCK_TIMEOUT)
    argv: Sequence[str] = tf.generate_cmd_string(command, *args, **options)
    env = {**os.environ, **workdir.env, "TF_IN_AUTOMATION": "1"}
    if workdir.data_dir is not None:
        env["TF_DATA_DIR"] = str(workdir.data_dir)
    if workdir.workspace is not None:
        env["TF_WORKSPACE"] = workdir.workspace
    workdir.log_path.parent.mkdir(parents=True, exist_ok=True)
    captured: list[str] = []
    finished = 0
    with workdir.log_path.open("a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=workdir.path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                captured.append(line)
                match = _FINISHED.match(line)
                if match and progress is not None:
                    finished += 1
                    progress(f"{match.group(1)} {_DONE[match.group(2)]}", finished, None)
            code = proc.wait()
        except KeyboardInterrupt:
            # Terraform got the same Ctrl-C: let it stop cleanly, so that its state is saved
            # and its lock released before anyone (gridctl delete) needs them.
            log.write("[interrupted: waiting for terraform to stop]\n")
            log.write(proc.communicate()[0] or "")
            log.write(f"[exit {proc.returncode}]\n")
            raise
        log.write(f"[exit {code}]\n")
    output = "".join(captured)
    if code != 0:
        raise InfraError(
            f"terraform {command} failed: {summarize_error(output)} (log: {workdir.log_path})",
            exit_code=1,
        )
    return output
