"""ArtifactSync: parallel uploads of what changed, safe against a script still writing, and
the estimate the spot path uses to decide when to kill the script."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gridctl.agent.core.store import LocalStore, Sent
from gridctl.agent.runner import artifacts
from gridctl.agent.runner.artifacts import (
    DEFAULT_THROUGHPUT,
    MARGIN,
    MIN_MEASURED_BYTES,
    PUT_LATENCY,
    ArtifactSync,
)

PREFIX = "runs/r/e/artifacts"
WAIT = 30
"""Seconds before a test that would otherwise hang fails instead; never reached when passing."""


class HookedStore(LocalStore):
    """A LocalStore that records every upload and lets a test act around one:
    ``around(key, path, upload)`` must call ``upload()`` to store the file."""

    def __init__(self, root: Path, around: Callable[[str, Path, Callable[[], None]], None]):
        super().__init__(root)
        self.around = around
        self.puts: list[str] = []

    def put_file(self, key: str, path: Path, sent: Sent | None = None) -> None:
        self.puts.append(key)
        self.around(key, path, lambda: LocalStore.put_file(self, key, path, sent))


def write(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def stored(store: LocalStore, rel: str) -> bytes:
    return store.get_bytes(f"{PREFIX}/{rel}")


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gridctl-sync")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An exec dir as unpacked from the bundle: its files are not artifacts."""
    exec_dir = tmp_path / "exec"
    write(exec_dir, "train.py", b"print('hi')\n")
    write(exec_dir, "data/config.json", b"{}")
    return exec_dir


def test_parallel_sync_sends_exactly_the_changed_files_once(root: Path, tmp_path: Path):
    changed = ["out/a.bin", "out/deep/b.bin", "c.txt", "data/config.json"]
    # Every upload waits for all the others: sequential uploads would never get past it.
    together = threading.Barrier(len(changed), timeout=WAIT)
    store = HookedStore(tmp_path / "store", lambda _key, _path, upload: (together.wait(), upload()))
    sync = ArtifactSync(root, store, PREFIX, workers=len(changed))
    for rel in changed:
        write(root, rel, rel.encode() * 3)

    assert sync.sync() == len(changed)
    assert sorted(store.puts) == sorted(f"{PREFIX}/{rel}" for rel in changed)
    for rel in changed:
        assert stored(store, rel) == rel.encode() * 3
    assert not store.exists(f"{PREFIX}/train.py")

    store.puts.clear()
    assert sync.sync() == 0
    assert store.puts == []


def test_a_file_modified_during_its_own_upload_is_sent_again(root: Path, tmp_path: Path):
    def append_after_upload(key: str, path: Path, upload: Callable[[], None]) -> None:
        upload()
        if len(store.puts) == 1:
            with path.open("ab") as f:
                f.write(b" and more")

    store = HookedStore(tmp_path / "store", append_after_upload)
    sync = ArtifactSync(root, store, PREFIX)
    write(root, "ckpt.pt", b"epoch 1")

    assert sync.sync() == 1
    assert stored(store, "ckpt.pt") == b"epoch 1"
    assert sync.pending() == (1, len(b"epoch 1 and more"))
    assert sync.sync() == 1
    assert stored(store, "ckpt.pt") == b"epoch 1 and more"
    assert sync.sync() == 0


def test_a_file_deleted_before_its_upload_is_skipped(root: Path, tmp_path: Path):
    def delete_first(key: str, path: Path, upload: Callable[[], None]) -> None:
        if key.endswith("gone.tmp"):
            path.unlink()
        upload()

    store = HookedStore(tmp_path / "store", delete_first)
    sync = ArtifactSync(root, store, PREFIX)
    write(root, "gone.tmp", b"x")
    write(root, "kept.txt", b"y")

    assert sync.sync() == 1
    assert stored(store, "kept.txt") == b"y"
    assert not store.exists(f"{PREFIX}/gone.tmp")
    assert sync.pending() == (0, 0)


