"""The user's own git, asked on the user's machine: which commit a remote's ref names, that
commit's files, and where a work tree came from (SPEC section 10).

git runs with the user's configuration and credentials (ssh agent, credential helpers), so
nodes never need one. It never prompts: it has no terminal, ``GIT_TERMINAL_PROMPT=0`` and a
timeout, so a private URL without a credential fails at once instead of hanging the CLI.
Whatever git says passes through the URL's scrub before it reaches the user.

Commits are fetched shallowly, one at a time, into a bare repository per remote under
GRIDCTL_HOME, and each commit's files are checked out once into a folder of their own, which
the ordinary bundle path then ships: an unchanged commit makes the same bundle, uploaded once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.spec import Source
from gridctl.cli.errors import GridctlError
from gridctl.cli.giturl import FileLink, Remote, looks_like_commit, redact

TIMEOUT_VARIABLE = "GRIDCTL_GIT_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
"""Seconds one git command may take (a fetch of a big commit over a slow link included)."""
REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
)
"""Point git at a repository: the user's shell may set them, the cache must not see them."""
_NAMES_SHOWN = 3
_LONGEST = 300
_BOILERPLATE = {
    "fatal: Could not read from remote repository.",
    "Please make sure you have the correct access rights",
    "and the repository exists.",
}
"""git's advice after any failed connection, which says nothing of this one."""
_KEPT = "refs/gridctl/commits"
"""Every fetched commit keeps a ref here, so no gc of the cache drops it."""


@dataclass(frozen=True)
class Checkout:
    """A commit's files, ready to bundle, and what the run records of them."""

    tree: Path
    source: Source


@dataclass(frozen=True)
class Refs:
    """What a remote advertises: each ref's commit (a tag's peeled to its commit) and the
    branch its HEAD names."""

    commits: dict[str, str]
    head: str | None

    def find(self, ref: str) -> str | None:
        """The full name ``ref`` means, in git's order: itself, a tag, a branch."""
        for name in (ref, f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
            if name.startswith("refs/") and name in self.commits:
                return name
        return None

    def short_names(self) -> list[str]:
        prefixes = ("refs/heads/", "refs/tags/")
        return sorted(n.split("/", 2)[2] for n in self.commits if n.startswith(prefixes))


class Git:
    """Runs git for one remote (or none), never prompting, its output scrubbed."""

    def __init__(self, remote: Remote | None = None, timeout: float | None = None) -> None:
        self.remote = remote
        self.timeout = timeout if timeout is not None else _timeout()

    def __call__(
        self,
        args: Sequence[str],
        *,
        what: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        repository: bool = False,
    ) -> str:
        """git's stdout; a failure is a GridctlError ``what: <git's last words>``.

        ``repository``: the command names its repository itself (``--git-dir``), so the
        user's ``GIT_DIR`` and the like are kept from it."""
        full = {**os.environ, **(env or {})}
        if repository:
            for name in REPOSITORY_VARIABLES:
                if env is None or name not in env:
                    full.pop(name, None)
        full.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C")
        try:
            process = subprocess.Popen(
                ["git", *args],
                cwd=cwd,
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # No controlling terminal: neither git nor ssh can ask for a password.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise GridctlError(f"{what}: git is not installed (it is needed here)") from None
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise GridctlError(
                f"{what}: git gave no answer in {self.timeout:g} s"
                f" ({TIMEOUT_VARIABLE} sets how long to wait)"
            ) from None
        if process.returncode != 0:
            raise GridctlError(f"{what}: {self._last_words(err)}")
        return out.decode("utf-8", "replace")

    def _last_words(self, err: bytes) -> str:
        """What git said went wrong, as one scrubbed line, without its hints and advice."""
        lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines()]
        said = [
            line.removeprefix("fatal: ").removeprefix("error: ")
            for line in lines
            if line and not line.startswith("hint:") and line not in _BOILERPLATE
        ]
        text = " ".join(said) or "git failed"
        if len(text) > _LONGEST:
            text = text[: _LONGEST - 3] + "..."
        return self.remote.scrub(text) if self.remote else text


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_VARIABLE)
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise GridctlError(f"{TIMEOUT_VARIABLE}={value!r}: give a number of seconds above 0")
    return seconds


def advertised(remote: Remote, git: Git) -> Refs:
    """The remote's refs (``git ls-remote``): one round trip, nothing downloaded."""
    text = git(["ls-remote", "--symref", "--", remote.url], what=f"cannot read {remote.shown}")
    commits: dict[str, str] = {}
    head = None
    for line in text.splitlines():
        value, _, name = line.partition("\t")
        if value.startswith("ref: ") and name == "HEAD":
            head = value.removeprefix("ref: ")
        elif name.endswith("^{}"):
            commits[name.removesuffix("^{}")] = value  # the tag's commit, not the tag
        else:
            commits.setdefault(name, value)
    return Refs(commits, head)


