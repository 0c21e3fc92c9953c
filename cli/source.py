"""Where a run's code comes from (SPEC sections 4 and 10): the project folder as it is, or a
commit of a repository, and what the run records of its origin."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.spec import Source
from gridctl.cli import git, giturl
from gridctl.cli.errors import GridctlError
from gridctl.cli.options import RunSettings

_NAMES_SHOWN = 3


@dataclass(frozen=True)
class Code:
    """What a run bundles: a folder and its script, and where they came from."""

    root: Path
    script: Path
    """The script's file, inside ``root``."""
    source: Source | None = None
    warnings: tuple[str, ...] = ()


def project_folder(settings: RunSettings, script: str) -> Code:
    """``--localdir`` (or the current directory) as it is, its origin unknown."""
    root = (settings.localdir or Path.cwd()).absolute()
    if not root.is_dir():
        raise GridctlError(f"--localdir {root} is not a directory")
    return Code(root, _script_path(script, root))


def _script_path(script: str, root: Path) -> Path:
    """The script as typed (from the current directory) or, failing that, from the root."""
    for candidate in (Path(script).absolute(), root / script):
        if candidate.is_file():
            return candidate
    raise GridctlError(f"script not found: {script}")


def locate(settings: RunSettings, script: str, home: Path) -> Code:
    """The code a run ships: a repository's commit for ``--git`` or a GitHub file link as
    SCRIPT, else the project folder, with its commit when it lies in a git work tree."""
    link = giturl.parse_file_link(script)
    if link is not None or settings.git is not None:
        if settings.localdir is not None:
            raise GridctlError("--localdir and --git both say where the code is: give one of them")
        if link is not None and settings.git is not None:
            raise GridctlError(
                f"{link.remote.shown}/blob/... names its repository itself: drop --git"
            )
        if link is not None:
            checkout, path = git.check_out_link(link, home)
            return _in_checkout(checkout, path)
        assert settings.git is not None
        return _in_checkout(git.check_out(giturl.parse_remote(settings.git), home), script)
    code = project_folder(settings, script)
    found = git.describe(code.root)
    if found is None:
        return code
    warnings = () if settings.ignore_warnings else _warnings(found)
    return dataclasses.replace(code, source=found.source, warnings=warnings)


def _in_checkout(checkout: git.Checkout, script: str) -> Code:
    path = giturl.script_in_tree(script)
    found = checkout.tree / path
    if not found.is_file():
        source = checkout.source
        raise GridctlError(
            f"script {path} is not in {source.git_url} at {source.ref} ({source.short})"
        )
    return Code(checkout.tree, found, checkout.source)


def _warnings(found: git.WorkTree) -> tuple[str, ...]:
    """Grid's two warnings about a work tree: changes not committed, a commit not pushed."""
    source = found.source
    commit = source.short
    said = []
    if found.changed:
        names = ", ".join(found.changed[:_NAMES_SHOWN])
        more = len(found.changed) - _NAMES_SHOWN
        names += f" and {more} more" if more > 0 else ""
        said.append(f"uncommitted changes go with this run but are not in commit {commit}: {names}")
    if found.pushed is False:
        said.append(
            f"commit {commit} is not on {source.git_url} yet: push it so that others can find"
            " the code this run used"
        )
    return tuple(said)
