"""The node agent wheel: reproducible, installable by pip, runnable without the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from io import BytesIO

from gridctl.infra.wheel import build_agent_wheel


def test_the_wheel_is_reproducible_and_holds_only_the_agent():
    first, second = build_agent_wheel(), build_agent_wheel()
    assert first == second
    assert first.key == f"wheels/{first.filename}"
    names = zipfile.ZipFile(BytesIO(first.data)).namelist()
    code = [n for n in names if not n.startswith("gridctl_agent-")]
    assert code and all(n.startswith("gridctl/agent/") for n in code)
    assert {"gridctl/agent/node/agent.py", "gridctl/agent/runner/experiment.py"} <= set(code)
    assert not [n for n in code if n.startswith("gridctl/agent/service/")]


def test_pip_installs_it_and_the_agent_starts_from_it(tmp_path):
    wheel = build_agent_wheel()
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    # A bare interpreter, as on a node: nothing but the wheel on its path.
    bare = getattr(sys, "_base_executable", sys.executable)
    result = subprocess.run(
        [bare, "-m", "gridctl.agent", "--help"],
        env={**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "node" in result.stdout
