"""Safe extraction: hand-made malicious archives are refused and write nothing anywhere."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from gridctl.agent.runner.archive import UnsafeArchiveError, extract


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def make_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the destination that extraction must never touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim").write_text("original")
    return folder


MALICIOUS = {
    "absolute path": lambda out: [member(str(out / "evil"), data=b"x")],
    "dotdot": lambda out: [member("../outside/evil", data=b"x")],
    "inner dotdot": lambda out: [member("a/../../outside/evil", data=b"x")],
    "symlink to /etc": lambda out: [member("etc", tarfile.SYMTYPE, link="/etc")],
    "symlink up": lambda out: [member("up", tarfile.SYMTYPE, link="../outside")],
    "file through symlink": lambda out: [
        member("l", tarfile.SYMTYPE, link=str(out)),
        member("l/victim", data=b"overwritten"),
    ],
    "file through inner symlink": lambda out: [
        member("sub", tarfile.DIRTYPE),
        member("l", tarfile.SYMTYPE, link="sub"),
        member("l/x", data=b"x"),
    ],
    "symlink chain": lambda out: [
        member("d", tarfile.DIRTYPE),
        member("a", tarfile.SYMTYPE, link="d/c/../outside"),
        member("d/c", tarfile.SYMTYPE, link=".."),
    ],
    "symlink over file": lambda out: [
        member("x", data=b"x"),
        member("x", tarfile.SYMTYPE, link="y"),
    ],
    "hardlink outside": lambda out: [member("h", tarfile.LNKTYPE, link="../outside/victim")],
    "hardlink absolute": lambda out: [member("h", tarfile.LNKTYPE, link=str(out / "victim"))],
    "fifo": lambda out: [member("pipe", tarfile.FIFOTYPE)],
    "device": lambda out: [member("tty", tarfile.CHRTYPE)],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused_before_writing(
    case: str, tmp_path: Path, outside: Path
) -> None:
    archive = make_tar(
        tmp_path / "bad.tar.gz", member("ok.txt", data=b"fine"), *MALICIOUS[case](outside)
    )
    with pytest.raises(UnsafeArchiveError):
        extract(archive, tmp_path / "dest")
    assert files_under(tmp_path / "dest") == []
    assert files_under(outside) == ["victim"]
    assert (outside / "victim").read_text() == "original"


def test_symlink_already_in_destination_is_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "l").symlink_to(outside)
    (dest / "victim").symlink_to(outside / "victim")
    for name in ("l/victim", "victim"):
        archive = make_tar(tmp_path / "bad.tar.gz", member(name, data=b"overwritten"))
        with pytest.raises(UnsafeArchiveError):
            extract(archive, dest)
    assert (outside / "victim").read_text() == "original"


def test_safe_archive_extracts_links_modes_and_fresh_mtimes(tmp_path: Path) -> None:
    script, _ = member("bin/run", data=b"#!/bin/sh\n")
    script.mode = 0o755
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        (script, b"#!/bin/sh\n"),
        member("src/a/mod.py", data=b"x = 1\n"),
        member("src/a/up", tarfile.SYMTYPE, link="../../bin/run"),
        member("here", tarfile.SYMTYPE, link="."),
        member("dangling", tarfile.SYMTYPE, link="missing/file"),
    )
    started = time.time() - 5
    extract(archive, tmp_path / "dest")
    dest = tmp_path / "dest"
    assert (dest / "src/a/up").read_bytes() == b"#!/bin/sh\n"
    assert os.readlink(dest / "dangling") == "missing/file"
    assert os.access(dest / "bin/run", os.X_OK) and not os.access(dest / "src/a/mod.py", os.X_OK)
    assert (dest / "src/a/mod.py").stat().st_mtime >= started


def test_symlink_loop_inside_is_harmless_and_allowed(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "loop.tar.gz",
        member("a", tarfile.SYMTYPE, link="b"),
        member("b", tarfile.SYMTYPE, link="a"),
    )
    extract(archive, tmp_path / "dest")
    assert os.readlink(tmp_path / "dest" / "a") == "b"


def test_agent_archive_does_not_import_the_cli() -> None:
    code = (
        "import sys, gridctl.agent.runner.archive\n"
        "print([m for m in sys.modules if m.startswith('gridctl.cli')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
