"""Which interpreter a node's scripts run on: the base their venvs layer over.

A framework AMI's own Python comes first, so ``import torch`` works with no install: the
AWS Deep Learning AMI GPU PyTorch images keep theirs at ``/opt/pytorch/bin/python`` (their
release notes' ``python_location``), older DLAMIs at ``/opt/conda/bin/python``. Otherwise
the newest system ``python3.N`` (N >= 10), else the interpreter the agent's own venv was
made from. Never the agent's venv itself: the user's packages and the agent's stay apart.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

FRAMEWORKS = ("opt/pytorch/bin/python", "opt/conda/bin/python")
"""Relative to the node's root, in order of preference."""
SYSTEM_DIRS = ("usr/local/bin", "usr/bin")
OLDEST = (3, 10)
_VERSIONED = re.compile(r"python3\.(\d+)")


def base_python(root: Path) -> Path:
    """The node's base interpreter; every path is looked for under ``root``."""
    for relative in FRAMEWORKS:
        candidate = root / relative
        if _runnable(candidate):
            return candidate
    found: list[tuple[int, Path]] = []
    for folder in SYSTEM_DIRS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            match = _VERSIONED.fullmatch(entry.name)
            if match and (3, int(match.group(1))) >= OLDEST and _runnable(entry):
                found.append((int(match.group(1)), entry))
    if found:
        return max(found, key=lambda pair: pair[0])[1]
    return Path(getattr(sys, "_base_executable", sys.executable))


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
