"""Fixtures that drive the real ``gridctl`` command against a private GRIDCTL_HOME."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ("gitrepos",)
"""Fixtures shared by test modules that need a git remote (``upstream``)."""

ACTIVE = ("queued", "running")
GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
USER_SETUP = ("GRIDCTL_", "AWS_", "TF_", "TERRAFORM_CONFIG", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
"""The variables (and prefixes) through which a user's shell steers gridctl, Terraform and the
AWS SDK (GRIDCTL_HOME, AWS_PROFILE, AWS_CONFIG_FILE, TF_DATA_DIR...) or relocates their home."""


def pytest_configure(config: pytest.Config) -> None:
    """Give every test process (each xdist worker too) an environment of its own before any
    test or fixture reads it: none of the user's settings above and a private HOME, so that no
    test, not even a gridctl call that forgot GRIDCTL_HOME, can read or rewrite the user's
    ~/.gridctl, ~/.aws or Terraform state. Fixtures add what they mean to (a private
    GRIDCTL_HOME, moto's endpoint and CA bundle); caches under HOME are simply lost."""
    for name in list(os.environ):
        if name.startswith(USER_SETUP):
            del os.environ[name]
    home = tempfile.mkdtemp(prefix="gridctl-tests-home-")
    os.environ["HOME"] = home
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    _answer_ctrl_c()


HEAVY_FIXTURES = {"terraform_cli": 10.0, "moto": 3.0, "gridctl": 2.0}
"""What a test's fixtures say of its weight: Terraform against moto takes minutes, moto and
the real command seconds; the rest take a fraction of one. A test its fixtures misjudge says
its own with ``pytest.mark.weight(N)``."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, each worker's slice of the suite starts with its share of the heavy
    tests (see schedule.py)."""
    from schedule import spread

    workers = getattr(config, "workerinput", {}).get("workercount", 1)

    def weight(item: pytest.Item) -> float:
        said = item.get_closest_marker("weight")
        if said is not None:
            return float(said.args[0])
        names = getattr(item, "fixturenames", ())
        return max((w for name, w in HEAVY_FIXTURES.items() if name in names), default=0.1)

    groups = [item.nodeid.split("::")[0] for item in items]
    items[:] = spread(items, [weight(i) for i in items], groups, workers)


def _answer_ctrl_c() -> None:
    """A shell starts background jobs (``make test &``) with SIGINT ignored, and every process
    started from one inherits that, so gridctl rightly ignores the Ctrl-C that tests send it.
    Tests stand for a user at a terminal: Ctrl-C is answered, in this process and its children."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Gridctl:
    """Runs the installed ``gridctl`` the way a user does: a process, a cwd, an env."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {**os.environ, "GRIDCTL_HOME": str(home)}

    def __call__(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.CompletedProcess:
        """``env`` replaces the fixture's environment for this call: another user's shell."""
        return subprocess.run(
            [GRIDCTL, *args],
            cwd=self.cwd,
            env=self.env if env is None else env,
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
    from gridctl.agent.core import readonly

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
