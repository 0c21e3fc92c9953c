"""Upstream repositories for the ``--git`` tests: a bare repository that stands for a remote
(GitHub, a colleague's server) and the commits, branches and tags a test pushes to it.

Everything here runs git hermetically (no user or system config, fixed identities and dates),
so a repository's commits have the same shas on every machine and every run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

EPOCH = 1_700_000_000
"""The date of the first commit; each later commit is one minute younger, so that shas are
reproducible yet every commit has a date of its own."""

TRAIN_PY = """\
import sys
from pathlib import Path

version = (Path(__file__).parent / "version.txt").read_text().strip()
print("argv:", " ".join(sys.argv[1:]))
print("version:", version)
"""
"""The initial commit's script: what it prints names the arguments and the commit it ran."""

MNIST_MAIN_PY = """\
import sys

print("mnist:", " ".join(sys.argv[1:]))
"""

INITIAL_FILES: Mapping[str, str | bytes] = {
    "train.py": TRAIN_PY,
    "version.txt": "1\n",
    ".gridignore": "data/\n",
    "data/big.bin": bytes(range(256)) * 64,
    "mnist/main.py": MNIST_MAIN_PY,
}
"""What the ``upstream`` fixture's first commit holds: a script, a file it reads, an ignore
file that must keep ``data/`` out of the bundle, and a script in a subfolder."""


def hermetic_git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the harness's own git calls: nothing from the caller's git
    variables, global or system config may change what gets committed or served."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and "ASKPASS" not in k}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    env.update(extra or {})
    return env


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Runs git and returns its stripped stdout; a failure raises with git's own message."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=hermetic_git_env() if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout.strip()


class Upstream:
    """A bare repository ``<directory>/<name>.git`` plus a private work clone that makes the
    commits and pushes them, the way a colleague would; tests only ever read the bare one."""

    def __init__(self, directory: Path, name: str = "project") -> None:
        self.name = name
        self._bare = directory / f"{name}.git"
        self._work = directory / f"{name}.work"
        self._commits = 0
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self._bare))
        # GitHub serves any commit reachable from a ref, whatever protocol version the client
        # speaks; git's default serves one to protocol v2 clients only.
        git("--git-dir", str(self._bare), "config", "uploadpack.allowReachableSHA1InWant", "true")
        git("init", "--quiet", "--initial-branch=main", str(self._work))
        self._git("remote", "add", "origin", str(self._bare))

    @property
    def bare(self) -> Path:
        return self._bare

    @property
    def file_url(self) -> str:
        return self._bare.as_uri()

    @property
    def branch_name(self) -> str:
        """The branch the next commit goes to."""
        return self._git("symbolic-ref", "--short", "HEAD")

    def sha(self, ref: str = "HEAD") -> str:
        """The full commit sha a ref names in the work clone (tags peeled)."""
        return self._git("rev-parse", "--verify", f"{ref}^{{commit}}")

    def commit(
        self,
        files: Mapping[str, str | bytes],
        message: str = "Change files",
        executable: set[str] | frozenset[str] = frozenset(),
        delete: tuple[str, ...] = (),
    ) -> str:
        """Writes ``files`` (paths relative to the root), marks ``executable`` ones +x, removes
        ``delete``, commits on the current branch, pushes it and returns the full sha."""
        for path, content in files.items():
            target = self._work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        for path in executable:
            target = self._work / path
            target.chmod(target.stat().st_mode | 0o111)
        if delete:
            self._git("rm", "--quiet", "-r", "--", *delete)
        self._git("add", "--all")
        date = f"@{EPOCH + 60 * self._commits} +0000"
        self._commits += 1
        dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        self._git("commit", "--quiet", "--allow-empty", "-m", message, env=dates)
        self._push(f"HEAD:refs/heads/{self.branch_name}")
        return self.sha()

    def branch(self, name: str, at: str | None = None) -> str:
        """Creates and pushes branch ``name`` at ``at`` (default: the current commit) and makes
        it current for the next commits; returns the sha it points at."""
        self._git("switch", "--quiet", "-c", name, *([at] if at else []))
        self._push(f"HEAD:refs/heads/{name}")
        return self.sha()

    def checkout(self, name: str) -> None:
        """Makes an existing branch current for the next commits."""
        self._git("switch", "--quiet", name)

    def tag(self, name: str, at: str | None = None, annotated: bool = False) -> str:
        """Creates and pushes tag ``name`` (annotated: a tag object of its own, which remotes
        list with a peeled ``^{}`` line); returns the commit sha it names."""
        options = ["-a", "-m", f"Release {name}"] if annotated else []
        date = f"@{EPOCH} +0000"
        self._git("tag", *options, name, at or "HEAD", env={"GIT_COMMITTER_DATE": date})
        self._push(f"refs/tags/{name}")
        return self.sha(name)

    def set_head(self, branch: str) -> None:
        """Makes ``branch`` the remote's default branch (what a clone checks out)."""
        git("--git-dir", str(self._bare), "symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def _push(self, refspec: str) -> None:
        self._git("push", "--quiet", "--force", "origin", refspec)

    def _git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        identity = {
            "GIT_AUTHOR_NAME": "Ada Upstream",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada Upstream",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
        }
        return git(*args, cwd=self._work, env=hermetic_git_env({**identity, **(env or {})}))


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    """A remote with one commit on ``main`` holding ``INITIAL_FILES``."""
    repo = Upstream(tmp_path / "remotes")
    repo.commit(INITIAL_FILES, message="Initial commit")
    return repo
