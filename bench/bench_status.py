"""``gridctl status``: a 1000-experiment run as JSON and as a table, and every run of a
registry holding 200, each a whole CLI call (target <= 0.3 s), shown beside ``gridctl --help``.

The registry is written through its own API (``Registry.create_run``, then each experiment
claimed, running and succeeded, as the scheduler records them) with specs as ``gridctl run``
makes them, the submitter's whole environment included: 1000 scripts need not run for
``status`` to read their records. Each output is checked to hold every experiment or run
first, so an error cannot pass for a fast answer. Medians over repeated runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import verdict

from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import State
from gridctl.agent.service.registry import Registry, RunRecord

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
EXPERIMENTS = 1000
RUNS = 200
EXPERIMENTS_PER_RUN = 5
REPEATS = 9
TARGET = 0.3
BIG_RUN = "bench-status"


def _fill(registry: Registry, run: str, experiments: int) -> None:
    """One finished sweep ``--i range(0, experiments)`` of a trivial script."""
    record = RunRecord(
        name=run,
        backend="local",
        created_at=time.time(),
        description=None,
        strategy="grid_search",
        seed=0,
        bundle_id="0" * 64,
        localdir="/tmp/project",
    )
    specs = [
        ExperimentSpec(
            run=run,
            name=f"{run}-exp{i}",
            index=i,
            argv=("python", "work.py", "--i", str(i)),
            bundle_key=f"bundles/{'0' * 64}.tar.gz",
            params={"i": i},
            env=dict(os.environ),
        )
        for i in range(experiments)
    ]
    registry.create_run(record, specs)
    for spec in specs:
        registry.claim(spec.name, [])
        registry.mark_running(spec.name, os.getpid(), time.time())
        registry.finish(spec.name, State.SUCCEEDED, 0, None)


def _median(command: list[str], env: dict[str, str], check: str) -> float:
    """Wall time of ``command``; its output must contain ``check`` (once timed untimed)."""
    first = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    if check not in first.stdout:
        raise SystemExit(f"{' '.join(command[1:])}: output lacks {check!r}")
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-") as tmp:
        big, many = Path(tmp, "big"), Path(tmp, "many")
        registry = Registry(big / "registry.db")
        _fill(registry, BIG_RUN, EXPERIMENTS)
        registry.close()
        registry = Registry(many / "registry.db")
        for i in range(RUNS):
            _fill(registry, f"bench-run-{i}", EXPERIMENTS_PER_RUN)
        registry.close()
        # Byte-compiled as any install is (a first untimed call writes what is missing).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        big_env = {**env, "GRIDCTL_HOME": str(big)}
        many_env = {**env, "GRIDCTL_HOME": str(many)}
        last = f"{BIG_RUN}-exp{EXPERIMENTS - 1}"
        help_s = _median([GRIDCTL, "--help"], big_env, "status")
        as_json = [GRIDCTL, "status", BIG_RUN, "--output", "json"]
        reply = subprocess.run(as_json, env=big_env, check=True, capture_output=True)
        if len(json.loads(reply.stdout)["experiments"]) != EXPERIMENTS:
            raise SystemExit(f"gridctl status {BIG_RUN}: not {EXPERIMENTS} experiments")
        json_s = _median(as_json, big_env, f'"{last}"')
        table_s = _median([GRIDCTL, "status", BIG_RUN], big_env, last)
        runs_json = [GRIDCTL, "status", "--output", "json"]
        reply = subprocess.run(runs_json, env=many_env, check=True, capture_output=True)
        if len(json.loads(reply.stdout)) != RUNS:
            raise SystemExit(f"gridctl status: not {RUNS} runs")
        runs_json_s = _median(runs_json, many_env, f'"bench-run-{RUNS - 1}"')
        runs_s = _median([GRIDCTL, "status"], many_env, f"bench-run-{RUNS - 1}")
    figures = (
        (f"gridctl status RUN --output json, {EXPERIMENTS} experiments", json_s),
        (f"gridctl status RUN (table), {EXPERIMENTS} experiments", table_s),
        (
            f"gridctl status --output json, {RUNS} runs of {EXPERIMENTS_PER_RUN} experiments",
            runs_json_s,
        ),
        (f"gridctl status (table), {RUNS} runs of {EXPERIMENTS_PER_RUN} experiments", runs_s),
    )
    for what, seconds in figures:
        print(f"{what}: median {seconds:.3f} s {verdict(seconds, TARGET, ' s')}")
    print(f"gridctl --help: median {help_s:.3f} s (CLI start-up, for context)")
    return 0 if all(seconds <= TARGET for _, seconds in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
