"""A "training loop" that survives spot interruptions: it checkpoints and resumes.

Try it with gridctl run --auto_resume train.py --steps 600, then gridctl interrupt RUN-exp0.
State lives in checkpoints/state.json; the result goes to out/result.json.
"""

import argparse
import json
import os
import signal
import sys
import time

CHECKPOINT = "checkpoints/state.json"

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--step-seconds", type=float, default=0.1)
parser.add_argument("--lr", type=float, default=0.01)
args = parser.parse_args()
resumes = int(os.environ.get("GRIDCTL_RESUME_COUNT", "0"))


def save(path, data):
    """Write to a temporary file, then rename: a kill never leaves half a checkpoint."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def notice():
    """The modification time of gridctl's notice file, None while there is no notice."""
    path = os.environ.get("GRIDCTL_NOTICE_FILE")
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


stopping = False


def on_sigterm(signum, frame):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_sigterm)

state = {"step": 0, "loss": 1.0}
if os.path.exists(CHECKPOINT):
    with open(CHECKPOINT) as f:
        state = json.load(f)
    print(f"resumed from step {state['step']} (resume {resumes})", flush=True)

seen_notice = notice()
while state["step"] < args.steps:
    time.sleep(args.step_seconds)  # one training step
    state["step"] += 1
    state["loss"] /= 1 + args.lr
    print(f"step {state['step']}", flush=True)
    if stopping:
        save(CHECKPOINT, state)
        print(f"SIGTERM: saved step {state['step']}, exiting", flush=True)
        sys.exit(0)
    if (current := notice()) not in (None, seen_notice):  # a new notice: checkpoint early
        seen_notice = current
        save(CHECKPOINT, state)
        print(f"notice: saved step {state['step']}", flush=True)
    elif state["step"] % 10 == 0:
        save(CHECKPOINT, state)

save(CHECKPOINT, state)
result = {"lr": args.lr, "steps": state["step"], "loss": state["loss"], "resumes": resumes}
save("out/result.json", result)
print(f"done at step {state['step']}", flush=True)
