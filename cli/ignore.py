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
for the combined ``.dockerignore`` mode, and for trees holding nested repositories. The walk
matches with pathspec's gitignore patterns, plus a few named shims where pathspec and git part.
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
import warnings
from collections.abc import Sequence
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
#
# pathspec's GitIgnoreSpec translates each line; the shims below cover where it differs from
# git, each for a case the differential test against ``git ls-files`` found.


@dataclass(frozen=True)
class _Pattern:
    """One ignore-file line as pathspec compiled it, matched against paths below its folder."""

    regex: re.Pattern[bytes]
    excludes: bool
    """False for a ``!`` line, which re-includes."""
    dir_only: bool
    basename: bool
    """No ``/`` in the line but a trailing one: git matches it against the name alone."""


def _parse_patterns(data: bytes) -> tuple[_Pattern, ...]:
    """The patterns of an ignore file, in order; lines that git never matches are dropped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    patterns = []
    for raw in data.split(b"\n"):
        line = _trim_trailing_spaces(raw[:-1] if raw.endswith(b"\r") else raw)
        if not line or line.startswith(b"#"):
            continue
        # The trailing "/" is ours to handle: with it pathspec's regex matches the folder
        # only as the parent of a longer path, and we ask about each folder on its own.
        dir_only = line.endswith(b"/")
        line = line[:-1] if dir_only else line
        basename = b"/" not in line
        body = _brackets(line)
        if body is not None and not basename and b"/" not in body:
            # A bracket held the only "/" (which it never matches), yet it anchors the line.
            bang = body[:1] if body.startswith(b"!") else b""
            body = bang + b"/" + body[len(bang) :]
        for variant in () if body is None else _literal_prefix(body):
            compiled = _compile(_keep_trailing_whitespace(variant))
            if compiled is not None:
                patterns.append(_Pattern(*compiled, dir_only, basename))
    return tuple(patterns)


def _compile(line: bytes) -> tuple[re.Pattern[bytes], bool] | None:
    """pathspec's regex for one line and whether it excludes; None when it never matches."""
    from pathspec import GitIgnoreSpec
    from pathspec.patterns.gitignore import GitIgnorePatternError

    try:
        with warnings.catch_warnings():
            # re's "possible nested set" for a bracket of only ``[`` and ``!``/``^``.
            warnings.simplefilter("ignore", FutureWarning)
            (pattern,) = GitIgnoreSpec.from_lines([line]).patterns
    except GitIgnorePatternError:
        return None
    if pattern.include is None or pattern.regex is None:
        return None
    return pattern.regex, pattern.include


def _trim_trailing_spaces(line: bytes) -> bytes:
    """git's rule: drop trailing spaces unless the first of them is escaped with ``\\``.

    Shim: pathspec strips them all, so ``a\\ `` followed by a space loses its escaped one.
    """
    end = len(line)
    while end and line[end - 1 : end] == b" ":
        end -= 1
    if end == len(line):
        return line
    backslashes = len(line[:end]) - len(line[:end].rstrip(b"\\"))
    return line[: end + 1] if backslashes % 2 else line[:end]


_LATIN1_WHITESPACE = bytes(c for c in range(256) if chr(c).isspace())


def _keep_trailing_whitespace(line: bytes) -> bytes:
    """Shim: pathspec ``rstrip``s lines decoded as latin-1 (so also a tab, byte 0x85 of ``Å``
    and 0xa0 of ``à``, or a space that stood before a trailing ``/``); git keeps them. A
    one-byte bracket holds the last byte where pathspec cannot strip it."""
    last = line[-1:]
    if not last or last not in _LATIN1_WHITESPACE:
        return line
    escaped = (len(line) - 1 - len(line[:-1].rstrip(b"\\"))) % 2
    return line[: -1 - escaped] + b"[" + last + b"]"


def _literal_prefix(line: bytes) -> list[bytes]:
    """Shim for git comparing the literal prefix of a pattern with a ``/`` on its own.

    The rest is then matched alone, so ``**`` right after that prefix is a leading ``**``:
    ``ab**/c`` means ``/abc`` or ``/ab*/**/c`` and ``x/ab**`` means ``/x/ab*`` or
    ``/x/ab*/**``, where pathspec reads that ``**`` as ``*``.
    """
    bang = line[:1] if line.startswith(b"!") else b""
    if b"/" not in line:
        return [line]
    body = line[len(bang) :].removeprefix(b"/")
    prefix = body[: next((i for i, c in enumerate(body) if c in b"*?[\\"), len(body))]
    rest = body[len(prefix) + 2 :]
    if not prefix or prefix.endswith(b"/") or body[len(prefix) : len(prefix) + 2] != b"**":
        return [line]
    if not rest:
        return [bang + b"/" + prefix + b"*", bang + b"/" + prefix + b"*/**"]
    if rest == b"/" or not rest.startswith(b"/"):
        return [line]
    return [
        *_literal_prefix(bang + b"/" + prefix + rest[1:]),
        bang + b"/" + prefix + b"*/**" + rest,
    ]


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


