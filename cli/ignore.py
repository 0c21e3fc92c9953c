"""Which files of a project go into its code bundle (SPEC section 4).

Semantics, for a project ``root`` (which need not be a git repository):

* Candidates are regular files and symlinks below ``root``. A symlink is one entry even when
  it points at a directory: it is never descended. Anything named ``.git`` (directory or
  file, at any depth) is left out, and so is every other kind of file (fifo, socket, device).
  Unreadable directories are skipped, as git skips them.
* An *ignore file* ``N`` in folder ``F`` (a regular file, not a symlink: git does not follow
  in-tree ignore files that are symlinks) applies to the paths below ``F`` with git's
  gitignore rules: ``#`` comments, blank lines, unescaped trailing spaces trimmed, ``\\``
  escapes, ``!`` negation, a ``/`` at the start or in the middle anchors the pattern to
  ``F``, a trailing ``/`` matches directories only, ``*``/``?``/``[...]`` never match ``/``
  while ``**`` does (``**/x``, ``x/**``, ``a/**/b``), and git's wildmatch quirks, such as the
  literal prefix before the first wildcard being compared on its own (``ab**/c`` matches
  ``abx/y/c``). Matching is byte-wise and case-sensitive.
* For each path the last matching pattern wins, where patterns are ordered root folder
  first, deeper folders later, and by line within a file. An excluded directory is not
  descended, so nothing below it can be re-included and ignore files inside it are not read;
  an ignore file that its own patterns exclude still counts.
* Global excludes (``core.excludesFile``, ``.git/info/exclude``) are no part of this: the
  selection depends on the tree alone.

The selection is first computed with the ``.gitignore`` files. If it contains a
``.gridignore`` anywhere, it is recomputed with the ``.gridignore`` files alone (mode
``"gridignore"``). Otherwise, if it contains a ``.dockerignore``, it is recomputed with both:
in each folder the ``.dockerignore`` lines come after the ``.gitignore`` lines, so they take
precedence. For a ``.gitignore``-only tree the result equals ``git ls-files --others --cached
--exclude-standard`` in a freshly ``git init``-ed copy (with no global excludes configured).
A nested git repository is listed file by file (its ``.git`` left out), where git would print
one ``sub/`` entry.

Two engines give identical answers: ``git ls-files`` run against a throwaway empty git
directory (one process, fast on big trees), and a pure-Python walk used when git is missing,
for the combined ``.dockerignore`` mode, and for trees holding nested repositories.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridctl.cli.errors import GridctlError

GITIGNORE = ".gitignore"
GRIDIGNORE = ".gridignore"
DOCKERIGNORE = ".dockerignore"


@dataclass(frozen=True)
class Selection:
    """The files a bundle holds and which rules chose them."""

    paths: tuple[str, ...]
    """Sorted POSIX paths relative to the root."""
    mode: str
    """``"gridignore"`` or ``"gitignore"``."""
    ignore_files: tuple[str, ...]
    """The ignore-file names that counted, lowest precedence first."""
    engine: str
    """``"git"`` or ``"python"``: which engine computed the final answer."""


def select_files(root: Path, *, use_git: bool | None = None) -> Selection:
    """Select the files of ``root`` for a bundle; ``use_git=None`` means git when installed."""
    root_s = os.path.abspath(root)
    try:
        with os.scandir(root_s):
            pass
    except OSError as exc:
        raise GridctlError(f"cannot read project directory {root}: {exc.strerror}") from exc
    git = shutil.which("git") if use_git is not False else None
    if use_git and git is None:
        raise GridctlError("git is not installed; cannot select bundle files with git")

    def run(names: tuple[str, ...]) -> tuple[list[bytes], str]:
        if git is not None and len(names) == 1:
            found = _git_select(git, root_s, names[0])
            if found is not None:
                return found, "git"
        return _python_select(os.fsencode(root_s), names), "python"

    paths, engine = run((GITIGNORE,))
    listing = b"\0" + b"\0".join(paths) + b"\0"
    names: tuple[str, ...] = (GITIGNORE,)
    if _contains(listing, GRIDIGNORE):
        names = (GRIDIGNORE,)
    elif _contains(listing, DOCKERIGNORE):
        names = (GITIGNORE, DOCKERIGNORE)
    if names != (GITIGNORE,):
        paths, engine = run(names)
    return Selection(
        paths=tuple(sorted(_decode(paths))),
        mode="gridignore" if names == (GRIDIGNORE,) else "gitignore",
        ignore_files=names,
        engine=engine,
    )


def _contains(listing: bytes, name: str) -> bool:
    """Whether a NUL-framed listing holds a file called ``name`` in any folder."""
    encoded = os.fsencode(name) + b"\0"
    return b"\0" + encoded in listing or b"/" + encoded in listing


def _decode(paths: list[bytes]) -> list[str]:
    if not paths:
        return []
    joined = b"\0".join(paths).decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    return joined.split("\0")


# --- the git engine -------------------------------------------------------------------------


def _git_select(git: str, root: str, per_dir: str) -> list[bytes] | None:
    """``git ls-files --others`` of ``root``; None when git would fold a nested repository."""
    proc = subprocess.run(
        [
            git,
            f"--git-dir={_empty_git_dir()}",
            f"--work-tree={root}",
            "-c",
            f"core.excludesFile={os.devnull}",
            "ls-files",
            "--others",
            "-z",
            f"--exclude-per-directory={per_dir}",
        ],
        cwd=root,
        env=_git_env(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GridctlError(f"git ls-files failed in {root}: {reason[-1] if reason else '?'}")
    out = proc.stdout
    if b"/\0" in out:
        return None
    return out.split(b"\0")[:-1]


def _git_env() -> dict[str, str]:
    """The caller's environment minus anything that points git at another repository/config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k == "GIT_EXEC_PATH"}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


