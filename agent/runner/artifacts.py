"""Artifacts: every file the script creates or modifies inside its exec dir, but for
Python's bytecode caches (``__pycache__/``, ``*.pyc``), which importing the project writes.

A snapshot taken after the bundle is unpacked is the baseline; each sync uploads what
differs from it and from the previous sync, so repeated syncs send only new changes.
On a spot notice the agent has about two minutes: uploads run in parallel, and
``estimate()`` tells it how early to kill the script so that the final sync still fits.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from time import monotonic

from gridctl.agent.core.store import Store

Snapshot = dict[str, tuple[int, int]]
"""Relative POSIX path -> (size, mtime in ns) of each regular file."""

DEFAULT_WORKERS = 8
"""Enough uploads at once to hide each small file's request latency (bench/bench_spot.py
compares the final sync with a plain 8-thread boto3 upload)."""
DEFAULT_THROUGHPUT = 25e6
"""Bytes/s assumed before a sync is measured: 200 Mbit/s, below what any instance fit to
train gets to S3, so the first estimate errs long (killing early) rather than short."""
MIN_MEASURED_BYTES = 1 << 20
"""Syncs sending less take as long as their request latency, which says nothing of bandwidth."""
PUT_LATENCY = 0.05
"""Seconds one small PUT costs apart from its bytes (a pessimistic in-region round trip);
each worker pays it once per file."""
MARGIN = 5.0
"""Seconds for what a sync does besides uploading: scanning the exec dir, starting the
workers, and slack for a throughput that dips during the final sync."""


BYTECODE_DIR = "__pycache__"
BYTECODE_SUFFIX = ".pyc"


def snapshot(root: Path) -> Snapshot:
    """Files and folders the script deletes while we walk are left out, not an error."""
    found: Snapshot = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name != BYTECODE_DIR:
                                stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(
                            BYTECODE_SUFFIX
                        ):
                            st = entry.stat(follow_symlinks=False)
                            rel = Path(entry.path).relative_to(root).as_posix()
                            found[rel] = (st.st_size, st.st_mtime_ns)
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            if directory == root:
                raise
    return found


class ArtifactSync:
    def __init__(
        self, root: Path, store: Store, prefix: str, *, workers: int = DEFAULT_WORKERS
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.root = root
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.workers = workers
        self.synced: Snapshot = snapshot(root)
        # _syncing serializes whole syncs (the periodic one and the final one may overlap);
        # _state guards what pending() and estimate() read while a sync is under way.
        self._syncing = threading.Lock()
        self._state = threading.Lock()
        self._measured_bytes = 0
        self._measured_seconds = 0.0

    def _changed(self) -> Snapshot:
        current = snapshot(self.root)
        with self._state:
            return {rel: st for rel, st in current.items() if self.synced.get(rel) != st}

    def pending(self) -> tuple[int, int]:
        """(files, bytes) a sync would send now, counting those an ongoing sync is sending."""
        changed = self._changed()
        return len(changed), sum(size for size, _mtime in changed.values())

    @property
    def throughput(self) -> float:
        """Bytes/s of the syncs so far that were big enough to measure, else the default."""
        with self._state:
            if not self._measured_bytes:
                return DEFAULT_THROUGHPUT
            return self._measured_bytes / max(self._measured_seconds, 1e-9)

    def estimate(self) -> float:
        """Seconds the next sync would take, erring long: the kill deadline depends on it."""
        files, size = self.pending()
        return size / self.throughput + files * PUT_LATENCY / self.workers + MARGIN

    def sync(self) -> int:
        """Upload what changed since the last sync; returns the number of files sent.

        A call made during another waits for it, then sends only what is still changed.
        Each file is recorded with the state seen before its upload, so a file modified
        while it was being sent differs next time and is sent again. A file deleted before
        it could be read is skipped; any other upload error is raised once every other
        upload has finished, those having been recorded.
        """
        with self._syncing:
            start = monotonic()
            changed = self._changed()
            if not changed:
                return 0
            sent, sent_bytes = 0, 0
            error: BaseException | None = None
            workers = min(self.workers, len(changed))
            with ThreadPoolExecutor(workers, thread_name_prefix="gridctl-sync") as pool:
                futures: dict[Future[None], str] = {
                    pool.submit(self.store.put_file, f"{self.prefix}/{rel}", self.root / rel): rel
                    for rel in changed
                }
                for future in as_completed(futures):
                    rel = futures[future]
                    failure = future.exception()
                    if isinstance(failure, FileNotFoundError):
                        continue  # removed by the script after we looked
                    if failure is not None:
                        if error is None:
                            error = failure
                        continue
                    with self._state:
                        self.synced[rel] = changed[rel]
                    sent += 1
                    sent_bytes += changed[rel][0]
            if error is not None:
                raise error
            if sent_bytes >= MIN_MEASURED_BYTES:
                with self._state:
                    self._measured_bytes += sent_bytes
                    self._measured_seconds += monotonic() - start
            return sent
