"""Unpack a code bundle on a node without letting the archive write outside its folder.

Every member is checked before anything is written, so a refused archive leaves nothing
behind: no absolute paths or ``..``, no devices or fifos, no duplicate names, nothing stored
below a symlink of the archive, and every symlink or hardlink must resolve inside the
destination even when followed through the archive's other symlinks. tarfile's ``data``
filter then checks again against the real filesystem while extracting.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

_MAX_HOPS = 40
"""Like the kernel's limit: a longer symlink chain is a loop, which reaches nothing."""


class UnsafeArchiveError(ValueError):
    """The archive tries to write outside its destination or to create special files."""


def extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` (any tar compression) into ``dest``, creating it if needed."""
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        _check_members(members)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        _check_existing(dest, members)
        if not hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members)  # noqa: S202 - checked above
            return
        try:
            tar.extractall(dest, members=members, filter=_data_filter)  # noqa: S202
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"refusing archive {archive}: {exc}") from exc


def _data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``data`` filter; files get the extraction time, not the archive's zero."""
    # None leaves the time to the extraction; typeshed knows only floats.
    return tarfile.data_filter(member, dest).replace(mtime=None, deep=False)  # type: ignore[arg-type]


def _check_members(members: list[tarfile.TarInfo]) -> None:
    """Raise UnsafeArchiveError unless extracting ``members`` stays inside the destination."""
    names: set[str] = set()
    links: dict[str, str] = {}
    for member in members:
        name = _relative(member.name, member.name)
        if name in names:
            raise UnsafeArchiveError(f"duplicate archive member: {member.name!r}")
        names.add(name)
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchiveError(f"special file in archive: {member.name!r}")
        if member.issym():
            links[name] = member.linkname
    for member in members:
        name = _relative(member.name, member.name)
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise UnsafeArchiveError(f"archive member below a symlink: {member.name!r}")
        if member.issym():
            start = parts[:-1]
            if os.path.isabs(member.linkname) or _escapes(links, start, member.linkname):
                raise UnsafeArchiveError(
                    f"symlink leaves the destination: {member.name!r} -> {member.linkname!r}"
                )
        elif member.islnk():
            target = _relative(member.linkname, member.name)
            if _escapes(links, [], target):
                raise UnsafeArchiveError(
                    f"hardlink leaves the destination: {member.name!r} -> {member.linkname!r}"
                )


def _relative(path: str, member: str) -> str:
    """``path`` as a clean relative POSIX path; absolute paths and ``..`` are refused."""
    if not path or path.startswith("/") or os.path.isabs(path):
        raise UnsafeArchiveError(f"absolute path in archive: {member!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"'..' in archive path: {member!r}")
    if not parts:
        raise UnsafeArchiveError(f"empty path in archive: {member!r}")
    return "/".join(parts)


def _escapes(links: dict[str, str], folder: list[str], target: str) -> bool:
    """Whether ``target``, read from ``folder``, climbs above the root via ``..`` or links."""
    stack = list(folder)
    pending = list(reversed(target.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        link = links.get("/".join(stack))
        if link is None:
            continue
        hops += 1
        if os.path.isabs(link):
            return True
        if hops > _MAX_HOPS:
            return False
        stack.pop()
        pending.extend(reversed(link.split("/")))
    return False


def _check_existing(dest: Path, members: list[tarfile.TarInfo]) -> None:
    """A non-empty ``dest`` may hold symlinks of its own: members must not write through them."""
    if not any(dest.iterdir()):
        return
    root = os.path.realpath(dest)
    for member in members:
        name = _relative(member.name, member.name)
        written = os.path.dirname(name) if member.issym() else name
        real = os.path.realpath(os.path.join(root, written))
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise UnsafeArchiveError(f"archive member would leave {dest}: {member.name!r}")
