"""Local dispatch: 32 experiments of a 0.2 s script through ``gridctl run --wait --cpus 1``
against ``xargs -P $(nproc)`` running the same 32 commands (target ratio <= 1.25)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
EXPERIMENTS = 32
TARGET = 1.25
REPEATS = 3
SCRIPT = "import sys, time\ntime.sleep(0.2)\nprint('done', sys.argv[-1])\n"


def _timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def main() -> int:
    python = shutil.which("python") or shutil.which("python3")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp, "project")
        project.mkdir()
        (project / "work.py").write_text(SCRIPT)
        lines = "".join(f"{i}\n" for i in range(EXPERIMENTS))
        xargs = ["xargs", "-P", str(os.cpu_count()), "-I{}", python, "work.py", "--i", "{}"]
        baseline, ours = [], []
        for attempt in range(REPEATS):
            baseline.append(_timed(xargs, cwd=project, input=lines.encode()))
            env = {**os.environ, "GRIDCTL_HOME": str(Path(tmp, f"home{attempt}"))}
            sweep = f"range(0, {EXPERIMENTS})"
            run = [GRIDCTL, "run", "--wait", "--cpus", "1", "work.py", "--i", sweep]
            ours.append(_timed(run, cwd=project, env=env))
    base, mine = statistics.median(baseline), statistics.median(ours)
    ratio = mine / base
    print(
        f"local dispatch ({EXPERIMENTS} x 0.2 s, --cpus 1): gridctl {mine:.2f} s /"
        f" xargs -P {os.cpu_count()} {base:.2f} s = ratio {ratio:.2f} (target <= {TARGET})"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