def _brackets(line: bytes) -> bytes | None:
    """Shim: each ``[...]`` spelled as the plain list of bytes git's wildmatch matches with it.

    pathspec hands a bracket's text to ``re``, which has no ``[:alpha:]`` classes, reads
    ``\\`` inside it as a literal, rejects ``[z-a]`` and lets ``[!a]`` match ``/``. None when
    git never matches the pattern (a bracket never closed, an unknown class, an empty set).
    """
    out, i, n = bytearray(), 0, len(line)
    while i < n:
        if line[i] == ord("\\"):
            out += line[i : i + 2]
            i += 2
        elif line[i] == ord("["):
            members, i = _bracket(line, i)
            spelled = _spelled(members) if members else None
            if spelled is None:
                return None
            out += spelled
        else:
            out.append(line[i])
            i += 1
    return bytes(out)


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
    matched -= {0, ord("/")}
    # A newline in a path is matched as a NUL (see _Rules._decide).
    return matched | {0} if ord("\n") in matched else matched, i + 1


def _spelled(members: frozenset[int]) -> bytes | None:
    """A bracket that pathspec passes on as is and ``re`` reads as exactly ``members``: no
    ranges, ``]`` first, ``-`` last, never ``!``/``^`` first (pathspec's negation) nor ``-``
    after a byte it would join in a range. None for the one set it cannot spell: ``!^``."""
    if len(members) == 1:
        return b"\\" + bytes(members)
    head = b"]" if ord("]") in members else b""
    middle = bytes(sorted(members - set(b"]!^[-")))
    bangs = bytes(sorted(members & set(b"!^")))
    square, dash = b"[" * (ord("[") in members), b"-" * (ord("-") in members)
    body = head + middle + bangs + square + dash if head or middle else dash + square + bangs
    return None if body[:1] in (b"!", b"^") else b"[" + body + b"]"


@dataclass(frozen=True)
class _Rules:
    """The patterns in effect in one folder, highest precedence first (deeper ignore files
    first, later lines first), so the first that matches is git's last matching pattern.

    Each is kept with where its ignore file's folder ends in a path (None: it matches names),
    apart for files and folders. Where all of them match names alone, a verdict holds for
    every entry of that name below the folder, so it is worked out once.
    """

    files: tuple[tuple[int | None, _Pattern], ...] = ()
    dirs: tuple[tuple[int | None, _Pattern], ...] = ()
    verdicts: tuple[dict[bytes, bool] | None, dict[bytes, bool] | None] = (None, None)
    """Per name, for files and for folders, where names alone decide."""

    def below(self, start: int, added: Sequence[_Pattern]) -> _Rules:
        if not added:
            return self
        ordered = (*[(None if p.basename else start, p) for p in reversed(added)], *self.dirs)
        files = tuple((at, p) for at, p in ordered if not p.dir_only)
        files_named, dirs_named = (all(at is None for at, _ in k) for k in (files, ordered))
        return _Rules(files, ordered, ({} if files_named else None, {} if dirs_named else None))

    def excluded(self, path: bytes, name: bytes, is_dir: bool) -> bool:
        known = self.verdicts[is_dir]
        if known is None:
            return self._decide(path, name, is_dir)
        verdict = known.get(name)
        if verdict is None:
            verdict = known[name] = self._decide(path, name, is_dir)
        return verdict

    def _decide(self, path: bytes, name: bytes, is_dir: bool) -> bool:
        if b"\n" in path:
            # Shim: pathspec's ``.`` skips a newline and its ``$`` matches before one; no
            # pattern holds a newline, so a NUL (never in a path) stands in for it.
            path, name = path.replace(b"\n", b"\0"), name.replace(b"\n", b"\0")
        for at, pattern in self.dirs if is_dir else self.files:
            match = pattern.regex.search(name if at is None else path[at:])
            # pathspec's regex also matches paths below a matching folder, marking that
            # with its one group; git asks about each path on its own.
            if match is not None and match.lastindex is None:
                return pattern.excludes
        return False


def _read_ignore_file(path: bytes) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _python_select(root: bytes, names: tuple[str, ...]) -> list[bytes]:
    """Walk ``root`` with os.scandir, stacking each folder's ignore files on its parent's."""
    encoded = [os.fsencode(n) for n in names]
    parsed: dict[bytes, tuple[_Pattern, ...]] = {}
    found: list[bytes] = []
    todo: list[tuple[bytes, bytes, _Rules]] = [(root, b"", _Rules())]
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
                data = _read_ignore_file(entry.path)
                if data not in parsed:
                    parsed[data] = _parse_patterns(data)
                added += parsed[data]
        rules = rules.below(len(rel), added)
        for entry in entries:
            if entry.name == b".git":
                continue
            path = rel + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not rules.excluded(path, entry.name, True):
                        todo.append((entry.path, path + b"/", rules))
                    continue
                wanted = entry.is_symlink() or entry.is_file(follow_symlinks=False)
            except OSError:
                continue
            if wanted and not rules.excluded(path, entry.name, False):
                found.append(path)
    return found
