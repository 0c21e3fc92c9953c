"""Local dispatch against ``xargs`` running the same commands, in the same process:

- 32 experiments of a 0.2 s script, ``gridctl run --wait --cpus 1`` against
  ``xargs -P $(nproc)`` (target ratio <= 1.1);
- 1000 experiments of a trivial script, ``--cpus 0.5`` (four at once on two cores) against
  ``xargs -P 4`` (target ratio <= 1.5);
- the per-experiment overhead at 10, 100 and 1000 experiments of the trivial script: the
  run's time beyond ``xargs``', less a 1-experiment run's (CLI start-up, bundling, the
  scheduler's start), per experiment and slot, in ms. It must stay flat as runs grow: work
  the scheduler did per tick for every queued experiment made it grow with N.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from targets import verdict

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
SHORT_EXPERIMENTS = 32
SHORT_TARGET = 1.1
SHORT_REPEATS = 3
SHORT_SCRIPT = "import sys, time\ntime.sleep(0.2)\nprint('done', sys.argv[-1])\n"
MANY = 1000
MANY_TARGET = 1.5
TRIVIAL_SCRIPT = "pass\n"
TRIVIAL_CPUS = 0.5
TRIVIAL_SLOTS = 4
"""Experiments of ``TRIVIAL_CPUS`` that run at once on a 2-core machine, and xargs' -P."""
SIZES = {1: 3, 10: 3, 100: 2, MANY: 1}
"""Run size -> repeats (medians are compared): the big run alone takes a minute or more."""


@dataclass(frozen=True)
class Timing:
    xargs: float
    gridctl: float

    @property
    def ratio(self) -> float:
        return self.gridctl / self.xargs

    @property
    def beyond(self) -> float:
        return self.gridctl - self.xargs


def _timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def _measure(tmp: Path, script: str, count: int, cpus: float, slots: int, repeats: int) -> Timing:
    """Medians over ``repeats``, each timing both (gridctl on a fresh home), xargs first in
    every other one: the load of a shared machine drifts while they run."""
    python = shutil.which("python") or shutil.which("python3")
    assert python is not None
    project = Path(tempfile.mkdtemp(dir=tmp))
    (project / "work.py").write_text(script)
    lines = "".join(f"{i}\n" for i in range(count)).encode()
    xargs = ["xargs", "-P", str(slots), "-I{}", python, "work.py", "--i", "{}"]
    run = [GRIDCTL, "run", "--wait", "--cpus", f"{cpus:g}", "--ignore_warnings", "work.py"]
    run += ["--i", f"range(0, {count})" if count > 1 else "0"]
    baseline, ours = [], []
    for repeat in range(repeats):
        env = {**os.environ, "GRIDCTL_HOME": tempfile.mkdtemp(dir=tmp)}
        if repeat % 2:
            ours.append(_timed(run, cwd=project, env=env))
        baseline.append(_timed(xargs, cwd=project, input=lines))
        if not repeat % 2:
            ours.append(_timed(run, cwd=project, env=env))
    return Timing(statistics.median(baseline), statistics.median(ours))


def main() -> int:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        short = _measure(Path(tmp), SHORT_SCRIPT, SHORT_EXPERIMENTS, 1, cores, SHORT_REPEATS)
        trivial = {
            count: _measure(Path(tmp), TRIVIAL_SCRIPT, count, TRIVIAL_CPUS, TRIVIAL_SLOTS, repeats)
            for count, repeats in SIZES.items()
        }
    print(
        f"local dispatch ({SHORT_EXPERIMENTS} x 0.2 s, --cpus 1): gridctl {short.gridctl:.2f} s /"
        f" xargs -P {cores} {short.xargs:.2f} s = ratio {short.ratio:.2f}"
        f" {verdict(short.ratio, SHORT_TARGET)}"
    )
    many = trivial[MANY]
    print(
        f"local dispatch ({MANY} x pass, --cpus {TRIVIAL_CPUS:g}): gridctl {many.gridctl:.2f} s /"
        f" xargs -P {TRIVIAL_SLOTS} {many.xargs:.2f} s = ratio {many.ratio:.2f}"
        f" {verdict(many.ratio, MANY_TARGET)}"
    )
    fixed = trivial[1].beyond
    overheads = [
        f"{count}: {(timing.beyond - fixed) / (count - 1) * TRIVIAL_SLOTS * 1000:.0f} ms"
        for count, timing in trivial.items()
        if count > 1
    ]
    print(
        "local dispatch overhead per experiment and slot ((gridctl - xargs - the same for 1"
        f" experiment) / (N - 1) x {TRIVIAL_SLOTS}; flat as N grows), N = {', '.join(overheads)}"
        f" (a 1-experiment run: {fixed:.2f} s beyond xargs)"
    )
    return 0 if short.ratio <= SHORT_TARGET and many.ratio <= MANY_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
