"""Datastores and scratch space on the local backend, through the real ``gridctl``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts import DATASTORE_READER as READER


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels.txt").write_text("cat\ndog\n")
    (root / "images" / "a.bin").write_bytes(b"a" * 1000)
    (root / "images" / "b.bin").write_bytes(b"b" * 2000)
    return root


def create(gridctl, name: str, source: Path) -> dict:
    result = gridctl("datastore", "create", name, str(source), "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_versions_upload_only_what_changed_and_list_them(gridctl, source):
    first = create(gridctl, "imgs", source)
    assert (first["version"], first["files"], first["uploaded_files"]) == (1, 3, 3)
    assert first["bytes"] == first["uploaded_bytes"] == 3008
    (source / "labels.txt").write_text("cat\ndog\nbird\n")
    (source / "images" / "c.bin").write_bytes(b"c" * 500)
    second = create(gridctl, "imgs", source)
    assert (second["version"], second["files"], second["uploaded_files"]) == (2, 4, 2)
    assert second["uploaded_bytes"] == len("cat\ndog\nbird\n") + 500
    (listed,) = gridctl.json("datastore", "list")
    assert listed["name"] == "imgs"
    assert [(v["version"], v["files"], v["status"]) for v in listed["versions"]] == [
        (1, 3, "complete"),
        (2, 4, "complete"),
    ]
    table = gridctl("datastore", "list").stdout
    assert "imgs" in table and "1, 2" in table and "complete" in table


def test_a_sweep_reads_the_mounted_version_which_it_cannot_change(
    gridctl, project, source, tmp_path
):
    create(gridctl, "imgs", source)
    (source / "labels.txt").write_text("v2 labels\n")
    create(gridctl, "imgs", source)
    (project / "read.py").write_text(READER)
    mount = tmp_path / "mnt" / "data"
    scratch = tmp_path / "scratch"
    run = gridctl(
        "run",
        "--name",
        "reader",
        "--wait",
        "--datastore_name",
        "imgs",
        "--datastore_mount_dir",
        str(mount),
        "--scratch_size",
        "1",
        "--scratch_mount_path",
        str(scratch),
        "read.py",
        "--seed",
        "[1, 2]",
        "--mount",
        str(mount),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"datastore imgs version 2 mounted read-only at {mount}" in run.stderr
    dest = tmp_path / "artifacts"
    assert gridctl("artifacts", "reader", "--dest", str(dest)).returncode == 0
    expected = {
        "labels.txt": "v2 labels\n",
        "images/a.bin": "a" * 1000,
        "images/b.bin": "b" * 2000,
    }
    for i in range(2):
        seen = json.loads((dest / f"reader-exp{i}" / "out" / "seen.json").read_text())
        # Its own version, at a path that names it, and the same files at the mount dir.
        assert seen["datastore_dir"] == str(gridctl.home / "mounts" / "imgs" / "v2")
        assert seen["files"] == seen["at_mount"] == expected
        assert seen["write"] == "refused"
        assert seen["scratch"] == str(scratch / f"reader-exp{i}")
    # Nothing the scripts tried reached the datastore itself.
    assert (mount / "images" / "a.bin").read_text() == "a" * 1000
    assert not (mount / "new.txt").exists()

    # An older version on request.
    run = gridctl(
        "run",
        "--name",
        "older",
        "--wait",
        "--datastore_name",
        "imgs",
        "--datastore_version",
        "1",
        "--datastore_mount_dir",
        str(mount),
        "read.py",
    )
    assert run.returncode == 0, run.stderr
    assert gridctl("artifacts", "older", "--dest", str(dest)).returncode == 0
    seen = json.loads((dest / "older-exp0" / "out" / "seen.json").read_text())
    assert seen["files"]["labels.txt"] == "cat\ndog\n"


def test_a_version_in_use_is_not_deleted_unless_forced(gridctl, project, source, tmp_path):
    create(gridctl, "imgs", source)
    (project / "wait.py").write_text("import time\ntime.sleep(600)\n")
    mount = str(tmp_path / "mnt")
    assert (
        gridctl(
            "run",
            "--name",
            "user",
            "--datastore_name",
            "imgs",
            "--datastore_mount_dir",
            mount,
            "wait.py",
        ).returncode
        == 0
    )
    refused = gridctl("datastore", "delete", "imgs", "--version", "1")
    assert refused.returncode == 2
    assert "datastore imgs version 1 is in use by user-exp0" in refused.stderr
    assert gridctl.json("datastore", "list")[0]["versions"][0]["status"] == "complete"
    assert gridctl("stop", "user").returncode == 0
    deleted = gridctl("datastore", "delete", "imgs", "--output", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"name": "imgs", "deleted_versions": [1]}
    assert gridctl.json("datastore", "list") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--datastore_name", "nope"], "unknown datastore 'nope'"),
        (["--datastore_name", "imgs", "--datastore_version", "9"], "has no version 9"),
        (["--scratch_size", "100000000"], "--scratch_size 100000000 GB: only"),
        # A file where a folder would have to be: not even root can create the mount dir.
        (
            ["--datastore_name", "imgs", "--datastore_mount_dir", "{project}/t.py/mnt"],
            "you cannot create it",
        ),
    ],
)
def test_bad_datastore_and_scratch_requests_start_nothing(gridctl, project, source, args, message):
    create(gridctl, "imgs", source)
    (project / "t.py").write_text("print('ran')\n")
    args = [arg.format(project=project) for arg in args]
    result = gridctl("run", "--name", "bad", *args, "t.py")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert gridctl.json("status") == []


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("imgs", None, "does not exist"),
        ("imgs", "empty", "holds no files"),
        ("Bad_Name", "data", "lowercase"),
    ],
)
def test_bad_datastore_creates_are_one_line_exit_2(gridctl, tmp_path, name, make, message):
    source = tmp_path / "src"
    if make == "empty":
        source.mkdir()
    elif make == "data":
        source.mkdir()
        (source / "f.txt").write_text("x")
    result = gridctl("datastore", "create", name, str(source))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert gridctl.json("datastore", "list") == []
