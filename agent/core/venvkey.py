"""What a script's Python environment (its venv) is made of, and the key it is cached by.

Two venvs with the same key are interchangeable: the same dependency files over the same
base interpreter on the same image and architecture. The key is content-addressed, so a
changed requirements file, another Python or another AMI simply makes a new venv, and
nothing ever has to be invalidated. Standard library only, no I/O: the key is a pure
function of its inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

KEY_FORMAT = "gridctl-venv-v1"
"""Changes whenever what a cached venv holds or how it is laid out changes, so that an
older agent's archives are never taken for a newer one's."""
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
UV_LOCK = "uv.lock"


class DependencyFileError(ValueError):
    """``--dependency_file`` names no file of the bundle, or one outside it."""


@dataclass(frozen=True)
class BasePython:
    """The interpreter a venv layers over: everything it has stays importable, the venv's
    own packages first."""

    executable: Path
    """The real interpreter the venv is made from (a venv's own base, never a shim)."""
    version: str
    """``cpython-3.11.7``."""
    site_packages: tuple[str, ...]
    """Appended to the venv's ``sys.path`` by a ``.pth`` file."""
    identity: str
    """Which installation this is, as every machine of the image names it (on a node, its
    path under the node's root): part of the key, since its packages are what the venv
    skipped installing."""
    image: str = "local"
    """The AMI id on a node, ``local`` locally."""
    arch: str = ""
    """``platform.machine()``."""

    @property
    def bin_dir(self) -> Path:
        return self.executable.parent


def dependency_files(exec_dir: Path, named: str | None) -> tuple[Path, ...]:
    """The bundle's files a venv is built from, relative to ``exec_dir``: ``named``
    (``--dependency_file``) when given, else ``requirements.txt``, else ``pyproject.toml``
    (with ``uv.lock`` beside it when there is one); none when the bundle has none."""
    if named is not None:
        relative = PurePosixPath(named)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise DependencyFileError(f"--dependency_file {named} is not inside the project")
        if not (exec_dir / relative).is_file():
            raise DependencyFileError(f"--dependency_file {named} is not in the project")
        found = [Path(relative)]
        if relative.name == PYPROJECT and (exec_dir / relative.parent / UV_LOCK).is_file():
            found.append(Path(relative.parent / UV_LOCK))
        return tuple(found)
    if (exec_dir / REQUIREMENTS).is_file():
        return (Path(REQUIREMENTS),)
    if (exec_dir / PYPROJECT).is_file():
        if (exec_dir / UV_LOCK).is_file():
            return (Path(PYPROJECT), Path(UV_LOCK))
        return (Path(PYPROJECT),)
    return ()


def venv_key(files: Sequence[tuple[str, bytes]], base: BasePython) -> str:
    """sha256 of a canonical JSON of every input: each dependency file's path (relative to
    the bundle) and content hash, in path order, and the base's version, identity, image
    and architecture."""
    document = {
        "format": KEY_FORMAT,
        "files": sorted([path, hashlib.sha256(data).hexdigest()] for path, data in files),
        "python": base.version,
        "base": base.identity,
        "image": base.image,
        "arch": base.arch,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
