"""Trees nobody can change, not even root: how a datastore version is handed to a script.

Permission bits stop ordinary users; root ignores them, so when we run as root (nodes do)
every file and folder also gets Linux's immutable flag, which root must clear explicitly
before it can write, create, rename or delete anything. Filesystems without the flag keep
just the permission bits.

Sealed files may share their inode with other links (a local store's objects are hard
linked into materialized trees): sealing one seals all, and ``remove`` takes care to leave
the other links sealed. A seal is for as long as scripts read the tree: ``unseal`` lifts
it afterwards, so that nothing left behind resists ``rm -rf``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
"""ioctl requests for a Linux inode's attribute flags (what lsattr/chattr use)."""
FS_IMMUTABLE_FL = 0x10
"""No writes, links, renames or deletes, whatever the caller's permissions."""
_UNSUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EPERM, errno.EINVAL)
"""What a filesystem (or a container without CAP_LINUX_IMMUTABLE) answers when it cannot
keep the flag: then the permission bits are all the protection there is."""
SEALED_FILE = 0o444
SEALED_DIR = 0o555
OPEN_DIR = 0o755
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
"""Read-only is enough for the ioctls; no blocking on odd files, never through a symlink."""


def _immutable_flag_usable() -> bool:
    """Only root may set the flag, and only Linux has these ioctls."""
    return sys.platform == "linux" and os.geteuid() == 0


def seal(path: Path) -> None:
    """Files 0o444, folders 0o555, and immutable when we can; symlinks are left alone.

    Idempotent: an inode that is already immutable was sealed before (the flag is always
    set after the mode) and is skipped, as its mode could not be changed anyway.
    """
    flags_usable = _immutable_flag_usable()
    for entry, is_dir in _walk(Path(path), dirs_first=False):
        if flags_usable:
            flags_usable = _seal_one(entry, is_dir)
        else:
            os.chmod(entry, SEALED_DIR if is_dir else SEALED_FILE)


def _seal_one(path: Path, is_dir: bool) -> bool:
    """Seal one inode; False once the filesystem turns out not to keep the flag."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        flags = _get_flags(fd)
        if flags is not None and flags & FS_IMMUTABLE_FL:
            return True
        os.fchmod(fd, SEALED_DIR if is_dir else SEALED_FILE)
        return flags is not None and _set_flags(fd, flags | FS_IMMUTABLE_FL)
    finally:
        os.close(fd)


def unseal(path: Path) -> None:
    """Lift what stops deletion: no immutable flag, folders 0o755. Files keep their mode
    (read-only after a seal), which does not stop their owner from deleting them."""
    flags_usable = _immutable_flag_usable()
    for entry, is_dir in _walk(Path(path), dirs_first=True):
        if flags_usable:
            _clear_immutable(entry)
        if is_dir:
            os.chmod(entry, OPEN_DIR)


def remove(path: Path) -> None:
    """Delete a file, folder tree or symlink, sealed or not; nothing if it is missing.

    A sealed file with other hard links stays sealed through them: its flag is cleared
    only for the unlink and set again through a descriptor that outlives the name.
    """
    path = Path(path)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        _unlink(path, mode)
        return
    flags_usable = _immutable_flag_usable()
    for folder, _dirs, names in os.walk(path):
        if flags_usable:
            _clear_immutable(Path(folder))
        os.chmod(folder, OPEN_DIR)
        for name in names:
            entry = Path(folder, name)
            _unlink(entry, entry.lstat().st_mode)
    shutil.rmtree(path)


def link(src: Path, dest: Path) -> None:
    """Hard link ``dest`` to ``src`` even when ``src`` is sealed (the kernel refuses links
    to immutable inodes): the flag is lifted for the link only."""
    try:
        os.link(src, dest)
        return
    except PermissionError:
        if not _immutable_flag_usable():
            raise
    fd = os.open(src, _OPEN_FLAGS)
    try:
        flags = _get_flags(fd)
        if flags is None or not flags & FS_IMMUTABLE_FL:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(src))
        _set_flags(fd, flags & ~FS_IMMUTABLE_FL)
        try:
            os.link(src, dest)
        finally:
            _set_flags(fd, flags)
    finally:
        os.close(fd)


def _unlink(path: Path, mode: int) -> None:
    if not (stat.S_ISREG(mode) and _immutable_flag_usable()):
        path.unlink(missing_ok=True)
        return
    fd = os.open(path, _OPEN_FLAGS)
    try:
        flags = _get_flags(fd)
        if flags is None or not flags & FS_IMMUTABLE_FL:
            path.unlink(missing_ok=True)
            return
        _set_flags(fd, flags & ~FS_IMMUTABLE_FL)
        try:
            path.unlink(missing_ok=True)
        finally:
            if os.fstat(fd).st_nlink:
                _set_flags(fd, flags)
    finally:
        os.close(fd)


def _clear_immutable(path: Path) -> None:
    fd = os.open(path, _OPEN_FLAGS)
    try:
        flags = _get_flags(fd)
        if flags is not None and flags & FS_IMMUTABLE_FL:
            _set_flags(fd, flags & ~FS_IMMUTABLE_FL)
    finally:
        os.close(fd)


def _walk(root: Path, *, dirs_first: bool) -> Iterator[tuple[Path, bool]]:
    """(path, is a folder) for ``root`` and every regular file and folder below it, never
    through a symlink; folders before their contents or after them. A missing ``root``
    yields nothing."""
    try:
        mode = root.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        yield root, False
    if not stat.S_ISDIR(mode):
        return
    for folder, _dirs, names in os.walk(root, topdown=dirs_first):
        if dirs_first:
            yield Path(folder), True
        for name in names:
            entry = Path(folder, name)
            if stat.S_ISREG(entry.lstat().st_mode):
                yield entry, False
        if not dirs_first:
            yield Path(folder), True


def _get_flags(fd: int) -> int | None:
    """The inode's flags, or None where the filesystem has none."""
    buf = array("i", [0])
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return None
        raise
    return buf[0]


def _set_flags(fd: int, flags: int) -> bool:
    """False where the filesystem cannot keep them."""
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, array("i", [flags]), True)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True
