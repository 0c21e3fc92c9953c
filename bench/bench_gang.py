"""Gangs on AWS through the node agent's own path: two real agents on simulated instances of
a group of two in moto (over TLS), each with its own IMDSv2 stand-in, root and loopback
address, finding each other through the bucket (the harness of tests/aws/gang_nodes.py).

Start skew: from the start of the last node's agent to the script running on every node
(the barrier included), target p99 <= 3 s. Interruption: from a spot notice on one node's
metadata service to SIGTERM in every node's script (the notice's own poll, the alarm in
the bucket, the peer's look at it), target p99 <= 3 s, with the agents' defaults (1 s
spot polling, 1 s gang looks). Each figure is over ROUNDS fresh gangs (GANG_ROUNDS)."""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from targets import verdict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.aws.emulator import aws_environment, free_port, self_signed, start_moto  # noqa: E402
from tests.aws.gang_nodes import Gang, gang_group, wait_for  # noqa: E402

ROUNDS = int(os.environ.get("GANG_ROUNDS", "10"))
SKEW_TARGET = 3.0
INTERRUPTION_TARGET = 3.0
ROUND_TIMEOUT = 180.0
STARTED = """\
import time
with open("started.txt", "w") as f:
    f.write(repr(time.time()))
"""
INTERRUPTIBLE = """\
import os, signal, sys, time


def on_sigterm(signum, frame):
    with open("sigterm.txt", "w") as f:
        f.write(repr(time.time()))
    sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
print("ready", flush=True)
time.sleep(600)
"""


def nearest_rank(samples: list[float], percent: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def stamp(gang: Gang, rank: int, name: str) -> float:
    return float(gang.artifact(rank, name))


def start_skew(gang: Gang, project: Path) -> float:
    """Seconds from the last agent's start to the later of the two scripts' starts."""
    gang.deploy({"train.py": STARTED}, ("python", "train.py"), project)
    nodes = [gang.boot(instance) for instance in sorted(gang.instances())]
    port = str(free_port())
    gang.start(nodes[0], GRIDCTL_MASTER_PORT=port)
    last_start = time.time()
    gang.start(nodes[1], GRIDCTL_MASTER_PORT=port)
    for node in nodes:
        if node.ended(ROUND_TIMEOUT) != 0:
            raise RuntimeError(node.output())
    return max(stamp(gang, rank, "started.txt") for rank in (0, 1)) - last_start


def interruption(gang: Gang, project: Path, noticed: int) -> float:
    """Seconds from a spot notice on node ``noticed`` to SIGTERM in every node's script."""
    gang.deploy({"train.py": INTERRUPTIBLE}, ("python", "train.py"), project)
    nodes = [gang.boot(instance) for instance in sorted(gang.instances())]
    port = str(free_port())
    for node in nodes:
        gang.start(node, GRIDCTL_MASTER_PORT=port)
    wait_for(lambda: all(b"Z ready" in gang.log(rank) for rank in (0, 1)), ROUND_TIMEOUT)
    posted = time.time()
    nodes[noticed].imds.notify_spot_interruption(120)
    for node in nodes:
        if node.ended(ROUND_TIMEOUT) != 0:
            raise RuntimeError(node.output())
    return max(stamp(gang, rank, "sigterm.txt") for rank in (0, 1)) - posted


def rounds(base: Path, moto, measure) -> list[float]:
    samples = []
    for index in range(ROUNDS):
        moto.reset()
        root = base / f"round-{len(list(base.iterdir()))}"
        project = root / "project"
        project.mkdir(parents=True)
        with gang_group(moto.url, moto.cert, root / "nodes") as gang:
            samples.append(measure(gang, project, index))
    return samples


def report(name: str, samples: list[float], target: float) -> bool:
    p50, p99 = statistics.median(samples), nearest_rank(samples, 99)
    print(
        f"{name}: p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(samples):.2f} s over "
        f"{len(samples)} gangs of 2; p99/target {p99 / target:.2f} {verdict(p99, target, ' s')}"
    )
    return p99 <= target


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-gang-") as tmp:
        base = Path(tmp)
        moto = start_moto(self_signed(base / "tls"))
        saved = dict(os.environ)
        try:
            os.environ.update(aws_environment(moto, {}, {}))
            (base / "work").mkdir()
            skews = rounds(base / "work", moto, lambda gang, project, _i: start_skew(gang, project))
            latencies = rounds(
                base / "work", moto, lambda gang, project, i: interruption(gang, project, i % 2)
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)
            moto.stop()
    ok = report("gang start skew (last agent start -> script on every node)", skews, SKEW_TARGET)
    ok &= report(
        "gang interruption (spot notice on one node -> SIGTERM on every node)",
        latencies,
        INTERRUPTION_TARGET,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
