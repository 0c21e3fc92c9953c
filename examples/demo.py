"""``make demo``: a small sweep on this machine, then its status and each experiment's result."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRIDCTL = str(Path(sys.executable).with_name("gridctl"))


def gridctl(*args: str) -> subprocess.CompletedProcess:
    print("$ gridctl " + " ".join(f"'{a}'" if " " in a else a for a in args), flush=True)
    return subprocess.run([GRIDCTL, *args], cwd=HERE / "quickstart", check=False)


def main() -> int:
    os.environ.setdefault("GRIDCTL_HOME", str(HERE.parent / ".gridctl-demo"))
    run = f"demo-{secrets.token_hex(2)}"
    sweep = ["train.py", "--lr", "[0.3, 0.1, 0.01]", "--epochs", "[10, 40]"]
    if gridctl("run", "--name", run, "--wait", *sweep).returncode != 0:
        return 1
    with tempfile.TemporaryDirectory() as dest:
        if gridctl("artifacts", run, "--dest", dest).returncode != 0:
            return 1
        print(f"\n{'experiment':<16} {'lr':>6} {'epochs':>6} {'loss':>10}")
        for metrics in sorted(Path(dest).glob("*/outputs/metrics.json")):
            m = json.loads(metrics.read_text())
            name = metrics.parent.parent.name
            print(f"{name:<16} {m['lr']:>6} {m['epochs']:>6} {m['loss']:>10.4f}")
    home = os.environ["GRIDCTL_HOME"]
    print(f"\nOne experiment's log: GRIDCTL_HOME={home} .venv/bin/gridctl logs {run}-exp0")
    print(f"The sweep in a browser, with charts: GRIDCTL_HOME={home} .venv/bin/gridctl ui")
    return 0


if __name__ == "__main__":
    sys.exit(main())
