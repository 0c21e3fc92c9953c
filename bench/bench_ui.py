"""``gridctl ui``: a 100-experiment sweep's run page (a table row per experiment, a chart per
metric) served in under a second (target), with a cold metrics cache and a warm one.

The sweep runs locally, each experiment writing ``metrics.jsonl`` (3 metrics x 200 steps)
and one small artifact; the real ``gridctl ui --port 0`` serves it. Shown beside
``gridctl status RUN --output json`` (a whole CLI start and the same run's records) as the
baseline, timed in the same script on the same machine; the page is checked to hold every
row and chart first, so an error page cannot pass for a fast one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from targets import verdict

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
EXPERIMENTS = 100
METRICS = ("loss", "accuracy", "lr")
STEPS = 200
TARGET = 1.0
COLD_REPEATS = 3
REPEATS = 5
RUN = "bench-ui"
SCRIPT = f"""\
import json, math, sys
i = int(sys.argv[-1])
with open("metrics.jsonl", "w") as f:
    for step in range({STEPS}):
        loss = math.exp(-step / 50) + i / 1000
        f.write(json.dumps({{"step": step, "loss": loss, "accuracy": 1 - loss / 2,
                            "lr": 0.1 / (1 + step)}}) + "\\n")
with open("model.txt", "w") as f:
    f.write("weights %d\\n" % i)
"""
_URL = re.compile(r"gridctl ui: (http://\S+)/\?token=(\S+) ")
_ROWS = re.compile(r'<table[^>]*id="experiments".*?<tbody>(.*?)</tbody>', re.S)


def _median(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _get(base: str, token: str, path: str) -> bytes:
    request = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return reply.read()


def _check_page(page: str) -> None:
    """The run page, whole: every experiment's row and every metric's chart."""
    rows = _ROWS.search(page)
    found = rows.group(1).count("<tr>") if rows else 0
    charts = page.count('<figure class="chart"')
    if found != EXPERIMENTS or charts != len(METRICS):
        raise SystemExit(f"run page: {found} rows and {charts} charts, not what the bench made")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-") as tmp:
        home, project = Path(tmp, "home"), Path(tmp, "project")
        project.mkdir()
        (project / "work.py").write_text(SCRIPT)
        env = {**os.environ, "GRIDCTL_HOME": str(home)}
        sweep = f"range(0, {EXPERIMENTS})"
        run = [GRIDCTL, "run", "--wait", "--ignore_warnings", "--name", RUN, "--output", "json"]
        subprocess.run(
            [*run, "work.py", "--i", sweep], cwd=project, env=env, check=True, capture_output=True
        )
        server = subprocess.Popen(
            [GRIDCTL, "ui", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            url = _URL.match(server.stdout.readline())
            if url is None:
                raise SystemExit("gridctl ui printed no URL")
            base, token = url.groups()
            page = f"/runs/{RUN}"

            def cold() -> None:
                shutil.rmtree(home / "cache", ignore_errors=True)
                _get(base, token, page)

            _check_page(_get(base, token, page).decode())
            first = _median(cold, COLD_REPEATS)
            _get(base, token, page)
            cached = _median(lambda: _get(base, token, page), REPEATS)
            data = json.loads(_get(base, token, f"/api/runs/{RUN}"))
            if len(data["experiments"]) != EXPERIMENTS:
                raise SystemExit(f"/api/runs/{RUN}: {len(data['experiments'])} experiments")
            api = _median(lambda: _get(base, token, f"/api/runs/{RUN}"), REPEATS)
            if RUN not in _get(base, token, "/").decode():
                raise SystemExit(f"runs page: no {RUN}")
            runs = _median(lambda: _get(base, token, "/"), REPEATS)
        finally:
            server.terminate()
            server.wait()
        status = [GRIDCTL, "status", RUN, "--output", "json"]
        baseline = _median(
            lambda: subprocess.run(status, env=env, check=True, capture_output=True), REPEATS
        )
    print(
        f"ui run page, {EXPERIMENTS} experiments x {len(METRICS)} metrics x {STEPS} steps:"
        f" cold cache {first:.3f} s, cached {cached:.3f} s"
        f" {verdict(max(first, cached), TARGET, ' s', strictly=True)};"
        f" gridctl status --output json {baseline:.3f} s,"
        f" ratio cold {first / baseline:.1f}, cached {cached / baseline:.1f}"
    )
    print(f"ui /api/runs/{RUN} {api:.3f} s, runs page / {runs:.3f} s")
    return 0 if max(first, cached) < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
