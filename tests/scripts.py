"""Scripts that tests run as experiments, and what to read from their logs; shared by the
local and the AWS tests."""

import re
from pathlib import Path

RESUMABLE_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "resumable" / "train.py"
SLOW_FIRST_ATTEMPT = """\
import os
import runpy
import sys

if os.environ["GRIDCTL_RESUME_COUNT"] == "0":
    sys.argv += ["--step-seconds", "1"]
runpy.run_path("example.py", run_name="__main__")
"""
"""Runs the resumable example (copied as example.py) at one step a second until its first
resume: however slow a loaded machine makes the test, the experiment is still running when
the test interrupts it."""
UNTIL_TERM = """\
import signal, sys, time
def on_term(*_):
    open("terminated.txt", "w").write("SIGTERM")
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
for i in range(6000):
    print("tick", i, flush=True)
    time.sleep(0.1)
"""
"""Ticks for ten minutes unless stopped; on SIGTERM it leaves ``terminated.txt`` (an artifact
a stop must keep) and exits 0."""
RESUMED = re.compile(r"resumed from step (\d+) \(resume 1\)")
"""The example's line on its first resume, with the step it resumed from."""


def steps_logged(gridctl, experiment: str) -> int:
    """The last step the example has logged so far (``gridctl logs``), 0 before the first."""
    found = re.findall(r"Z step (\d+)$", gridctl("logs", experiment).stdout, re.MULTILINE)
    return int(found[-1]) if found else 0


DATASTORE_READER = """\
import json, os, sys


def listing(root):
    seen = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            seen[os.path.relpath(path, root)] = open(path).read()
    return seen


own = os.environ["GRIDCTL_DATASTORE_DIR"]
seen = listing(own)
first = sorted(seen)[0]
try:
    open(os.path.join(own, first), "w").write("overwritten")
    wrote = "overwrote a file"
except OSError:
    try:
        open(os.path.join(own, "new.txt"), "w").write("new")
        wrote = "created a file"
    except OSError:
        wrote = "refused"
mount = sys.argv[sys.argv.index("--mount") + 1] if "--mount" in sys.argv else None
os.makedirs("out", exist_ok=True)
json.dump({"datastore_dir": own, "files": seen, "write": wrote,
           "at_mount": listing(mount) if mount else None,
           "scratch": os.environ["GRIDCTL_SCRATCH_DIR"]}, open("out/seen.json", "w"))
"""
"""Records what the experiment's datastore version holds (``GRIDCTL_DATASTORE_DIR``), what
the mount dir given as ``--mount PATH`` shows, and whether writing into it is refused."""


METRICS_SWEEP = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()
with open("metrics.jsonl", "w") as f:
    for step in range(20):
        loss = 1 / (1 + step * args.lr)
        f.write(json.dumps({"step": step, "loss": loss, "acc": 1 - loss}) + "\\n")
os.makedirs("out", exist_ok=True)
with open("out/weights.bin", "wb") as f:
    f.write(bytes(range(256)) * 4)
print("trained", args.lr, flush=True)
"""
"""A sweep's experiment for the web view: 20 steps of ``loss`` (1 / (1 + step * lr)) and
``acc`` (1 - loss) in metrics.jsonl, and ``out/weights.bin`` (WEIGHTS)."""
WEIGHTS = bytes(range(256)) * 4
METRICS_STEPS = 20
