"""Where bundles, artifacts, logs and status live: a local directory or (on AWS) a bucket.

Keys are POSIX paths such as ``bundles/<id>.tar.gz`` or ``runs/<run>/<exp>/artifacts/...``;
every writer goes through this interface so the agent never cares which one it has.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gridctl.agent.core import readonly

Sent = Callable[[int], None]
"""Called with the number of bytes a transfer just moved (``progress.counter`` makes one)."""


@dataclass(frozen=True)
class Listed:
    size: int
    tag: str


class Store(Protocol):
    def exists(self, key: str) -> bool: ...

    def put_file(self, key: str, path: Path, sent: Sent | None = None) -> None: ...

    def get_file(self, key: str, dest: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if nothing is there yet: False when another writer was first
        (how a gang's nodes claim ranks without a server)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def listing(self, prefix: str) -> dict[str, Listed]: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def local_path(self, key: str) -> Path | None:
        """Where the key's content already lies on this machine, if it does: readers may
        link to it instead of copying."""
        ...


class LocalStore:
    """A directory laid out by key; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        parts = key.split("/")
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid store key: {key!r}")
        return self.root.joinpath(*parts)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def put_file(self, key: str, path: Path, sent: Sent | None = None) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    if sent:
                        sent(len(chunk))
            shutil.copystat(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_file(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.path(key), dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A complete temp file hard-linked to the key: the link fails if the key exists."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in sorted(files):
                if name.startswith(".tmp-"):
                    continue
                yield Path(dirpath, name).relative_to(self.root).as_posix()

    def local_path(self, key: str) -> Path:
        return self.path(key)

    def listing(self, prefix: str) -> dict[str, Listed]:
        found = {}
        for key in self.list(prefix):
            st = self.path(key).stat()
            found[key] = Listed(st.st_size, f"{st.st_size}-{st.st_mtime_ns}")
        return found

    def delete_prefix(self, prefix: str) -> None:
        """Objects may be sealed read-only (datastore trees hard link them): those are
        unsealed for their deletion, keeping their other links sealed."""
        target = self.path(prefix.rstrip("/"))
        try:
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        except PermissionError:
            readonly.remove(target)
