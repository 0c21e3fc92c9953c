"""Content-addressed code bundles: what a run ships, its id, its archive and its upload.

The id hashes paths, kinds, exec bits and contents only, so the same tree gives the same id
wherever it lives and whenever it was touched, and a bundle already in the store is never
uploaded twice. Hashes are cached per root (keyed by size, mtime and inode) so re-scanning an
unchanged big tree costs a stat per file rather than a read.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gridctl.agent.core.contract import bundle_key
from gridctl.agent.core.progress import Progress, counter
from gridctl.agent.core.store import Store
from gridctl.cli.errors import GridctlError
from gridctl.cli.ignore import select_files

SIZE_WARNING_BYTES = 50 * 1024 * 1024
DOWNLOADS_MARKER = ".gridctl-artifacts"
"""Written by ``gridctl artifacts`` into the folder it downloads to: whatever folder holds
it is never bundled, so downloaded artifacts do not ride along with the next run."""
RACY_NS = 2_000_000_000
"""Files modified this close to a scan are re-hashed next time: timestamps can be coarse."""
_NAMES_SHOWN = 20


@dataclass(frozen=True, slots=True)
class BundleEntry:
    path: str
    kind: str
    """``"file"`` or ``"link"``."""
    size: int
    executable: bool
    digest: str
    """sha256 hex of the content for files, the (relative) target for links."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    entries: tuple[BundleEntry, ...]
    bundle_id: str
    total_bytes: int
    warnings: tuple[str, ...]

    @property
    def key(self) -> str:
        return bundle_key(self.bundle_id)


def delete_unused(store: Store, bundle_ids: Iterable[str], in_use: Iterable[str]) -> None:
    """Delete the bundles of deleted runs that no remaining run uses."""
    for bundle_id in set(bundle_ids) - set(in_use):
        store.delete_prefix(bundle_key(bundle_id))


def scan(root: Path, *, cache_dir: Path | None = None, home: Path | None = None) -> Bundle:
    """The bundle ``root`` would make now; ``cache_dir`` holds hashes between scans.

    ``home`` (gridctl's own) is never bundled when it lies inside ``root``: reading its
    registry, even to hash it, would end this process's SQLite locks on it, and then
    another process may delete the journal this process still reads (a ``--wait`` saw its
    run queued forever)."""
    root = Path(root)
    root_real = os.path.realpath(root)
    paths: Sequence[str] = select_files(root).paths
    left_out = _download_folders(root_real, paths) + _home_folder(root_real, home)
    if left_out:
        paths = [path for path in paths if not path.startswith(left_out)]
    prefix = os.path.join(root_real, "")
    hashes = _HashCache(cache_dir, root_real)
    entries: list[BundleEntry] = []
    outside: list[str] = []
    for rel in paths:
        full = prefix + rel
        try:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                digest = hashes.digest(rel, full, st)
                executable = bool(st.st_mode & 0o111)
                entries.append(BundleEntry(rel, "file", st.st_size, executable, digest))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                kept = _inside_target(root_real, rel, target)
                if kept is None:
                    outside.append(f"{rel} -> {target}")
                else:
                    entries.append(BundleEntry(rel, "link", 0, False, kept))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise GridctlError(f"cannot read {root / rel}: {exc.strerror}") from exc
    hashes.save()
    return Bundle(
        root=root,
        entries=tuple(entries),
        bundle_id=bundle_id(entries),
        total_bytes=sum(e.size for e in entries),
        warnings=_warnings(entries, outside),
    )


def _home_folder(root_real: str, home: Path | None) -> tuple[str, ...]:
    """``("HOME/",)`` when gridctl's home lies inside the project, as a path in it."""
    if home is None:
        return ()
    inside = os.path.relpath(os.path.realpath(home), root_real)
    if inside == os.curdir or inside.startswith(os.pardir):
        return ()
    return (os.path.join(inside, ""),)


def _download_folders(root_real: str, paths: Sequence[str]) -> tuple[str, ...]:
    """The folders, as ``"FOLDER/"``, marked as gridctl's download folders (each folder of
    the tree is looked at once)."""
    folders: set[str] = set()
    for parent in {path.rpartition("/")[0] for path in paths}:
        folder = parent
        while folder and folder not in folders:
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    return tuple(
        f"{folder}/"
        for folder in folders
        if os.path.isfile(os.path.join(root_real, folder, DOWNLOADS_MARKER))
    )


def mark_downloads(dest: Path) -> None:
    """Mark ``dest`` as a download folder, unless it already holds files of the user's
    (``--dest .`` must not hide a project from its own bundles)."""
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / DOWNLOADS_MARKER
    if not marker.exists() and not any(dest.iterdir()):
        marker.write_text("gridctl downloads artifacts here; gridctl never bundles this folder\n")


def bundle_id(entries: Iterable[BundleEntry]) -> str:
    """sha256 over the sorted (path, kind, executable, digest) of every entry."""
    lines = sorted(f"{e.path}\0{e.kind}\0{int(e.executable)}\0{e.digest}\0" for e in entries)
    text = "gridctl-bundle-v1\0" + "".join(lines)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _inside_target(root_real: str, rel: str, target: str) -> str | None:
    """The target to store for link ``rel`` (relative, staying inside), or None if it leaves."""
    real = os.path.realpath(os.path.join(root_real, rel))
    if real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep):
        return None
    folder = posixpath.dirname(rel)
    if not os.path.isabs(target):
        lexical = posixpath.normpath(posixpath.join(folder, target))
        if lexical != ".." and not lexical.startswith("../"):
            return target
    return os.path.relpath(real, os.path.join(root_real, folder))


