"""The bundle's requirements.txt, installed once per machine for all its experiments."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from gridctl.agent.core.logs import note, stamp
from gridctl.agent.node.settings import NodeError


def install_requirements(exec_dir: Path, log: BinaryIO) -> None:
    """The bundle's requirements.txt, for the interpreter the agent runs (and puts first
    on the script's PATH), with pip's output in the experiment's log."""
    if not (exec_dir / "requirements.txt").is_file():
        return
    command = [sys.executable, "-m", "pip", "install", "-r", "requirements.txt"]
    note(log, "pip install -r requirements.txt")
    log.flush()
    proc = subprocess.Popen(
        command,
        cwd=exec_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    error = None
    with proc.stdout:
        for line in proc.stdout:
            log.write(stamp() + line.rstrip(b"\n") + b"\n")
            log.flush()
            if line.startswith(b"ERROR:"):
                error = line.decode(errors="replace").strip()
    code = proc.wait()
    if code != 0:
        detail = f": {error}" if error else ""
        raise NodeError(f"pip install -r requirements.txt failed (exit code {code}){detail}")


class Requirements:
    """``before_launch`` for every experiment of the node: the bundle's requirements.txt is
    installed once, by whichever experiment unpacks it first; the others wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[str, NodeError | None] = {}

    def __call__(self, exec_dir: Path, log: BinaryIO) -> None:
        path = exec_dir / "requirements.txt"
        if not path.is_file():
            return
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with self._lock:
            if digest in self._outcomes:
                note(log, "requirements.txt already installed on this node")
            else:
                try:
                    install_requirements(exec_dir, log)
                    self._outcomes[digest] = None
                except NodeError as exc:
                    self._outcomes[digest] = exc
            error = self._outcomes[digest]
        if error is not None:
            raise error