_git_dir_lock = threading.Lock()
_git_dir: str | None = None


def _empty_git_dir() -> str:
    """A git directory with no index, made once per process, so ``root`` need not be a repo."""
    global _git_dir
    with _git_dir_lock:
        if _git_dir is None or not os.path.isfile(os.path.join(_git_dir, "HEAD")):
            holder = tempfile.mkdtemp(prefix="gridctl-git-")
            atexit.register(shutil.rmtree, holder, ignore_errors=True)
            _git_dir = os.path.join(holder, "empty.git")
            for sub in ("objects", "refs"):
                os.makedirs(os.path.join(_git_dir, sub))
            with open(os.path.join(_git_dir, "HEAD"), "w") as head:
                head.write("ref: refs/heads/main\n")
        return _git_dir


# --- the pure-Python engine -----------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    """One gitignore line, compiled to a regex over the whole root-relative path."""

    negative: bool
    dir_only: bool
    regex: bytes


def _parse_patterns(data: bytes, base: bytes) -> list[_Pattern]:
    """The patterns of an ignore file in folder ``base`` (``b""`` or ``b"a/b/"``), in order.

    Patterns that can never match (unterminated ``[``, trailing ``\\``) are dropped.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    patterns = []
    for raw in data.split(b"\n"):
        if not raw or raw.startswith(b"#"):
            continue
        line = _trim_trailing_spaces(raw[:-1] if raw.endswith(b"\r") else raw)
        negative = line.startswith(b"!")
        if negative:
            line = line[1:]
        dir_only = line.endswith(b"/")
        if dir_only:
            line = line[:-1]
        if b"/" in line:
            if line.startswith(b"/"):
                line = line[1:]
            prefix = _literal_length(line)
            rest = _translate(line[prefix:])
            regex = None if rest is None else re.escape(base + line[:prefix]) + rest
        else:
            body = _translate(line, pathname=False)
            regex = None if body is None else b"(?:.*/)?" + body
        if line and regex is not None:
            patterns.append(_Pattern(negative, dir_only, regex))
    return patterns


def _trim_trailing_spaces(line: bytes) -> bytes:
    """git's rule: drop trailing spaces unless the first of them is escaped with ``\\``."""
    end = len(line)
    while end and line[end - 1 : end] == b" ":
        end -= 1
    if end == len(line):
        return line
    backslashes = len(line[:end]) - len(line[:end].rstrip(b"\\"))
    return line[: end + 1] if backslashes % 2 else line[:end]


def _literal_length(pattern: bytes) -> int:
    """Bytes before the first glob-special byte; git compares these on their own."""
    return next((i for i, c in enumerate(pattern) if c in b"*?[\\"), len(pattern))