def check_out(remote: Remote, home: Path) -> Checkout:
    """``remote.ref``'s commit (the default branch's when None), fetched and checked out."""
    git = Git(remote)
    refs = advertised(remote, git)
    return _check_out(remote, remote.ref, refs, home, git)


def check_out_link(link: FileLink, home: Path) -> tuple[Checkout, str]:
    """The commit a GitHub file link names, and the file's path in it: the link's first
    segments that are a ref of the remote (or a commit) are the ref."""
    git = Git(link.remote)
    refs = advertised(link.remote, git)
    for ref, path in link.splits():
        if refs.find(ref) or looks_like_commit(ref):
            return _check_out(link.remote, ref, refs, home, git), path
    raise GridctlError(
        f"{link.remote.shown} has no branch or tag {link.segments[0]!r}"
        f"{_known(refs, link.segments[0])}"
    )


def _check_out(remote: Remote, ref: str | None, refs: Refs, home: Path, git: Git) -> Checkout:
    cache = _Cache(home / "cache" / "git", remote, git)
    with cache.locked():
        commit, name = _resolve(remote, ref, refs, cache)
        commit = cache.fetch(commit, name)
        tree = cache.tree(commit)
    shown_ref = ref if ref is not None else (refs.head or "HEAD").removeprefix("refs/heads/")
    return Checkout(tree, Source(git_url=remote.shown, ref=shown_ref, commit=commit, dirty=False))


def _resolve(remote: Remote, ref: str | None, refs: Refs, cache: _Cache) -> tuple[str, str | None]:
    """The commit ``ref`` names, and the remote ref that holds it (None: asked by commit)."""
    if ref is None:
        if "HEAD" not in refs.commits:
            raise GridctlError(f"{remote.shown} has no commits (or no default branch): add @REF")
        return refs.commits["HEAD"], "HEAD"
    name = refs.find(ref)
    if name is not None:
        return refs.commits[name], name
    if looks_like_commit(ref):
        return _commit(remote, ref.lower(), refs, cache), None
    raise GridctlError(f"{remote.shown} has no branch, tag or commit {ref!r}{_known(refs, ref)}")


def _commit(remote: Remote, ref: str, refs: Refs, cache: _Cache) -> str:
    """The commit a (possibly short) hex ref names: a full one as is; a short one from the
    advertised tips, else from the remote's whole history, fetched once into the cache."""
    if len(ref) == 40:
        return ref
    tips = {c for c in refs.commits.values() if c.startswith(ref)}
    if len(tips) == 1:
        return tips.pop()
    found = cache.lookup(ref)
    if found is None:
        cache.fetch_history()
        found = cache.lookup(ref)
    if found is None:
        raise GridctlError(f"{remote.shown} has no branch, tag or commit {ref!r}")
    return found


def _known(refs: Refs, ref: str) -> str:
    """`` (it has main, v1 and 3 more)``: the names closest to ``ref`` first."""
    import difflib

    names = refs.short_names()
    if not names:
        return ""
    close = difflib.get_close_matches(ref, names, n=_NAMES_SHOWN, cutoff=0.0)
    more = len(names) - len(close)
    return f" (it has {', '.join(close)}{f' and {more} more' if more > 0 else ''})"


