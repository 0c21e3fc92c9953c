"""LocalStore's listing: what a reader compares to tell a changed object from the one it
read before."""

from __future__ import annotations

import os
from pathlib import Path

from gridctl.agent.core.store import Listed, LocalStore


def test_listing_gives_each_key_its_size_and_a_tag_that_follows_its_content(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    store.put_bytes("runs/r/e/artifacts/a.txt", b"abc")
    store.put_bytes("runs/r/e/artifacts/deep/b.txt", b"hello")
    store.put_bytes("runs/r/e/artifacts-other/c.txt", b"not below the folder")
    (tmp_path / "store/runs/r/e/artifacts/.tmp-half-written").write_bytes(b"x")

    listed = store.listing("runs/r/e/artifacts/")

    assert (
        set(listed)
        == set(store.list("runs/r/e/artifacts/"))
        == {
            "runs/r/e/artifacts/a.txt",
            "runs/r/e/artifacts/deep/b.txt",
        }
    )
    assert store.listing("runs/r/e/artifacts") == listed
    assert store.listing("runs/nothing/") == {}

    before = listed["runs/r/e/artifacts/a.txt"]
    path = store.path("runs/r/e/artifacts/a.txt")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    touched = store.listing("runs/r/e/artifacts/")["runs/r/e/artifacts/a.txt"]
    assert touched.size == 3 and touched.tag != before.tag
    store.put_bytes("runs/r/e/artifacts/a.txt", b"abcd")
    grown = store.listing("runs/r/e/artifacts/")["runs/r/e/artifacts/a.txt"]
    assert grown.size == 4 and grown.tag not in (before.tag, touched.tag)
    assert store.listing("runs/r/e/artifacts/")["runs/r/e/artifacts/a.txt"] == grown
    assert listed["runs/r/e/artifacts/deep/b.txt"] == Listed(
        5, listed["runs/r/e/artifacts/deep/b.txt"].tag
    )