def _translate(pattern: bytes, *, pathname: bool = True) -> bytes | None:
    """git's ``wildmatch`` (``WM_PATHNAME`` when ``pathname``) as a regex; None: never matches."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == ord("\\"):
            if i + 1 == n:
                return None
            out.append(re.escape(pattern[i + 1 : i + 2]))
            i += 2
        elif c == ord("?"):
            out.append(b"[^/]")
            i += 1
        elif c == ord("*"):
            j = i
            while j < n and pattern[j] == ord("*"):
                j += 1
            starstar = (
                pathname
                and j - i > 1
                and (i == 0 or pattern[i - 1] == ord("/"))
                and (j == n or pattern[j : j + 1] == b"/" or pattern[j : j + 2] == b"\\/")
            )
            if starstar and pattern[j : j + 1] == b"/":
                out.append(b"(?:.*/)?")
                j += 1
            else:
                out.append(b".*" if starstar else b"[^/]*")
            i = j
        elif c == ord("["):
            members, i = _bracket(pattern, i)
            if members is None:
                return None
            out.append(_byte_class(members))
        else:
            out.append(re.escape(pattern[i : i + 1]))
            i += 1
    return b"".join(out)


_CLASSES: dict[bytes, frozenset[int]] = {
    b"alnum": frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"alpha": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(32), 127]),
    b"digit": frozenset(b"0123456789"),
    b"graph": frozenset(range(0x21, 0x7F)),
    b"lower": frozenset(b"abcdefghijklmnopqrstuvwxyz"),
    b"print": frozenset(range(0x20, 0x7F)),
    b"punct": frozenset(c for c in range(0x21, 0x7F) if not chr(c).isalnum()),
    b"space": frozenset(b" \t\n\r"),
    b"upper": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    b"xdigit": frozenset(b"0123456789abcdefABCDEF"),
}


def _bracket(pattern: bytes, i: int) -> tuple[frozenset[int] | None, int]:
    """Parse ``[...]`` at ``pattern[i]`` as wildmatch does: the bytes it matches, next index."""
    n = len(pattern)
    i += 1
    negated = i < n and pattern[i] in b"!^"
    if negated:
        i += 1
    members: set[int] = set()
    prev = 0
    while True:
        if i >= n:
            return None, n
        c = pattern[i]
        if c == ord("\\"):
            i += 1
            if i >= n:
                return None, n
            c = pattern[i]
            members.add(c)
        elif c == ord("-") and prev and i + 1 < n and pattern[i + 1] != ord("]"):
            i += 1
            c = pattern[i]
            if c == ord("\\"):
                i += 1
                if i >= n:
                    return None, n
                c = pattern[i]
            members.update(range(prev, c + 1))
            c = 0
        elif c == ord("[") and pattern[i + 1 : i + 2] == b":":
            end = pattern.find(b"]", i + 2)
            if end < 0:
                return None, n
            if end - (i + 2) - 1 < 0 or pattern[end - 1] != ord(":"):
                members.add(c)
            else:
                named = _CLASSES.get(pattern[i + 2 : end - 1])
                if named is None:
                    return None, n
                members.update(named)
                i = end
                c = 0
        else:
            members.add(c)
        prev = c
        i += 1
        if i < n and pattern[i] == ord("]"):
            break
    matched = frozenset(range(1, 256)) - members if negated else frozenset(members)
    return matched - {0, ord("/")}, i + 1


def _byte_class(members: frozenset[int]) -> bytes:
    if not members:
        return b"(?!)"
    return b"[" + b"".join(b"\\x%02x" % c for c in sorted(members)) + b"]"


@dataclass(frozen=True)
class _Rules:
    """The patterns in effect in one folder, as one regex each for directories and files.

    Alternatives are ordered highest precedence first, so the first that matches the whole
    path (``lastindex``) is git's "last matching pattern".
    """

    patterns: tuple[_Pattern, ...]
    dirs: tuple[re.Pattern[bytes] | None, tuple[bool, ...]]
    files: tuple[re.Pattern[bytes] | None, tuple[bool, ...]]

    @classmethod
    def of(cls, patterns: tuple[_Pattern, ...]) -> _Rules:
        return cls(patterns, _compile(patterns), _compile(p for p in patterns if not p.dir_only))

    def below(self, added: Sequence[_Pattern]) -> _Rules:
        return _Rules.of((*reversed(added), *self.patterns)) if added else self

    def excluded(self, path: bytes, is_dir: bool) -> bool:
        regex, negative = self.dirs if is_dir else self.files
        if regex is None:
            return False
        match = regex.match(path)
        return match is not None and not negative[match.lastindex - 1]


def _compile(patterns: Iterable[_Pattern]) -> tuple[re.Pattern[bytes] | None, tuple[bool, ...]]:
    chosen = list(patterns)
    if not chosen:
        return None, ()
    body = b"|".join(b"(" + p.regex + b")" for p in chosen)
    return re.compile(b"(?:" + body + b")\\Z", re.DOTALL), tuple(p.negative for p in chosen)


def _read_ignore_file(path: bytes) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _python_select(root: bytes, names: tuple[str, ...]) -> list[bytes]:
    """Walk ``root`` with os.scandir, stacking each folder's ignore files on its parent's."""
    encoded = [os.fsencode(n) for n in names]
    found: list[bytes] = []
    todo: list[tuple[bytes, bytes, _Rules]] = [(root, b"", _Rules.of(()))]
    while todo:
        folder, rel, rules = todo.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            continue
        by_name = {e.name: e for e in entries}
        added: list[_Pattern] = []
        for name in encoded:
            entry = by_name.get(name)
            if entry is not None and entry.is_file(follow_symlinks=False):
                added += _parse_patterns(_read_ignore_file(entry.path), rel)
        rules = rules.below(added)
        for entry in entries:
            if entry.name == b".git":
                continue
            path = rel + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not rules.excluded(path, True):
                        todo.append((entry.path, path + b"/", rules))
                    continue
                wanted = entry.is_symlink() or entry.is_file(follow_symlinks=False)
            except OSError:
                continue
            if wanted and not rules.excluded(path, False):
                found.append(path)
    return found