class _Cache:
    """A bare repository of one remote's fetched commits, and every commit's checked-out
    files. The repository is keyed by the URL without credentials: a token never names a
    file, and a renewed token reuses what an older one fetched."""

    def __init__(self, base: Path, remote: Remote, git: Git) -> None:
        key = hashlib.sha256(remote.shown.encode()).hexdigest()[:24]
        self.repo = base / "repos" / key
        self.trees = base / "trees"
        self.remote = remote
        self.git = git

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One gridctl at a time fetches into a repository (git's shallow file is not shared)."""
        self.repo.parent.mkdir(parents=True, exist_ok=True)
        with open(self.repo.parent / f"{self.repo.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (self.repo / "HEAD").exists():
                self._git(["init", "--quiet", "--bare", str(self.repo)], "cannot make a cache")
            yield

    def _git(self, args: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
        return self.git(args, what=what, env=env, repository=True)

    def _in_repo(self, args: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
        return self._git(["--git-dir", str(self.repo), *args], what, env)

    def has(self, commit: str) -> bool:
        try:
            self._in_repo(["cat-file", "-e", f"{commit}^{{commit}}"], "")
        except GridctlError:
            return False
        return True

    def lookup(self, short: str) -> str | None:
        """The one commit of the cache whose id starts with ``short``; None when there is none;
        an error naming the ambiguity when there are several."""
        try:
            found = self._in_repo(["rev-parse", "--verify", "--quiet", f"{short}^{{commit}}"], "")
        except GridctlError as exc:
            if "ambiguous" in str(exc):
                raise GridctlError(
                    f"{self.remote.shown}: commit {short!r} is ambiguous; give more of it"
                ) from None
            return None
        return found.strip() or None

    def fetch(self, commit: str, name: str | None) -> str:
        """Make sure ``commit`` is here, fetching only it (by its ref while that still points
        at it); returns its full id."""
        if not self.has(commit):
            what = f"cannot fetch {commit[:12]} from {self.remote.shown}"
            for wanted in ([name] if name is not None else []) + [commit]:
                with contextlib.suppress(GridctlError):
                    self._fetch([wanted], what, depth=1)
                if self.has(commit):
                    break
            else:
                # A server that refuses a commit by id still serves its refs' history.
                self.fetch_history()
            if not self.has(commit):
                raise GridctlError(f"{self.remote.shown} has no commit {commit}")
        full = self._in_repo(["rev-parse", "--verify", f"{commit}^{{commit}}"], "").strip()
        self._in_repo(["update-ref", f"{_KEPT}/{full}", full], "cannot keep the commit")
        return full

    def fetch_history(self) -> None:
        """Every branch and tag with its whole history: what finding a short commit takes."""
        shallow = self._in_repo(["rev-parse", "--is-shallow-repository"], "").strip() == "true"
        self._fetch(
            ["+refs/heads/*:refs/gridctl/heads/*", "+refs/tags/*:refs/gridctl/tags/*"],
            f"cannot fetch {self.remote.shown}",
            unshallow=shallow,
        )

    def _fetch(
        self, refspecs: Sequence[str], what: str, depth: int | None = None, unshallow=False
    ) -> None:
        options = ["--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc"]
        if depth is not None:
            options += ["--depth", str(depth)]
        if unshallow:
            options.append("--unshallow")
        self._in_repo(["fetch", *options, "--", self.remote.url, *refspecs], what)

    def tree(self, commit: str) -> Path:
        """The commit's files, checked out once (into a fresh folder, then renamed, so a
        half-written tree is never seen)."""
        tree = self.trees / commit
        if tree.is_dir():
            return tree
        self.trees.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=self.trees, prefix=".tmp-"))
        try:
            files = scratch / "files"
            files.mkdir()
            env = {"GIT_INDEX_FILE": str(scratch / "index")}
            what = f"cannot check out {commit[:12]}"
            self._in_repo(["--work-tree", str(files), "read-tree", commit], what, env)
            self._in_repo(["--work-tree", str(files), "checkout-index", "-a", "-f"], what, env)
            with contextlib.suppress(OSError):  # another gridctl was first: its tree is the same
                files.rename(tree)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return tree


@dataclass(frozen=True)
class WorkTree:
    """Where a project folder inside a git work tree came from."""

    source: Source
    changed: tuple[str, ...]
    """Paths (from ``root``) that differ from HEAD, untracked ones included."""
    pushed: bool | None
    """HEAD is on a remote-tracking branch (as this clone last heard); None: no remote."""


def describe(root: Path) -> WorkTree | None:
    """What the work tree ``root`` is in says of it; None outside any repository, in one
    without commits, or when HEAD holds nothing of ``root`` (a folder the enclosing
    repository, say of one's dotfiles, does not track)."""
    git = Git(None)
    try:
        said = git(["rev-parse", "--show-prefix", "HEAD", "HEAD:./"], what="", cwd=root)
        status = git(
            ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal", "--", "."],
            what="",
            cwd=root,
        )
    except GridctlError:
        return None
    prefix, head = said.split("\n")[:2]
    branch, even, changed = _parse_status(status)
    url = _origin(git, root)
    pushed = None if url is None else even or _on_a_remote(git, root)
    source = Source(git_url=url, ref=branch, commit=head, dirty=bool(changed))
    shown = tuple(path.removeprefix(prefix) for path in changed)
    return WorkTree(source, shown, pushed)


def _parse_status(text: str) -> tuple[str | None, bool, list[str]]:
    """(branch, whether HEAD equals its upstream, changed paths) of ``status --porcelain=v2``."""
    branch: str | None = None
    even = False
    changed: list[str] = []
    records = iter(text.split("\0"))
    for record in records:
        if record.startswith("# branch.head "):
            head = record.removeprefix("# branch.head ")
            branch = None if head == "(detached)" else head
        elif record.startswith("# branch.ab "):
            even = record.removeprefix("# branch.ab ") == "+0 -0"
        elif record[:2] in ("1 ", "u "):
            changed.append(record.split(" ", {"1": 8, "u": 10}[record[0]])[-1])
        elif record.startswith("2 "):
            changed.append(record.split(" ", 9)[-1])
            next(records, None)  # a rename's original path follows as its own record
        elif record.startswith("? "):
            changed.append(record[2:])
    return branch, even, changed


def _origin(git: Git, root: Path) -> str | None:
    try:
        url = git(["config", "--get", "remote.origin.url"], what="", cwd=root).strip()
    except GridctlError:
        return None
    return redact(url) if url else None


def _on_a_remote(git: Git, root: Path) -> bool:
    try:
        found = git(
            ["for-each-ref", "--count=1", "--contains", "HEAD", "--format=x", "refs/remotes"],
            what="",
            cwd=root,
        )
    except GridctlError:
        return False
    return bool(found.strip())
