"""``make bench``: every benchmark, each printing its figure against its target."""

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
    failed = 0
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
    for bench in benches:
        failed += bench.main() != 0
    print("all benchmarks at target" if not failed else f"{failed} benchmark(s) missed target")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