def test_a_sync_called_during_another_waits_and_sends_only_what_is_left(root: Path, tmp_path: Path):
    first_upload_started, release = threading.Event(), threading.Event()

    def hold_first(key: str, path: Path, upload: Callable[[], None]) -> None:
        if len(store.puts) == 1:
            first_upload_started.set()
            assert release.wait(WAIT)
        upload()

    store = HookedStore(tmp_path / "store", hold_first)
    sync = ArtifactSync(root, store, PREFIX)
    write(root, "ckpt.pt", b"weights")

    # Counts the syncs that reached the lock, so the test knows the second one is waiting.
    entered = threading.Semaphore(0)
    lock = sync._syncing

    class Watched:
        def __enter__(self) -> None:
            entered.release()
            lock.acquire()

        def __exit__(self, *exc: object) -> None:
            lock.release()

    sync._syncing = Watched()  # type: ignore[assignment]
    results: dict[str, int] = {}
    periodic = threading.Thread(target=lambda: results.update(periodic=sync.sync()))
    periodic.start()
    assert first_upload_started.wait(WAIT)
    write(root, "log.txt", b"written while the periodic sync runs")
    final = threading.Thread(target=lambda: results.update(final=sync.sync()))
    final.start()
    assert entered.acquire(timeout=WAIT) and entered.acquire(timeout=WAIT)
    release.set()
    periodic.join(WAIT)
    final.join(WAIT)

    assert results == {"periodic": 1, "final": 1}
    assert sorted(store.puts) == [f"{PREFIX}/ckpt.pt", f"{PREFIX}/log.txt"]


def test_an_upload_error_is_raised_after_the_other_uploads_finish(root: Path, tmp_path: Path):
    failed = threading.Event()

    def fail_one(key: str, path: Path, upload: Callable[[], None]) -> None:
        if key.endswith("bad.bin"):
            failed.set()
            raise PermissionError("denied")
        assert failed.wait(WAIT)  # still uploading when the error happens
        upload()

    store = HookedStore(tmp_path / "store", fail_one)
    sync = ArtifactSync(root, store, PREFIX, workers=2)
    write(root, "bad.bin", b"b")
    write(root, "good.bin", b"g")

    with pytest.raises(PermissionError, match="denied"):
        sync.sync()
    assert stored(store, "good.bin") == b"g"
    assert sync_threads() == []
    # The file that made it is recorded; the failed one is still to send.
    assert sync.pending() == (1, 1)


def test_pending_counts_new_and_modified_files_and_bytes(root: Path, tmp_path: Path):
    sync = ArtifactSync(root, LocalStore(tmp_path / "store"), PREFIX)
    assert sync.pending() == (0, 0)

    write(root, "a", b"x" * 10)
    write(root, "sub/b", b"x" * 20)
    write(root, "train.py", b"x" * 30)
    assert sync.pending() == (3, 60)

    sync.sync()
    assert sync.pending() == (0, 0)


def test_estimate_grows_with_pending_bytes_at_the_default_throughput(root: Path, tmp_path: Path):
    sync = ArtifactSync(root, LocalStore(tmp_path / "store"), PREFIX, workers=4)
    assert sync.estimate() == pytest.approx(MARGIN)

    write(root, "small", b"x" * 1000)
    small = sync.estimate()
    write(root, "big", b"x" * 3_000_000)
    big = sync.estimate()

    assert MARGIN < small < big
    assert big == pytest.approx(3_001_000 / DEFAULT_THROUGHPUT + 2 * PUT_LATENCY / 4 + MARGIN)


def test_estimate_uses_the_throughput_measured_by_large_enough_syncs(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A fake clock: each upload takes one second, whatever its size."""
    now = [0.0]
    monkeypatch.setattr(artifacts, "monotonic", lambda: now[0])

    def one_second(key: str, path: Path, upload: Callable[[], None]) -> None:
        upload()
        now[0] += 1.0

    store = HookedStore(tmp_path / "store", one_second)
    sync = ArtifactSync(root, store, PREFIX, workers=1)

    write(root, "small.txt", b"x" * 1000)
    sync.sync()
    assert sync.throughput == DEFAULT_THROUGHPUT  # too small to measure

    write(root, "ckpt-1.pt", b"x" * 2 * MIN_MEASURED_BYTES)
    sync.sync()
    assert sync.throughput == 2 * MIN_MEASURED_BYTES

    write(root, "ckpt-2.pt", b"x" * 4 * MIN_MEASURED_BYTES)
    assert sync.estimate() == pytest.approx(2 + PUT_LATENCY + MARGIN)
