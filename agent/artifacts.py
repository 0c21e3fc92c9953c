"""Artifacts: every file the script creates or modifies inside its exec dir.

A snapshot taken after the bundle is unpacked is the baseline; each sync uploads what
differs from it and from the previous sync, so repeated syncs send only new changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from gridctl.agent.store import Store

Snapshot = dict[str, tuple[int, int]]
"""Relative POSIX path -> (size, mtime in ns) of each regular file."""


def snapshot(root: Path) -> Snapshot:
    found: Snapshot = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    rel = Path(entry.path).relative_to(root).as_posix()
                    found[rel] = (st.st_size, st.st_mtime_ns)
    return found


class ArtifactSync:
    def __init__(self, root: Path, store: Store, prefix: str) -> None:
        self.root = root
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.synced: Snapshot = snapshot(root)

    def sync(self) -> int:
        """Upload what changed since the last sync; returns the number of files sent."""
        sent = 0
        for rel, state in snapshot(self.root).items():
            if self.synced.get(rel) == state:
                continue
            try:
                self.store.put_file(f"{self.prefix}/{rel}", self.root / rel)
            except FileNotFoundError:
                continue  # removed by the script while we looked
            self.synced[rel] = state
            sent += 1
        return sent
