"""Fixtures that drive the real ``gridctl`` command against a private GRIDCTL_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ACTIVE = ("queued", "running")
GRIDCTL = str(Path(sys.executable).with_name("gridctl"))


class Gridctl:
    """Runs the installed ``gridctl`` the way a user does: a process, a cwd, an env."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {**os.environ, "GRIDCTL_HOME": str(home)}
        self.env.pop("GRIDCTL_DEBUG", None)

    def __call__(self, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [GRIDCTL, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [GRIDCTL, *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def json(self, *args: str) -> object:
        result = self(*args, "--output", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def status(self, run: str) -> dict:
        return self.json("status", run)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError("condition not reached in time")

    def experiment(self, run: str, name: str) -> dict:
        return next(e for e in self.status(run)["experiments"] if e["name"] == name)


@pytest.fixture(autouse=True)
def unsealed(tmp_path: Path):
    """Lets pytest delete what a test sealed (materialized datastores): as root, immutable
    files resist even rm -rf."""
    yield
    from gridctl.agent import readonly

    readonly.unseal(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def gridctl(tmp_path: Path, project: Path):
    cli = Gridctl(tmp_path / "home", project)
    yield cli
    # Leave no experiment running behind a test.
    listed = cli("status", "--output", "json")
    if listed.returncode == 0:
        active = [r["run"] for r in json.loads(listed.stdout) if r["status"] in ACTIVE]
        if active:
            cli("stop", *active)
