"""Datastores: named, versioned, read-only data sets that experiments mount.

In the store (local directory or bucket) a name holds content-addressed objects shared by
all its versions, and one folder per version with its manifest and, written last once the
version is usable, ``complete.json`` (the keys are in ``agent/core/contract.py``).

Uploading only the objects the store lacks is what makes a rerun after Ctrl-C resume and a
new version send only what changed; data identical to the newest version makes no new one.

A machine materializes a version once into its cache (hard links to a local store's
objects, downloads verified against their hashes otherwise) and mounts it with a symlink::

    <cache>/<name>/v<v>/            the version's files, read-only
    <cache>/<name>/v<v>.done        written last: the tree is whole
    <cache>/<name>/.holders/<exp>   the experiments using any version of the name
    <cache>/<name>/.mounts/<hash>   a mount dir made of one of its trees
    <cache>/<name>/.lock            serializes all of the above

While any experiment holds a version, every tree of its name is sealed (immutable where
the agent is root: a script running as root cannot change what the next one reads). The
seal covers the whole name because its trees share inodes (hard links to one object).
When the last holder lets go the seal is lifted, leaving read-only files in ordinary
folders, so that ``datastore delete`` and ``rm -rf GRIDCTL_HOME`` can always clean up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gridctl.agent.core import readonly
from gridctl.agent.core.contract import (
    DATASTORES,
    datastore_object_key,
    datastore_objects,
    datastore_prefix,
    datastore_version_key,
    datastore_versions,
)
from gridctl.agent.core.progress import Progress, counter
from gridctl.agent.core.store import Sent, Store
from gridctl.agent.core.units import format_bytes

MANIFEST = "manifest.json"
COMPLETE = "complete.json"
MANIFEST_FORMAT = 1
"""Written into every manifest so a later layout can tell old ones apart."""
DEFAULT_WORKERS = 8
"""Transfers at once: enough to hide each small file's request latency, like artifacts."""
QUEUED_PER_WORKER = 2
"""Tasks submitted ahead of the workers: keeps them busy without a future per file of a
million-file data set."""
CHUNK = 1 << 20
"""Bytes read at a time when hashing."""
DOWNLOAD_ATTEMPTS = 2
"""A download whose content fails its hash is fetched once more before giving up: one
corrupted transfer is bad luck, two are a broken object."""
NAME_MAX = 63
"""Like a DNS label: names appear in paths, keys and tags."""
_NAME = re.compile(r"[a-z0-9-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

T = TypeVar("T")
R = TypeVar("R")


class DatastoreError(Exception):
    """Bad input or a datastore that cannot be used; the message is for the user."""


def validate_name(name: str) -> str:
    """The name itself when it is a valid datastore name."""
    if not 1 <= len(name) <= NAME_MAX:
        rule = f"use 1 to {NAME_MAX} characters"
    elif not _NAME.fullmatch(name):
        rule = "use only lowercase letters, digits and '-'"
    elif not name[0].isalpha():
        rule = "start with a letter"
    elif name[-1] == "-":
        rule = "end with a letter or a digit"
    else:
        return name
    raise DatastoreError(f"invalid datastore name {name!r}: {rule}")


@dataclass(frozen=True)
class FileEntry:
    path: str
    """Relative POSIX path inside the data set."""
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    files: tuple[FileEntry, ...]
    """Sorted by path."""
    created_at: float

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "name": self.name,
                "version": self.version,
                "created_at": self.created_at,
                "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Checked, since its paths become files on the reader's disk: DatastoreError for
        anything that is not a manifest of safe relative paths and well-formed hashes."""
        try:
            data = json.loads(text)
            files = tuple(
                FileEntry(_typed(f["path"], str), _typed(f["size"], int), _typed(f["sha256"], str))
                for f in _typed(data["files"], list)
            )
            manifest = cls(
                name=_typed(data["name"], str),
                version=_typed(data["version"], int),
                files=files,
                created_at=float(_typed(data["created_at"], (int, float))),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DatastoreError(f"malformed datastore manifest: {exc!r}") from None
        problem = _manifest_problem(manifest)
        if problem:
            raise DatastoreError(f"malformed datastore manifest: {problem}")
        return manifest


def _typed(value: object, kind: type | tuple[type, ...]) -> Any:
    """``value`` if it is of ``kind`` (bools are not numbers here), else TypeError."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"unexpected {type(value).__name__}: {value!r}")
    return value


def _manifest_problem(manifest: Manifest) -> str | None:
    """What makes the manifest unsafe or inconsistent, if anything."""
    try:
        validate_name(manifest.name)
    except DatastoreError as exc:
        return str(exc)
    if manifest.version < 1:
        return f"version {manifest.version}"
    paths = {entry.path for entry in manifest.files}
    if len(paths) != len(manifest.files):
        return "a path appears twice"
    for entry in manifest.files:
        parts = entry.path.split("/")
        if entry.path.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
            return f"unsafe path {entry.path!r}"
        if any("/".join(parts[:depth]) in paths for depth in range(1, len(parts))):
            return f"{entry.path!r} is below another file"
        if entry.size < 0 or not _SHA256.fullmatch(entry.sha256):
            return f"bad size or hash for {entry.path!r}"
    return None


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    files: int
    bytes: int
    complete: bool
    created_at: float


@dataclass(frozen=True)
class CreateResult:
    name: str
    version: int
    files: int
    bytes: int
    uploaded_files: int
    """Objects sent; files whose content the store had already are not."""
    uploaded_bytes: int
    skipped: tuple[str, ...] = ()
    """Symlinks and special files of SOURCE_DIR, left out (relative POSIX paths)."""
    unchanged: bool = False
    """SOURCE_DIR holds exactly what ``version`` (the newest) holds: no version was made."""


def names(store: Store) -> list[str]:
    """Every name with anything stored under it, sorted."""
    found = set()
    for key in store.list(DATASTORES):
        parts = key.split("/")
        if len(parts) > 2 and _NAME.fullmatch(parts[1]):
            found.add(parts[1])
    return sorted(found)


def _version_files(store: Store, name: str) -> dict[int, set[str]]:
    """Version number -> the files its folder holds, for versions that have a manifest."""
    found: dict[int, set[str]] = {}
    for key in store.list(datastore_versions(name)):
        parts = key.split("/")
        if len(parts) == 5 and parts[3].isdigit() and str(int(parts[3])) == parts[3]:
            found.setdefault(int(parts[3]), set()).add(parts[4])
    return {v: files for v, files in sorted(found.items()) if MANIFEST in files}


def _read_complete(store: Store, name: str, version: int) -> dict[str, Any]:
    raw = store.get_bytes(datastore_version_key(name, version, COMPLETE))
    try:
        data: dict[str, Any] = json.loads(raw)
        for key, kind in (("manifest_sha256", str), ("files", int), ("bytes", int)):
            _typed(data[key], kind)
        _typed(data["created_at"], (int, float))
    except (ValueError, KeyError, TypeError) as exc:
        raise DatastoreError(
            f"malformed {COMPLETE} of datastore {name!r} version {version}: {exc!r}"
        ) from None
    return data


def _read_manifest(store: Store, name: str, version: int) -> tuple[Manifest, bytes]:
    raw = store.get_bytes(datastore_version_key(name, version, MANIFEST))
    manifest = Manifest.from_json(raw)
    if (manifest.name, manifest.version) != (name, version):
        raise DatastoreError(
            f"malformed datastore manifest: {name} version {version} holds"
            f" {manifest.name} version {manifest.version}"
        )
    return manifest, raw


def versions(store: Store, name: str) -> list[Version]:
    """The name's versions, complete or not, sorted; [] for an unknown name."""
    name = validate_name(name)
    found = []
    for version, files in _version_files(store, name).items():
        try:
            if COMPLETE in files:
                summary = _read_complete(store, name, version)
                found.append(
                    Version(
                        name,
                        version,
                        summary["files"],
                        summary["bytes"],
                        True,
                        summary["created_at"],
                    )
                )
            else:
                manifest, _raw = _read_manifest(store, name, version)
                found.append(
                    Version(
                        name,
                        version,
                        len(manifest.files),
                        manifest.total_bytes,
                        False,
                        manifest.created_at,
                    )
                )
        except FileNotFoundError:
            continue  # deleted while we listed
    return found


def _unknown(name: str) -> DatastoreError:
    return DatastoreError(f"unknown datastore {name!r} (see gridctl datastore list)")


def _no_version(name: str, version: int, known: Sequence[int]) -> DatastoreError:
    listed = ", ".join(str(v) for v in known)
    return DatastoreError(f"datastore {name!r} has no version {version} (versions: {listed})")


def _incomplete(name: str, version: int) -> DatastoreError:
    return DatastoreError(
        f"datastore {name!r} version {version} is incomplete"
        " (rerun gridctl datastore create to finish it)"
    )


def resolve(store: Store, name: str, version: int | None) -> Manifest:
    """The manifest of a complete version; None means the newest complete one."""
    name = validate_name(name)
    listing = _version_files(store, name)
    if not listing:
        raise _unknown(name)
    if version is None:
        complete = [v for v, files in listing.items() if COMPLETE in files]
        if not complete:
            raise DatastoreError(f"datastore {name!r} has no complete version yet")
        version = complete[-1]
    elif version not in listing:
        raise _no_version(name, version, list(listing))
    elif COMPLETE not in listing[version]:
        raise _incomplete(name, version)
    try:
        summary = _read_complete(store, name, version)
        manifest, raw = _read_manifest(store, name, version)
    except FileNotFoundError:
        raise _no_version(name, version, list(listing)) from None
    if hashlib.sha256(raw).hexdigest() != summary["manifest_sha256"]:
        raise _incomplete(name, version)
    return manifest


@dataclass(frozen=True)
class _SourceFile:
    path: str
    """Relative POSIX path."""
    size: int
    mtime_ns: int


def create(
    store: Store,
    name: str,
    source: Path,
    *,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
) -> CreateResult:
    """The next version of ``name`` with SOURCE_DIR's regular files.

    The version is the one after the newest complete version: a create interrupted before
    completing is finished by the next one, which uploads only what is still missing. When
    the files are exactly the newest version's, nothing is made and the result says so.
    Symlinks and special files are skipped and listed in the result.
    """
    name = validate_name(name)
    source = Path(source)
    found, skipped = _scan(source)
    hashing = counter("hashing", sum(f.size for f in found), progress)
    files = tuple(_parallel(lambda f: _hash_source(source, f, hashing), found, workers))
    listing = _version_files(store, name)
    newest = max((v for v, held in listing.items() if COMPLETE in held), default=0)
    if newest and _read_manifest(store, name, newest)[0].files == files:
        total = sum(entry.size for entry in files)
        return CreateResult(
            name, newest, len(files), total, 0, 0, skipped=tuple(skipped), unchanged=True
        )
    version = newest + 1
    manifest = Manifest(name, version, files, time.time())
    raw = manifest.to_json().encode()
    store.put_bytes(datastore_version_key(name, version, MANIFEST), raw)

    stored = {key.rsplit("/", 1)[-1] for key in store.list(datastore_objects(name))}
    scanned = {f.path: f for f in found}
    send: dict[str, FileEntry] = {}
    for entry in files:
        if entry.sha256 not in stored:
            send.setdefault(entry.sha256, entry)
    sent_bytes = sum(entry.size for entry in send.values())
    uploading = counter("uploading", sent_bytes, progress) if send else None

    def upload(entry: FileEntry) -> None:
        _upload(
            store, datastore_object_key(name, entry.sha256), source, scanned[entry.path], uploading
        )

    _parallel(upload, list(send.values()), workers)

    if store.get_bytes(datastore_version_key(name, version, MANIFEST)) != raw:
        raise DatastoreError(
            f"datastore {name!r} version {version} was rewritten by another create while"
            " this one ran; rerun gridctl datastore create"
        )
    summary = {
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "files": len(files),
        "bytes": manifest.total_bytes,
        "created_at": manifest.created_at,
        "completed_at": time.time(),
    }
    store.put_bytes(datastore_version_key(name, version, COMPLETE), json.dumps(summary).encode())
    return CreateResult(
        name=name,
        version=version,
        files=len(files),
        bytes=manifest.total_bytes,
        uploaded_files=len(send),
        uploaded_bytes=sent_bytes,
        skipped=tuple(skipped),
    )


def _scan(source: Path) -> tuple[list[_SourceFile], list[str]]:
    """SOURCE_DIR's regular files, and what was skipped, both sorted by path."""
    if not source.exists():
        raise DatastoreError(f"SOURCE_DIR {source} does not exist")
    if not source.is_dir():
        raise DatastoreError(f"SOURCE_DIR {source} is not a directory")
    found: list[_SourceFile] = []
    skipped: list[str] = []

    def fail(exc: OSError) -> None:
        raise exc

    try:
        for folder, dirs, files in os.walk(source, onerror=fail):
            for name in [*dirs, *files]:
                path = Path(folder, name)
                st = path.lstat()
                rel = path.relative_to(source).as_posix()
                if stat.S_ISREG(st.st_mode):
                    found.append(_SourceFile(rel, st.st_size, st.st_mtime_ns))
                elif not stat.S_ISDIR(st.st_mode):
                    skipped.append(rel)
    except OSError as exc:
        raise DatastoreError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if not found:
        raise DatastoreError(f"SOURCE_DIR {source} holds no files")
    return sorted(found, key=lambda f: f.path), sorted(skipped)


def _changed(path: str) -> DatastoreError:
    return DatastoreError(
        f"SOURCE_DIR file {path} changed while it was being read;"
        " rerun gridctl datastore create once it no longer changes"
    )


def _unchanged(source: Path, file: _SourceFile) -> None:
    """DatastoreError unless the file still has the size and mtime it was scanned with."""
    try:
        st = (source / file.path).stat()
    except FileNotFoundError:
        raise _changed(file.path) from None
    if (st.st_size, st.st_mtime_ns) != (file.size, file.mtime_ns):
        raise _changed(file.path)


def _hash_source(
    source: Path, file: _SourceFile, on_read: Callable[[int], None] | None
) -> FileEntry:
    try:
        digest, size = _hash(source / file.path, on_read)
    except FileNotFoundError:
        raise _changed(file.path) from None
    except OSError as exc:
        raise DatastoreError(f"cannot read {source / file.path}: {exc.strerror}") from None
    if size != file.size:
        raise _changed(file.path)
    _unchanged(source, file)
    return FileEntry(file.path, size, digest)


def _upload(
    store: Store,
    key: str,
    source: Path,
    file: _SourceFile,
    sent: Sent | None,
) -> None:
    """Send one file as an object, removing the object again if the file changed meanwhile
    (its content would no longer match its key)."""
    _unchanged(source, file)
    store.put_file(key, source / file.path, sent=sent)
    try:
        _unchanged(source, file)
    except DatastoreError:
        store.delete_prefix(key)
        raise


def _hash(path: Path, on_read: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(sha256 hex digest, bytes read)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if on_read is not None:
                on_read(len(chunk))
    return digest.hexdigest(), size


def _parallel(work: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``work`` on every item, ``workers`` at a time; results in the items' order. The
    first failure stops new work and is raised once the running tasks end."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    done: dict[int, R] = {}
    pending = iter(enumerate(items))
    with ThreadPoolExecutor(workers, thread_name_prefix="gridctl-datastore") as pool:
        running: dict[Future[R], int] = {}
        while True:
            for index, item in itertools.islice(
                pending, workers * QUEUED_PER_WORKER - len(running)
            ):
                running[pool.submit(work, item)] = index
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    return [done[index] for index in range(len(items))]


def delete(store: Store, name: str, version: int | None = None) -> list[int]:
    """Delete one version (or all); returns the version numbers removed. Objects that no
    remaining version uses are deleted too."""
    name = validate_name(name)
    listing = _version_files(store, name)
    if version is None:
        if not listing and next(iter(store.list(datastore_prefix(name))), None) is None:
            raise _unknown(name)
        store.delete_prefix(datastore_prefix(name))
        return list(listing)
    if not listing:
        raise _unknown(name)
    if version not in listing:
        raise _no_version(name, version, list(listing))
    remaining = [v for v in listing if v != version]
    if not remaining:
        store.delete_prefix(datastore_prefix(name))
        return [version]
    # Read what stays before deleting anything: a manifest we cannot read stops us here.
    used = {entry.sha256 for v in remaining for entry in _read_manifest(store, name, v)[0].files}
    store.delete_prefix(datastore_version_key(name, version, COMPLETE))  # unusable from here on
    store.delete_prefix(datastore_version_key(name, version))
    unused = [k for k in store.list(datastore_objects(name)) if k.rsplit("/", 1)[-1] not in used]
    _parallel(store.delete_prefix, unused, DEFAULT_WORKERS)
    return [version]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on a name's cache folder across processes (and threads: each call
    opens its own descriptor), released when the block ends or the process dies."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _folder(cache: Path, name: str) -> Path:
    """The name's folder of the cache, made if need be."""
    folder = Path(cache) / validate_name(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatastoreError(
            f"cannot create the datastore cache {folder}: {exc.strerror}"
        ) from None
    return folder


def _trees(folder: Path) -> list[Path]:
    """The version trees in a name's folder."""
    return [p for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()]


def _materialize(store: Store, manifest: Manifest, folder: Path, workers: int) -> Path:
    """The version as a tree at ``<folder>/v<version>`` (call with the folder locked).

    A tree finished before for this very manifest is reused as is: no download, no hashing.
    Otherwise it is built beside and moved into place whole; the marker ``v<version>.done``
    (the manifest's hash: a version number deleted and created again is another manifest)
    is written last. A failure leaves no tree behind.
    """
    what = f"datastore {manifest.name!r} version {manifest.version}"
    tree = folder / f"v{manifest.version}"
    marker = folder / f"v{manifest.version}.done"
    digest = hashlib.sha256(manifest.to_json().encode()).hexdigest()
    if tree.is_dir() and marker.is_file() and marker.read_text() == digest:
        return tree
    marker.unlink(missing_ok=True)
    readonly.remove(tree)
    for stale in folder.glob(f".v{manifest.version}.tmp-*"):
        readonly.remove(stale)  # left by a process that died while building
    temp = Path(tempfile.mkdtemp(dir=folder, prefix=f".v{manifest.version}.tmp-"))
    try:
        _fill(store, manifest, temp, what, workers)
        os.rename(temp, tree)
    except BaseException as exc:
        readonly.remove(temp)
        if _disk_full(exc):
            raise DatastoreError(f"disk full while materializing {what} in {folder}") from None
        raise
    partial = marker.with_name(f".{marker.name}.{uuid.uuid4().hex}")
    partial.write_text(digest)
    os.replace(partial, marker)
    return tree


def hold(
    store: Store,
    manifest: Manifest,
    cache: Path,
    holder: str,
    *,
    workers: int = DEFAULT_WORKERS,
) -> Path:
    """The version's tree, materialized if need be and sealed until ``holder`` (an
    experiment's name) lets go of it with ``release``."""
    folder = _folder(cache, manifest.name)
    with _locked(folder):
        tree = _materialize(store, manifest, folder, workers)
        holders = folder / ".holders"
        first = not any(holders.glob("*"))
        holders.mkdir(exist_ok=True)
        (holders / holder).touch()
        for sealed in _trees(folder) if first else [tree]:
            readonly.seal(sealed)
    return tree


def release(cache: Path, name: str, holder: str) -> None:
    """``holder`` no longer uses the name's trees; the last one out lifts the seal."""
    folder = Path(cache) / name
    if not (folder / ".holders" / holder).exists():
        return
    with _locked(folder):
        (folder / ".holders" / holder).unlink(missing_ok=True)
        if not any((folder / ".holders").glob("*")):
            for tree in _trees(folder):
                readonly.unseal(tree)


def forget(cache: Path, name: str, versions: Sequence[int] | None) -> None:
    """Remove this machine's trees of deleted versions (all with None), and the mount
    dirs made of them; a mount dir re-pointed at something else since is left alone."""
    folder = Path(cache) / name
    if not folder.is_dir():
        return
    with _locked(folder):
        doomed = _trees(folder) if versions is None else [folder / f"v{v}" for v in versions]
        targets = {os.path.abspath(tree) for tree in doomed}
        for entry in (folder / ".mounts").glob("*"):
            mount_dir = Path(entry.read_text())
            if not mount_dir.is_symlink():
                entry.unlink()
            elif os.readlink(mount_dir) in targets:
                mount_dir.unlink()
                entry.unlink()
        for tree in doomed:
            (tree.parent / f"{tree.name}.done").unlink(missing_ok=True)
            readonly.remove(tree)
    if versions is None:
        readonly.remove(folder)


def _disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is ENOSPC (or a full quota)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _fill(store: Store, manifest: Manifest, root: Path, what: str, workers: int) -> None:
    """Every file of ``manifest`` under the empty folder ``root``: one task per object,
    its first file linked to the store's copy or downloaded, the others linked to it."""
    groups: dict[str, list[FileEntry]] = {}
    for entry in manifest.files:
        groups.setdefault(entry.sha256, []).append(entry)
    device = root.stat().st_dev
    local = {sha: store.local_path(datastore_object_key(manifest.name, sha)) for sha in groups}
    need = sum(
        entries[0].size for sha, entries in groups.items() if not _on_device(local[sha], device)
    )
    free = shutil.disk_usage(root).free
    if need > free:
        raise DatastoreError(
            f"not enough space in {root.parent} for {what}:"
            f" need {format_bytes(need)}, have {format_bytes(free)}"
        )
    for folder in sorted({str(Path(e.path).parent) for e in manifest.files}):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def place(group: tuple[str, list[FileEntry]]) -> None:
        sha, entries = group
        first = root / entries[0].path
        try:
            stored = local[sha]
            if stored is not None:
                _link_or_copy(stored, first)
            else:
                _download(store, datastore_object_key(manifest.name, sha), first, entries[0], what)
        except FileNotFoundError:
            raise DatastoreError(
                f"{what}: {entries[0].path}: its content is missing from the store"
            ) from None
        for entry in entries[1:]:
            _link_or_copy(first, root / entry.path)

    _parallel(place, list(groups.items()), workers)


def _on_device(path: Path | None, device: int) -> bool:
    """Whether ``path`` exists on filesystem ``device``, so a hard link to it costs no space."""
    if path is None:
        return False
    try:
        return path.stat().st_dev == device
    except OSError:
        return False


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link where the filesystem allows it (same device, link count not exhausted),
    else a copy."""
    try:
        readonly.link(src, dest)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise
        shutil.copyfile(src, dest)


def _download(store: Store, key: str, dest: Path, entry: FileEntry, what: str) -> None:
    for _attempt in range(DOWNLOAD_ATTEMPTS):
        store.get_file(key, dest)
        if _hash(dest)[0] == entry.sha256:
            return
        dest.unlink()
    raise DatastoreError(
        f"{what}: {entry.path}: content does not match its hash after {DOWNLOAD_ATTEMPTS} downloads"
    )


def mount(tree: Path, mount_dir: Path) -> None:
    """Make ``mount_dir`` a symlink to ``tree``, atomically, and note it beside the tree so
    that ``forget`` can take it away. An earlier mount (a symlink) or an empty folder is
    replaced; anything else there is the user's and refused."""
    mount_dir = Path(mount_dir)
    if mount_dir.is_symlink():
        pass
    elif mount_dir.is_dir():
        if any(mount_dir.iterdir()):
            raise _not_a_mount(mount_dir)
        mount_dir.rmdir()
    elif mount_dir.exists():
        raise _not_a_mount(mount_dir)
    link = mount_dir.with_name(f".{mount_dir.name}.{uuid.uuid4().hex}.link")
    try:
        mount_dir.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.abspath(tree), link)
        os.replace(link, mount_dir)
    except OSError as exc:
        with contextlib.suppress(OSError):
            link.unlink()
        raise DatastoreError(f"cannot create the mount dir {mount_dir}: {exc.strerror}") from None
    noted = Path(tree).parent / ".mounts"
    noted.mkdir(exist_ok=True)
    absolute = os.path.abspath(mount_dir)
    (noted / hashlib.sha256(absolute.encode()).hexdigest()[:32]).write_text(absolute)


def _not_a_mount(mount_dir: Path) -> DatastoreError:
    return DatastoreError(f"mount dir {mount_dir} exists and is not a datastore mount")