def _warnings(entries: list[BundleEntry], outside: list[str]) -> tuple[str, ...]:
    found = []
    if outside:
        found.append("skipped symlinks pointing outside the project: " + _name_some(outside))
    names = "\0".join(e.path for e in entries)
    secrets = [e.path for e in entries if _looks_secret(e.path)] if _HINT.search(names) else []
    if secrets:
        found.append(
            "possible secrets in the code bundle (list them in .gridignore to leave them out): "
            + _name_some(secrets)
        )
    return tuple(found)


def _name_some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


_SECRET = re.compile(r"(?:^|/)(?:\.env|\.netrc|id_rsa[^/]*|[^/]*\.pem)\Z|(?:^|/)\.aws/", re.DOTALL)
"""``.env``, ``.netrc``, ``id_rsa*``, ``*.pem`` and anything below a ``.aws`` folder."""
_HINT = re.compile(r"\.env|\.netrc|id_rsa|\.pem|\.aws/")
"""What every path ``_SECRET`` finds contains: one search of all paths at once spares a
search of each in the usual bundle, which has none."""


def _looks_secret(path: str) -> bool:
    return _SECRET.search(path) is not None


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _HashCache:
    """Content hashes of one root between scans, in ``cache_dir/<hash of root>.hashes``.

    Each path maps to ``"<size> <mtime_ns> <inode> <sha256>"``; a hash is reused while the
    first three still match. Files modified within RACY_NS of the scan are not saved, since
    a second write inside one timestamp tick would keep all three. Unreadable or corrupt
    cache files count as empty; failing to save one only costs speed.

    The file is NUL-separated text (a header, then path and entry in turn): no path holds a
    NUL, and splitting it is several times faster than parsing JSON, which was the largest
    part of re-scanning an unchanged 50,000-file tree.
    """

    HEADER = "gridctl-hashes-v2"

    def __init__(self, cache_dir: Path | None, root_real: str) -> None:
        self.path: Path | None = None
        if cache_dir is not None:
            name = hashlib.sha256(os.fsencode(root_real)).hexdigest()[:32]
            self.path = Path(cache_dir) / f"{name}.hashes"
        self.old = self._load()
        self.new: dict[str, str] = {}
        self.trusted_before = time.time_ns() - RACY_NS

    def digest(self, rel: str, full: str, st: os.stat_result) -> str:
        key = f"{st.st_size} {st.st_mtime_ns} {st.st_ino} "
        hit = self.old.get(rel)
        if hit is not None and len(hit) == len(key) + 64 and hit.startswith(key):
            entry = hit  # the same string: comparing the caches to skip a save stays cheap
        else:
            entry = key + _sha256_file(full)
        if st.st_mtime_ns < self.trusted_before:
            self.new[rel] = entry
        return entry[-64:]

    def _load(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            fields = self.path.read_bytes().decode("utf-8", "surrogateescape").split("\0")
        except (OSError, UnicodeError):
            return {}
        if fields[0] != self.HEADER or len(fields) % 2 == 0:
            return {}
        return dict(zip(fields[1::2], fields[2::2], strict=True))

    def save(self) -> None:
        if self.path is None or self.new == self.old:
            return
        fields = [self.HEADER, *itertools.chain.from_iterable(self.new.items())]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".hashes")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write("\0".join(fields).encode("utf-8", "surrogateescape"))
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return


class _HashingReader:
    """Reads a file for tarfile while hashing it, to catch files edited mid-archive."""

    def __init__(self, handle: BinaryIO, on_read: Callable[[int], None] | None) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        if self.on_read is not None:
            self.on_read(len(data))
        return data


def write_archive(bundle: Bundle, dest: Path, progress: Progress | None = None) -> None:
    """A deterministic tar.gz of exactly the entries: same bundle, same bytes."""
    on_read = counter("packing", bundle.total_bytes, progress)
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in sorted(bundle.entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.digest
                info.mode = 0o777
                tar.addfile(info)
                continue
            info.size = entry.size
            info.mode = 0o755 if entry.executable else 0o644
            full = bundle.root / entry.path
            try:
                with open(full, "rb") as handle:
                    reader = _HashingReader(handle, on_read)
                    tar.addfile(info, reader)
            except OSError as exc:
                raise GridctlError(f"{full} changed while bundling; run again ({exc})") from exc
            if reader.digest.hexdigest() != entry.digest:
                raise GridctlError(f"{full} changed while bundling; run again")


def upload(bundle: Bundle, store: Store, *, progress: Progress | None = None) -> bool:
    """Put the bundle's archive in ``store`` unless it is there already; True if uploaded."""
    if store.exists(bundle.key):
        return False
    with tempfile.TemporaryDirectory(prefix="gridctl-bundle-") as tmp:
        archive = Path(tmp) / "bundle.tar.gz"
        write_archive(bundle, archive, progress)
        sent = counter("uploading", archive.stat().st_size, progress)
        store.put_file(bundle.key, archive, sent=sent)
    return True
