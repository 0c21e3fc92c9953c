"""Content-addressed bundles: ids, the hash cache, warnings, archives and uploads."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from gridctl.agent.core.store import LocalStore
from gridctl.agent.runner.archive import extract
from gridctl.cli import bundle as bundles
from gridctl.cli.bundle import scan, upload, write_archive
from gridctl.cli.errors import GridctlError

LONG_AGO = time.time() - 3600


def make_project(root: Path) -> Path:
    files = {
        "train.py": "print('hi')\n",
        "lib/util.py": "X = 1\n",
        "data/.gitignore": "*.bin\n",
        "data/big.bin": "ignored",
        "data/small.csv": "a,b\n",
        "ünïcode name.txt": "u\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "latest").symlink_to("data/small.csv")
    (root / "lib" / "up").symlink_to("../train.py")
    return root


def backdate(root: Path) -> None:
    """Make every file old enough for its hash to be cached (fresh files are re-hashed)."""
    for path in root.rglob("*"):
        os.utime(path, (LONG_AGO, LONG_AGO), follow_symlinks=False)


def test_entries_describe_files_and_links(tmp_path: Path) -> None:
    result = scan(make_project(tmp_path))
    by_path = {e.path: e for e in result.entries}
    assert sorted(by_path) == [
        "data/.gitignore",
        "data/small.csv",
        "latest",
        "lib/up",
        "lib/util.py",
        "run.sh",
        "train.py",
        "ünïcode name.txt",
    ]
    assert by_path["train.py"].digest == hashlib.sha256(b"print('hi')\n").hexdigest()
    assert (by_path["run.sh"].executable, by_path["train.py"].executable) == (True, False)
    assert by_path["latest"] == bundles.BundleEntry("latest", "link", 0, False, "data/small.csv")
    assert result.total_bytes == sum(e.size for e in result.entries) == 40
    assert result.key == f"bundles/{result.bundle_id}.tar.gz"
    assert result.warnings == ()


def test_same_tree_same_id_wherever_and_whenever(tmp_path: Path) -> None:
    first = scan(make_project(tmp_path / "a"))
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    backdate(tmp_path / "b")
    assert scan(tmp_path / "b", cache_dir=tmp_path / "cache").bundle_id == first.bundle_id
    (tmp_path / "a").rename(tmp_path / "renamed")
    assert scan(tmp_path / "renamed").bundle_id == first.bundle_id


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "train.py").write_text("print('ho')\n"),
        lambda root: (root / "train.py").chmod(0o755),
        lambda root: ((root / "latest").unlink(), (root / "latest").symlink_to("train.py")),
        lambda root: (root / "lib" / "util.py").rename(root / "lib" / "util2.py"),
        lambda root: (root / "new.txt").write_text(""),
        lambda root: (root / "data" / ".gitignore").write_text("*.csv\n"),
    ],
    ids=["content", "mode", "link", "rename", "add", "ignore"],
)
def test_any_change_changes_the_id(tmp_path: Path, change) -> None:
    root = make_project(tmp_path / "p")
    before = scan(root, cache_dir=tmp_path / "cache").bundle_id
    change(root)
    assert scan(root, cache_dir=tmp_path / "cache").bundle_id != before


def test_warm_cache_skips_hashing_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p")
    backdate(root)
    cold = scan(root, cache_dir=tmp_path / "cache")
    hashed: list[str] = []
    real_hash = bundles._sha256_file
    monkeypatch.setattr(bundles, "_sha256_file", lambda p: hashed.append(p) or real_hash(p))
    assert scan(root, cache_dir=tmp_path / "cache") == cold
    assert hashed == []
    (root / "train.py").write_text("print('changed')\n")
    assert scan(root, cache_dir=tmp_path / "cache").bundle_id != cold.bundle_id
    assert hashed == [os.path.realpath(root / "train.py")]


def test_recently_modified_files_are_never_trusted_from_the_cache(tmp_path: Path) -> None:
    """Same size, inode and mtime (a write within one timestamp tick) is still noticed."""
    root = make_project(tmp_path / "p")
    target = root / "train.py"
    stamp = time.time_ns() + 60 * 10**9
    os.utime(target, ns=(stamp, stamp))
    before = scan(root, cache_dir=tmp_path / "cache")
    with open(target, "r+") as handle:
        handle.write("print('HI')\n")
    os.utime(target, ns=(stamp, stamp))
    assert scan(root, cache_dir=tmp_path / "cache").bundle_id != before.bundle_id


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    backdate(root)
    expected = scan(root).bundle_id
    cache = tmp_path / "cache"
    scan(root, cache_dir=cache)
    (cache_file,) = cache.iterdir()
    garbage_kinds = (
        b"{not json",
        b'{"version": 1, "files": {"train.py": [1, 2]}}',
        b"gridctl-hashes-v2\0train.py",
        b"gridctl-hashes-v2\0train.py\0" + b"1 2 3 " + b"0" * 64,
        b"\xff\0\xfe",
    )
    for garbage in garbage_kinds:
        cache_file.write_bytes(garbage)
        assert scan(root, cache_dir=cache).bundle_id == expected


def test_links_leaving_the_root_are_skipped_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    (tmp_path / "secret").write_text("s")
    (root / "abs-out").symlink_to(tmp_path / "secret")
    (root / "rel-out").symlink_to("../secret")
    (root / "sub" / "abs-in").symlink_to(root / "sub" / "f")
    (root / "sub" / "via-parent").symlink_to("../../p/sub/f")
    (root / "up").symlink_to(".")
    result = scan(root)
    links = {e.path: e.digest for e in result.entries if e.kind == "link"}
    assert links == {"sub/abs-in": "f", "sub/via-parent": "f", "up": "."}
    (warning,) = result.warnings
    assert "abs-out ->" in warning and "rel-out -> ../secret" in warning


def test_likely_secrets_produce_one_warning_naming_them(tmp_path: Path) -> None:
    names = [".env", "keys/server.pem", "id_rsa.pub", "conf/.aws/credentials", ".netrc"]
    for rel in [*names, "env.py", ".gitignore", "ignored/id_rsa"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("ignored/\n" if rel == ".gitignore" else "")
    (warning,) = scan(tmp_path).warnings
    assert all(name in warning for name in names)
    assert "env.py" not in warning and "ignored/id_rsa" not in warning


def test_archive_round_trip_keeps_files_links_and_exec_bits(tmp_path: Path) -> None:
    result = scan(make_project(tmp_path / "p"))
    write_archive(result, tmp_path / "b.tar.gz")
    extract(tmp_path / "b.tar.gz", tmp_path / "out")
    assert scan(tmp_path / "out").entries == result.entries
    assert os.readlink(tmp_path / "out" / "lib" / "up") == "../train.py"
    assert os.access(tmp_path / "out" / "run.sh", os.X_OK)


def test_archives_are_byte_for_byte_deterministic(tmp_path: Path) -> None:
    make_project(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    backdate(tmp_path / "b")
    write_archive(scan(tmp_path / "a"), tmp_path / "a.tar.gz")
    write_archive(scan(tmp_path / "b"), tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_file_changed_after_scan_is_not_archived_silently(tmp_path: Path) -> None:
    result = scan(make_project(tmp_path / "p"))
    (tmp_path / "p" / "train.py").write_text("print('HI')\n")
    with pytest.raises(GridctlError, match="changed while bundling"):
        write_archive(result, tmp_path / "b.tar.gz")


def test_upload_twice_uploads_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    result = scan(make_project(tmp_path / "p"))
    calls: list[tuple[str, int, int]] = []

    def record(phase: str, done: int, total: int) -> None:
        calls.append((phase, done, total))

    assert upload(result, store, progress=record)
    size = store.path(result.key).stat().st_size
    packed = [c for c in calls if c[0] == "packing"]
    assert packed[-1] == ("packing", result.total_bytes, result.total_bytes)
    assert calls[-1] == ("uploading", size, size)
    count = len(calls)
    assert upload(result, store, progress=record) is False
    assert len(calls) == count and list(store.list("bundles")) == [result.key]
    extract(store.path(result.key), tmp_path / "out")
    assert (tmp_path / "out" / "train.py").read_text() == "print('hi')\n"


def test_missing_root_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GridctlError) as caught:
        scan(tmp_path / "nope")
    assert "nope" in caught.value.message and "\n" not in caught.value.message


def test_folders_marked_as_downloads_are_never_bundled(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "results").mkdir(parents=True)
    (root / "train.py").write_text("print(1)\n")
    (root / "results" / "keep.txt").write_text("mine\n")
    bundles.mark_downloads(root / "results" / "nested")
    (root / "results" / "nested" / "run-exp0").mkdir()
    (root / "results" / "nested" / "run-exp0" / "model.bin").write_text("m")
    # Even with its marker ignored, a marked folder holding only folders stays out.
    (root / ".gitignore").write_text(".gridctl-artifacts\n")
    assert [e.path for e in scan(root).entries] == [".gitignore", "results/keep.txt", "train.py"]
