"""Datastores: versions that upload only what changed, resume after an interruption, and
mount read-only (even for root) from links or verified downloads; and their bad input."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.agent.core import datastore, readonly
from gridctl.agent.core.datastore import DatastoreError, FileEntry, Manifest
from gridctl.agent.core.store import LocalStore, Sent


class Interrupted(Exception):
    """Stands for a Ctrl-C in the middle of uploading."""


class TestStore(LocalStore):
    """A LocalStore that counts transfers and, on request, acts like a bucket (nothing is
    local), stops after some uploads, corrupts downloads or fills the disk."""

    __test__ = False

    def __init__(
        self,
        root: Path,
        *,
        remote: bool = False,
        uploads_before_failing: int | None = None,
        corrupt_downloads: int = 0,
        disk_full: bool = False,
    ) -> None:
        super().__init__(root)
        self.remote = remote
        self.uploads_before_failing = uploads_before_failing
        self.corrupt_downloads = corrupt_downloads
        self.disk_full = disk_full
        self.puts: list[str] = []
        self.gets: Counter[str] = Counter()
        self._lock = threading.Lock()

    def local_path(self, key: str) -> Path | None:
        return None if self.remote else super().local_path(key)

    def put_file(self, key: str, path: Path, sent: Sent | None = None) -> None:
        with self._lock:
            if self.uploads_before_failing is not None:
                if self.uploads_before_failing == 0:
                    raise Interrupted
                self.uploads_before_failing -= 1
            self.puts.append(key)
        super().put_file(key, path, sent)

    def get_file(self, key: str, dest: Path) -> None:
        with self._lock:
            self.gets[key] += 1
            corrupt = self.corrupt_downloads > 0
            self.corrupt_downloads -= corrupt
        if self.disk_full:
            dest.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))
        super().get_file(key, dest)
        if corrupt:
            dest.write_bytes(b"garbage")


@pytest.fixture
def store(tmp_path: Path) -> TestStore:
    return TestStore(tmp_path / "store")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "images" / "deep").mkdir(parents=True)
    (root / "labels.txt").write_text("cat\ndog\n")
    (root / "images" / "a.bin").write_bytes(b"a" * 1000)
    (root / "images" / "b.bin").write_bytes(b"b" * 2000)
    (root / "images" / "deep" / "copy-of-a.bin").write_bytes(b"a" * 1000)
    (root / "empty.txt").write_bytes(b"")
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def two_versions(store: LocalStore, source: Path) -> None:
    """imgs version 1 of ``source``, then version 2 with labels.txt changed."""
    datastore.create(store, "imgs", source)
    (source / "labels.txt").write_text("changed\n")
    datastore.create(store, "imgs", source)


def hold(store: LocalStore, manifest: Manifest, cache: Path, **options) -> Path:
    """Materialize and seal a version, as an experiment starting on it does."""
    return datastore.hold(store, manifest, cache, "exp", **options)


def objects(store: LocalStore, name: str) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in store.list(f"datastores/{name}/objects")}


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "1 to 63 characters"),
        ("a" * 64, "1 to 63 characters"),
        ("Images", "lowercase letters, digits and '-'"),
        ("im_ages", "lowercase letters, digits and '-'"),
        ("../x", "lowercase letters, digits and '-'"),
        ("1images", "start with a letter"),
        ("-images", "start with a letter"),
        ("images-", "end with a letter or a digit"),
    ],
)
def test_invalid_names_say_which_rule_they_break(store, source, name, rule):
    with pytest.raises(DatastoreError, match=f"invalid datastore name {name!r}: .*{rule}"):
        datastore.validate_name(name)
    with pytest.raises(DatastoreError, match="invalid datastore name"):
        datastore.create(store, name, source)
    assert list(store.list("datastores")) == []


def test_valid_names_are_returned_as_they_are():
    for name in ("a", "imgs", "cifar-10", "a" * 63, "x1-2-y"):
        assert datastore.validate_name(name) == name


def test_a_missing_empty_or_non_directory_source_is_refused(store, tmp_path):
    with pytest.raises(DatastoreError, match="SOURCE_DIR .*nope does not exist"):
        datastore.create(store, "imgs", tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatastoreError, match="SOURCE_DIR .*file is not a directory"):
        datastore.create(store, "imgs", tmp_path / "file")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "link").symlink_to(tmp_path / "file")
    with pytest.raises(DatastoreError, match="SOURCE_DIR .*empty holds no files"):
        datastore.create(store, "imgs", tmp_path / "empty")
    assert list(store.list("datastores")) == []


def test_a_second_version_uploads_only_the_files_that_changed(store, source, tmp_path):
    (source / "images" / "outside").symlink_to(tmp_path)
    os.mkfifo(source / "pipe")
    first = datastore.create(store, "imgs", source)
    assert first == datastore.CreateResult(
        name="imgs",
        version=1,
        files=5,
        bytes=4008,
        uploaded_files=4,  # the two identical files share one object
        uploaded_bytes=3008,
        skipped=("images/outside", "pipe"),
    )
    (source / "labels.txt").write_text("cat\ndog\nbird\n")
    (source / "images" / "c.bin").write_bytes(b"c" * 500)
    (source / "images" / "b.bin").unlink()
    store.puts.clear()
    second = datastore.create(store, "imgs", source)
    assert (second.version, second.files, second.bytes) == (2, 5, 13 + 2000 + 500)
    assert (second.uploaded_files, second.uploaded_bytes) == (2, 13 + 500)
    assert len(store.puts) == 2
    assert len(objects(store, "imgs")) == 6  # b.bin stays: version 1 holds it


def test_versions_names_and_resolve(store, source):
    assert datastore.names(store) == [] and datastore.versions(store, "imgs") == []
    two_versions(store, source)
    datastore.create(store, "other", source)
    assert datastore.names(store) == ["imgs", "other"]
    found = datastore.versions(store, "imgs")
    assert [(v.version, v.files, v.bytes, v.complete) for v in found] == [
        (1, 5, 4008, True),
        (2, 5, 4008, True),
    ]
    assert found[0].created_at <= found[1].created_at
    newest = datastore.resolve(store, "imgs", None)
    assert (newest.name, newest.version, newest.total_bytes) == ("imgs", 2, 4008)
    assert {e.path: e.size for e in newest.files}["labels.txt"] == 8
    assert [e.path for e in newest.files] == sorted(e.path for e in newest.files)
    assert datastore.resolve(store, "imgs", 1).version == 1
    with pytest.raises(DatastoreError) as unknown:
        datastore.resolve(store, "nope", None)
    assert str(unknown.value) == "unknown datastore 'nope' (see gridctl datastore list)"
    with pytest.raises(DatastoreError) as missing:
        datastore.resolve(store, "imgs", 7)
    assert str(missing.value) == "datastore 'imgs' has no version 7 (versions: 1, 2)"


def test_an_interrupted_create_is_finished_by_the_next_one(tmp_path, source):
    failing = TestStore(tmp_path / "store", uploads_before_failing=2, remote=True)
    with pytest.raises(Interrupted):
        datastore.create(failing, "imgs", source, workers=1)
    (version,) = datastore.versions(failing, "imgs")
    assert (version.version, version.complete, version.files) == (1, False, 5)
    with pytest.raises(DatastoreError) as incomplete:
        datastore.resolve(failing, "imgs", 1)
    assert str(incomplete.value) == (
        "datastore 'imgs' version 1 is incomplete (rerun gridctl datastore create to finish it)"
    )
    with pytest.raises(DatastoreError) as none_yet:
        datastore.resolve(failing, "imgs", None)
    assert str(none_yet.value) == "datastore 'imgs' has no complete version yet"
    assert len(objects(failing, "imgs")) == 2

    store = TestStore(tmp_path / "store")
    done = datastore.create(store, "imgs", source)
    assert (done.version, done.uploaded_files) == (1, 2)
    assert set(store.puts).isdisjoint(failing.puts)
    assert [v.complete for v in datastore.versions(store, "imgs")] == [True]
    assert datastore.resolve(store, "imgs", None).version == 1


def test_a_version_without_its_completion_record_cannot_be_used(store, source):
    two_versions(store, source)
    store.delete_prefix("datastores/imgs/versions/2/complete.json")
    assert [v.complete for v in datastore.versions(store, "imgs")] == [True, False]
    assert datastore.resolve(store, "imgs", None).version == 1
    with pytest.raises(DatastoreError, match="version 2 is incomplete"):
        datastore.resolve(store, "imgs", 2)


def test_a_manifest_rewritten_after_completion_is_not_trusted(store, source):
    datastore.create(store, "imgs", source)
    key = "datastores/imgs/versions/1/manifest.json"
    manifest = Manifest.from_json(store.get_bytes(key))
    store.put_bytes(key, Manifest("imgs", 1, manifest.files[:1], 0.0).to_json().encode())
    with pytest.raises(DatastoreError, match="version 1 is incomplete"):
        datastore.resolve(store, "imgs", 1)


def test_progress_reports_hashing_then_uploading(store, source):
    seen: list[tuple[str, int, int]] = []
    datastore.create(store, "imgs", source, progress=lambda *event: seen.append(event))
    phases = [phase for phase, _done, _total in seen]
    assert phases == sorted(phases, key=["hashing", "uploading"].index)
    assert [e for e in seen if e[0] == "hashing"][-1] == ("hashing", 4008, 4008)
    assert [e for e in seen if e[0] == "uploading"][-1] == ("uploading", 3008, 3008)


def test_a_file_changing_during_its_upload_fails_the_create_naming_it(tmp_path, source):
    class ChangingStore(TestStore):
        def put_file(self, key: str, path: Path, sent: Sent | None = None) -> None:
            super().put_file(key, path, sent)
            if path.name == "b.bin":
                path.write_bytes(b"b" * 2001)

    store = ChangingStore(tmp_path / "store")
    with pytest.raises(DatastoreError, match="images/b.bin changed while it was being read"):
        datastore.create(store, "imgs", source)
    assert hashlib_of(b"b" * 2000) not in objects(store, "imgs")
    assert [v.complete for v in datastore.versions(store, "imgs")] == [False]


def hashlib_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def assert_read_only(root: Path) -> None:
    """Nobody, root included, can change, add, rename or delete anything under ``root``."""
    some_file = next(p for p in root.rglob("*") if p.is_file())
    with pytest.raises(PermissionError):
        some_file.open("ab")
    with pytest.raises(PermissionError):
        (root / "new.txt").write_text("x")
    with pytest.raises(PermissionError):
        some_file.unlink()
    with pytest.raises(PermissionError):
        some_file.rename(root / "renamed")
    with pytest.raises(PermissionError):
        (root / "images" / "new-dir").mkdir()


def test_locally_a_version_is_linked_from_the_store_read_only(store, source, tmp_path):
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", 1)
    tree = hold(store, manifest, tmp_path / "cache")
    assert tree == tmp_path / "cache" / "imgs" / "v1"
    assert files_of(tree) == files_of(source)
    for entry in manifest.files:
        stored = store.path(f"datastores/imgs/objects/{entry.sha256}")
        assert (tree / entry.path).stat().st_ino == stored.stat().st_ino
    assert store.gets == Counter()
    assert_read_only(tree)
    mount = tmp_path / "mnt" / "data"
    datastore.mount(tree, mount)
    assert mount.is_symlink() and files_of(mount) == files_of(source)
    assert_read_only(mount)
    assert sorted(p.name for p in tree.parent.iterdir()) == [
        ".holders",
        ".lock",
        ".mounts",
        "v1",
        "v1.done",
    ]


def test_objects_on_another_filesystem_are_copied(store, source, tmp_path, monkeypatch):
    def cross_device(src: Path, dest: Path) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))

    monkeypatch.setattr(readonly, "link", cross_device)
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", 1)
    tree = hold(store, manifest, tmp_path / "cache")
    assert files_of(tree) == files_of(source)
    stored = store.path(f"datastores/imgs/objects/{manifest.files[0].sha256}")
    assert (tree / manifest.files[0].path).stat().st_ino != stored.stat().st_ino
    assert_read_only(tree)


def test_a_later_version_links_to_objects_an_earlier_one_sealed(store, source, tmp_path):
    two_versions(store, source)
    cache = tmp_path / "cache"
    first = hold(store, datastore.resolve(store, "imgs", 1), cache)
    second = hold(store, datastore.resolve(store, "imgs", 2), cache)
    assert (first / "images/a.bin").stat().st_ino == (second / "images/a.bin").stat().st_ino
    assert files_of(second) == files_of(source)
    assert_read_only(first)
    assert_read_only(second)


def test_on_a_node_a_version_is_downloaded_and_checked_once(tmp_path, source):
    store = TestStore(tmp_path / "store", remote=True)
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", None)
    cache = tmp_path / "cache"
    tree = hold(store, manifest, cache, workers=3)
    assert files_of(tree) == files_of(source)
    assert sorted(store.gets.values()) == [1, 1, 1, 1]  # identical files: one download
    assert_read_only(tree)
    again = hold(store, manifest, cache)
    assert again == tree and sum(store.gets.values()) == 4


def test_concurrent_materializations_of_one_version_download_it_once(tmp_path, source):
    store = TestStore(tmp_path / "store", remote=True)
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", None)
    trees: list[Path] = []

    def start() -> None:
        trees.append(hold(store, manifest, tmp_path / "cache"))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(trees) == 4 and len(set(trees)) == 1
    assert sum(store.gets.values()) == 4
    assert files_of(trees[0]) == files_of(source)


def test_a_corrupted_download_is_fetched_again(tmp_path, source):
    store = TestStore(tmp_path / "store", remote=True, corrupt_downloads=1)
    datastore.create(store, "imgs", source)
    tree = hold(store, datastore.resolve(store, "imgs", 1), tmp_path / "c")
    assert files_of(tree) == files_of(source)
    assert sum(store.gets.values()) == 5


def test_a_download_corrupted_twice_fails_and_leaves_nothing(tmp_path, source):
    store = TestStore(tmp_path / "store", remote=True, corrupt_downloads=100)
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", 1)
    with pytest.raises(DatastoreError) as failure:
        hold(store, manifest, tmp_path / "cache", workers=1)
    assert str(failure.value).startswith("datastore 'imgs' version 1: ")
    assert str(failure.value).endswith(": content does not match its hash after 2 downloads")
    assert max(store.gets.values()) == 2
    assert sorted(p.name for p in (tmp_path / "cache" / "imgs").iterdir()) == [".lock"]


def test_a_full_disk_fails_clearly_and_leaves_no_half_written_tree(tmp_path, source):
    store = TestStore(tmp_path / "store", remote=True, disk_full=True)
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", 1)
    with pytest.raises(DatastoreError, match="disk full while materializing datastore 'imgs'"):
        hold(store, manifest, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "imgs").iterdir()) == [".lock"]
    store.disk_full = False
    tree = hold(store, manifest, tmp_path / "cache")
    assert files_of(tree) == files_of(source)


def test_too_little_space_for_the_downloads_is_refused_before_any(tmp_path, source, monkeypatch):
    remote = TestStore(tmp_path / "store", remote=True)
    datastore.create(remote, "imgs", source)
    manifest = datastore.resolve(remote, "imgs", 1)
    full = SimpleNamespace(total=10**9, used=10**9 - 100, free=100)
    monkeypatch.setattr(datastore.shutil, "disk_usage", lambda path: full)
    with pytest.raises(DatastoreError, match=r"not enough space .*: need 2.9 KiB, have 100 B"):
        hold(remote, manifest, tmp_path / "cache")
    assert remote.gets == Counter()
    local = TestStore(tmp_path / "store")
    tree = hold(local, manifest, tmp_path / "cache")  # links need no space
    assert files_of(tree) == files_of(source)


def test_a_version_number_created_again_is_materialized_again(store, source, tmp_path):
    datastore.create(store, "imgs", source)
    cache = tmp_path / "cache"
    old = hold(store, datastore.resolve(store, "imgs", 1), cache)
    datastore.delete(store, "imgs")
    (source / "labels.txt").write_text("new labels\n")
    datastore.create(store, "imgs", source)
    new = hold(store, datastore.resolve(store, "imgs", 1), cache)
    assert new == old and (new / "labels.txt").read_text() == "new labels\n"
    assert_read_only(new)


def test_deleting_a_version_keeps_the_objects_others_use(store, source, tmp_path):
    datastore.create(store, "imgs", source)
    (source / "labels.txt").write_text("changed\n")
    (source / "images" / "b.bin").unlink()
    datastore.create(store, "imgs", source)
    tree = hold(store, datastore.resolve(store, "imgs", 1), tmp_path / "c")
    kept = {e.sha256 for e in datastore.resolve(store, "imgs", 2).files}
    assert datastore.delete(store, "imgs", 1) == [1]
    assert objects(store, "imgs") == kept
    assert [v.version for v in datastore.versions(store, "imgs")] == [2]
    with pytest.raises(DatastoreError) as gone:
        datastore.resolve(store, "imgs", 1)
    assert str(gone.value) == "datastore 'imgs' has no version 1 (versions: 2)"
    assert_read_only(tree)  # its files' other links stayed sealed
    assert hold(store, datastore.resolve(store, "imgs", 2), tmp_path / "c")


def test_deleting_everything_empties_the_prefix(store, source, tmp_path):
    two_versions(store, source)
    datastore.create(store, "other", source)
    hold(store, datastore.resolve(store, "imgs", 2), tmp_path / "cache")
    assert datastore.delete(store, "imgs") == [1, 2]
    assert list(store.list("datastores/imgs")) == []
    assert datastore.names(store) == ["other"]
    assert datastore.delete(store, "other", 1) == [1]
    assert list(store.list("datastores")) == []


def test_deleting_what_does_not_exist_is_refused(store, source):
    with pytest.raises(DatastoreError, match="unknown datastore 'imgs'"):
        datastore.delete(store, "imgs")
    with pytest.raises(DatastoreError, match="unknown datastore 'imgs'"):
        datastore.delete(store, "imgs", 1)
    datastore.create(store, "imgs", source)
    with pytest.raises(DatastoreError) as missing:
        datastore.delete(store, "imgs", 3)
    assert str(missing.value) == "datastore 'imgs' has no version 3 (versions: 1)"
    with pytest.raises(DatastoreError, match="invalid datastore name"):
        datastore.delete(store, "Bad")


def test_a_mount_replaces_an_earlier_mount_or_an_empty_dir_only(tmp_path):
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    second.mkdir()
    mount = tmp_path / "a" / "b" / "mnt"
    datastore.mount(first, mount)
    assert mount.resolve() == first
    datastore.mount(second, mount)
    assert mount.resolve() == second
    empty = tmp_path / "empty"
    empty.mkdir()
    datastore.mount(first, empty)
    assert empty.resolve() == first
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for taken in (tmp_path / "full", tmp_path / "file"):
        with pytest.raises(DatastoreError) as refused:
            datastore.mount(first, taken)
        assert str(refused.value) == f"mount dir {taken} exists and is not a datastore mount"
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(DatastoreError, match="cannot create the mount dir .*: File exists"):
        datastore.mount(first, tmp_path / "file" / "mnt")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".link")]


def test_seal_unseal_and_remove(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    (root / "g").write_text("y")
    (root / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("z")
    readonly.seal(root)
    readonly.seal(root)
    assert (root / "g").stat().st_mode & 0o777 == readonly.SEALED_FILE
    assert (root / "sub").stat().st_mode & 0o777 == readonly.SEALED_DIR
    assert (tmp_path / "outside").stat().st_mode & 0o222  # symlinks are not followed
    with pytest.raises(PermissionError):
        (root / "sub" / "f").write_text("changed")
    readonly.unseal(root)
    assert (root / "g").stat().st_mode & 0o777 == readonly.SEALED_FILE  # still read-only...
    (root / "sub" / "f").unlink()  # ...but nothing stops deleting or adding files
    (root / "sub" / "f").write_text("new")
    readonly.seal(root)
    (tmp_path / "mount").symlink_to(root)
    readonly.remove(tmp_path / "mount")
    assert not (tmp_path / "mount").is_symlink()
    with pytest.raises(PermissionError):
        (root / "sub" / "f").write_text("changed again")
    readonly.remove(root)
    assert not root.exists()
    assert (tmp_path / "outside").read_text() == "z"
    readonly.remove(root)
    readonly.unseal(root)


def test_removing_one_link_of_a_sealed_file_keeps_the_others_sealed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    (tmp_path / "b").mkdir()
    os.link(tmp_path / "a" / "f", tmp_path / "b" / "f")
    readonly.seal(tmp_path / "a")
    readonly.seal(tmp_path / "b")
    readonly.remove(tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(PermissionError):
        (tmp_path / "b" / "f").write_text("changed")


def immutable(path: Path) -> bool:
    import fcntl
    from array import array

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        flags = array("i", [0])
        fcntl.ioctl(fd, readonly.FS_IOC_GETFLAGS, flags, True)
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(flags[0] & readonly.FS_IMMUTABLE_FL)


def test_the_last_holder_lifts_the_seal_of_every_version_of_the_name(store, source, tmp_path):
    two_versions(store, source)
    cache = tmp_path / "cache"
    first = datastore.hold(store, datastore.resolve(store, "imgs", 1), cache, "exp-a")
    second = datastore.hold(store, datastore.resolve(store, "imgs", 2), cache, "exp-b")
    # The versions share the inode of images/a.bin: letting go of one must not unseal it.
    assert (first / "images/a.bin").stat().st_ino == (second / "images/a.bin").stat().st_ino
    datastore.release(cache, "imgs", "exp-b")
    assert_read_only(first)
    assert_read_only(second)
    datastore.release(cache, "imgs", "exp-a")
    datastore.release(cache, "imgs", "exp-a")  # twice is harmless
    for tree in (first, second):
        assert (tree / "images").stat().st_mode & 0o777 == readonly.OPEN_DIR
        assert (tree / "labels.txt").stat().st_mode & 0o777 == readonly.SEALED_FILE
        assert not any(immutable(p) for p in [tree, *tree.rglob("*")])
    # Nothing left behind resists deletion, not even as root.
    subprocess.run(["rm", "-rf", str(cache), str(store.root)], check=True)
    assert not cache.exists() and not store.root.exists()


def test_holding_again_seals_again(store, source, tmp_path):
    datastore.create(store, "imgs", source)
    manifest = datastore.resolve(store, "imgs", 1)
    tree = datastore.hold(store, manifest, tmp_path / "cache", "exp-a")
    datastore.release(tmp_path / "cache", "imgs", "exp-a")
    assert datastore.hold(store, manifest, tmp_path / "cache", "exp-b") == tree
    assert_read_only(tree)


def test_forget_removes_trees_and_the_mounts_made_of_them(store, source, tmp_path):
    two_versions(store, source)
    cache = tmp_path / "cache"
    first = datastore.hold(store, datastore.resolve(store, "imgs", 1), cache, "exp-a")
    second = datastore.hold(store, datastore.resolve(store, "imgs", 2), cache, "exp-b")
    datastore.mount(first, tmp_path / "m1")
    datastore.mount(second, tmp_path / "m2")
    datastore.mount(first, tmp_path / "moved")
    (tmp_path / "moved").unlink()
    (tmp_path / "moved").symlink_to(tmp_path)  # re-pointed by someone else since
    datastore.forget(cache, "imgs", [1])
    assert not (tmp_path / "m1").is_symlink() and not first.exists()
    assert (tmp_path / "m2").resolve() == second and files_of(second) == files_of(source)
    assert (tmp_path / "moved").resolve() == tmp_path
    datastore.forget(cache, "imgs", None)
    assert not (tmp_path / "m2").is_symlink() and not (cache / "imgs").exists()
    datastore.forget(cache, "imgs", None)  # nothing left: nothing to do


def test_unchanged_data_makes_no_new_version(store, source):
    first = datastore.create(store, "imgs", source)
    store.puts.clear()
    again = datastore.create(store, "imgs", source)
    assert (again.version, again.unchanged, again.uploaded_files) == (1, True, 0)
    assert (again.files, again.bytes) == (first.files, first.bytes)
    assert store.puts == []
    assert [v.version for v in datastore.versions(store, "imgs")] == [1]
    (source / "images" / "a.bin").rename(source / "images" / "renamed.bin")
    moved = datastore.create(store, "imgs", source)
    assert (moved.version, moved.unchanged, moved.uploaded_files) == (2, False, 0)


segments = st.text(st.characters(blacklist_characters="/\0"), min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..") and not s.endswith(".f")
)
"""Folder names; files end in .f, so no file is ever another's folder."""
manifests = st.builds(
    Manifest,
    name=st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
    version=st.integers(1, 10**6),
    files=st.dictionaries(
        st.lists(segments, min_size=1, max_size=3).map("/".join).map(lambda p: p + ".f"),
        st.tuples(st.integers(0, 2**50), st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
        max_size=8,
    ).map(
        lambda found: tuple(
            FileEntry(path, size, sha) for path, (size, sha) in sorted(found.items())
        )
    ),
    created_at=st.floats(0, 2e9),
)


@given(manifests)
def test_manifests_survive_json(manifest):
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert Manifest.from_json(manifest.to_json().encode()) == manifest


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/", ""])
def test_manifests_with_unsafe_paths_are_refused(path):
    text = Manifest("imgs", 1, (FileEntry(path, 1, "0" * 64),), 0.0).to_json()
    with pytest.raises(DatastoreError, match="malformed datastore manifest: unsafe path"):
        Manifest.from_json(text)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("files"),
        lambda d: d.update(version="1"),
        lambda d: d.update(version=0),
        lambda d: d.update(name="Bad"),
        lambda d: d["files"].append(dict(d["files"][0])),
        lambda d: d["files"].append({"path": "a/b", "size": 1, "sha256": "0" * 64}),
        lambda d: d["files"][0].update(sha256="../../x"),
        lambda d: d["files"][0].update(size=True),
    ],
)
def test_malformed_manifests_are_refused(change):
    data = json.loads(Manifest("imgs", 1, (FileEntry("a", 1, "0" * 64),), 0.0).to_json())
    change(data)
    with pytest.raises(DatastoreError, match="malformed datastore manifest"):
        Manifest.from_json(json.dumps(data))
    with pytest.raises(DatastoreError, match="malformed datastore manifest"):
        Manifest.from_json("not json")
