"""``gridctl --help`` wall time: median over repeated runs (target <= 0.3 s), shown beside
a bare interpreter start as the baseline."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from targets import verdict

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
REPEATS = 15
TARGET = 0.3


def _median(command: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    bare = _median([sys.executable, "-c", "pass"])
    ours = _median([GRIDCTL, "--help"])
    print(
        f"gridctl --help: median {ours:.3f} s {verdict(ours, TARGET, ' s')};"
        f" bare python {bare:.3f} s, ratio {ours / bare:.1f}"
    )
    return 0 if ours <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
