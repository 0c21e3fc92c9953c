"""``make bench``: every benchmark, each printing its figures against their targets
(``bench/targets.py``), then the names of those that missed one."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_aws
import bench_bundle
import bench_datastore
import bench_dispatch
import bench_gang
import bench_help
import bench_spot
import bench_status
import bench_ui
import bench_venv


def main() -> int:
    benches = (
        bench_help,
        bench_bundle,
        bench_status,
        bench_dispatch,
        bench_spot,
        bench_gang,
        bench_datastore,
        bench_venv,
        bench_ui,
        bench_aws,
    )
    missed = [bench.__name__ for bench in benches if bench.main() != 0]
    if missed:
        print(f"missed a target: {', '.join(missed)} (their lines say MISSED)")
    else:
        print("all benchmarks at target")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
