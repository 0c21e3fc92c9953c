"""A node's Python environment from a warm cache against a plain install (issue 14).

The requirements are numpy, pandas and scipy (a few tens of MB). The baseline is what a
node did before: ``pip install -r requirements.txt`` into a fresh venv (with whatever pip
cache this machine has, which a new node does not: the baseline is if anything flattered).
The warm case is ``Venvs.prepare`` on a machine that has never seen the key while the store
holds it: download (here a copy from a LocalStore), sha256 check, unpack, relocate. Both
over an empty base venv, so no package is skipped for being there already. Target: warm /
plain <= 0.3 (the warm case a median of a few rounds).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.store import LocalStore
from gridctl.agent.runner.venv import Venvs

REQUIREMENTS = "numpy\npandas\nscipy\n"
ROUNDS = 3
PLAIN_ROUNDS = 1
"""A plain install takes a minute or more: once is enough to compare with."""
TARGET = 0.3
PYTHON = getattr(sys, "_base_executable", sys.executable)


def plain_install(work: Path, exec_dir: Path, round_: int) -> float:
    venv = work / f"plain-{round_}"
    start = time.perf_counter()
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        cwd=exec_dir,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-venv-") as tmp:
        work = Path(tmp)
        exec_dir = work / "exec"
        exec_dir.mkdir()
        (exec_dir / "requirements.txt").write_text(REQUIREMENTS)
        base = work / "base"
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(base)], check=True)
        python = base / "bin" / "python"
        spec = ExperimentSpec("bench", "bench-exp0", 0, ("python", "train.py"), "b")
        store = LocalStore(work / "store")
        with (work / "build.log").open("ab") as log:
            Venvs(store, work / "builder").prepare(exec_dir, spec, python, log, lambda _: None)
        plain = [plain_install(work, exec_dir, n) for n in range(PLAIN_ROUNDS)]
        warm = []
        for n in range(ROUNDS):
            venvs = Venvs(store, work / f"node-{n}")
            start = time.perf_counter()
            with (work / f"node-{n}.log").open("ab") as log:
                venvs.prepare(exec_dir, spec, python, log, lambda _: None)
            warm.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in (work / "store").rglob("*") if p.is_file())
    ratio = statistics.median(warm) / statistics.median(plain)
    print(
        f"venv: plain pip install {statistics.median(plain):.1f} s, warm cache"
        f" {statistics.median(warm):.2f} s ({size / 1e6:.0f} MB archive):"
        f" ratio {ratio:.2f} (target <= {TARGET})"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
