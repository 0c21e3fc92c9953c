"""Spot interruptions through the agent's own path: a ``SpotWatcher`` polling an IMDSv2
stand-in every second hands the notice to ``ExperimentRunner.notice``, which SIGTERMs the
script's process group, syncs the exec dir and records the experiment ``interrupted``.

Notice to SIGTERM over 20 notices (target p99 <= 1.5 s), and notice to durable for a 200 MiB
exec dir on moto over TLS as a ratio to a plain 8-thread boto3 upload of the same files
(information only: no target was set, and the figure depends on moto's speed here)."""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from targets import verdict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gridctl.agent.core.s3store import S3Store  # noqa: E402
from gridctl.agent.core.spec import ExperimentSpec  # noqa: E402
from gridctl.agent.core.store import LocalStore, Store  # noqa: E402
from gridctl.agent.node.imds import IMDSClient  # noqa: E402
from gridctl.agent.node.spot import SpotWatcher  # noqa: E402
from gridctl.agent.runner.experiment import ExperimentRunner, RunnerSettings, Workspace  # noqa: E402
from gridctl.agent.runner.notice import WINDOW  # noqa: E402
from gridctl.cli.bundle import scan, upload  # noqa: E402
from tests.aws.emulator import REGION, moto_bucket  # noqa: E402
from tests.aws.imds import MetadataService  # noqa: E402

NOTICES = 20
LATENCY_TARGET = 1.5
POLL_INTERVAL = 1.0
"""The watcher's default: what a node uses."""
DURABLE_ROUNDS = 3
SETTINGS = RunnerSettings(sync_interval=3600.0)
"""No periodic sync before the notice: the final sync has the whole exec dir to send."""
READY_TIMEOUT = 60.0
FINISH_TIMEOUT = 300.0
WAIT_TICK = 0.01
MIB = 1 << 20
CHECKPOINTS = 5
"""20 MiB each, multipart uploads in boto3 (above its 8 MiB threshold)."""
MEDIUM = 15
"""4 MiB each: single PUTs of some size."""
SMALL = 180
"""Logs, metrics and images: 200 files and 200 MiB in all."""
BASELINE_WORKERS = 8
BUCKET = "gridctl-bench-spot"
SCRIPT = "interruptible.py"
SCRIPT_TEXT = '''\
"""Hard-links the trees named after its first two arguments into its exec dir (its cwd),
says it is ready, then waits; SIGTERM notes when it arrived and ends the script at once."""
import os, signal, sys, time

stamp_path, ready_path, *sources = sys.argv[1:]


def on_sigterm(signum, frame):
    with open(stamp_path, "w") as out:
        out.write(repr(time.time()))
    os._exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
for source in sources:
    for folder, _dirs, names in os.walk(source):
        target = os.path.relpath(folder, source)
        os.makedirs(target, exist_ok=True)
        for name in names:
            os.link(os.path.join(folder, name), os.path.join(target, name))
open(ready_path, "w").close()
while True:
    time.sleep(3600)
'''


class Recorder:
    """Notes when the runner reports the end: it does so only after the final sync."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.finished_at = 0.0
        self.status: str | None = None
        self.reason: str | None = None

    def running(self, pid: int, pid_started: float) -> None:
        pass

    def finished(self, status: str, exit_code: int | None, reason: str | None) -> None:
        self.finished_at = time.time()
        self.status, self.reason = status, reason
        self.done.set()


@dataclass(frozen=True)
class Interruption:
    """Epoch seconds: the notice posted, the SIGTERM seen by the script, the status recorded."""

    posted: float
    sigterm: float
    finished: float


def make_bundle(base: Path, store: Store) -> str:
    """The bundle of a one-script project, as ``gridctl run`` would upload it."""
    project = base / "project"
    project.mkdir(parents=True)
    (project / SCRIPT).write_text(SCRIPT_TEXT)
    bundle = scan(project)
    upload(bundle, store)
    return bundle.key


def build_exec_dir(root: Path) -> list[Path]:
    """200 files, 200 MiB: a few checkpoints, some mid-sized files, many small ones; random
    bytes, so nothing compresses."""
    rng = random.Random(0)
    small_bytes = 200 * MIB - CHECKPOINTS * 20 * MIB - MEDIUM * 4 * MIB
    sizes = [rng.randint(1, 100) for _ in range(SMALL)]
    scale = small_bytes / sum(sizes)
    plan = [(f"checkpoints/epoch{i:02d}.pt", 20 * MIB) for i in range(CHECKPOINTS)]
    plan += [(f"samples/batch{i:02d}.npy", 4 * MIB) for i in range(MEDIUM)]
    plan += [(f"logs/run{i % 6}/step{i:03d}.json", int(s * scale)) for i, s in enumerate(sizes)]
    files = []
    for rel, size in plan:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        files.append(path)
    return files


@contextmanager
def experiment(
    store: Store, bundle_key: str, directory: Path, name: str, sources: tuple[str, ...] = ()
) -> Iterator[tuple[ExperimentRunner, Recorder, MetadataService]]:
    """One experiment as a node runs it: the runner in a thread of its own and a spot
    watcher, polling a fresh metadata stand-in, that delivers notices to it."""
    recorder = Recorder()
    workspace = Workspace(
        exec_dir=directory / "exec",
        scratch_dir=directory / "scratch",
        log_path=directory / "log.txt",
        bundle_cache=directory.parent / "bundles",
        notice_file=directory / "notice.json",
        mount_root=directory / "root",
        datastore_cache=directory / "mounts",
    )
    argv = ("python", SCRIPT, str(directory / "sigterm"), str(directory / "ready"), *sources)
    # The bench's own interpreter runs the script, not whatever a version shim picks.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    spec = ExperimentSpec("bench", name, 0, argv, bundle_key, env={"PATH": path})
    runner = ExperimentRunner(spec, store, workspace, recorder, settings=SETTINGS)
    thread = threading.Thread(target=runner.run, name=f"runner-{name}", daemon=True)
    with MetadataService() as service:
        watcher = SpotWatcher(IMDSClient(service.url), runner.notice, POLL_INTERVAL)
        thread.start()
        watcher.start()
        try:
            yield runner, recorder, service
        finally:
            watcher.stop()
            runner.request_stop()  # a no-op once interrupted; ends the script on an error
            thread.join()


def interrupt(
    directory: Path, recorder: Recorder, service: MetadataService, rng: random.Random
) -> Interruption:
    """Once the script is ready, posts the notice at a random point of the watcher's poll
    cycle (a real notice does not wait for the poll) and waits for the recorded end."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not (directory / "ready").exists():
        if recorder.done.is_set() or time.monotonic() > deadline:
            log = directory / "log.txt"
            raise RuntimeError(f"the script never got ready ({recorder.reason}), see {log}")
        time.sleep(WAIT_TICK)
    time.sleep(rng.uniform(0, POLL_INTERVAL))
    posted = time.time()
    service.notify_spot_interruption(WINDOW)
    if not recorder.done.wait(FINISH_TIMEOUT):
        raise RuntimeError(f"no status recorded {FINISH_TIMEOUT:.0f} s after the notice")
    if recorder.status != "interrupted":
        raise RuntimeError(f"recorded {recorder.status} ({recorder.reason}), not interrupted")
    sigterm = float((directory / "sigterm").read_text())
    return Interruption(posted, sigterm, recorder.finished_at)


def nearest_rank(samples: list[float], percent: float) -> float:
    """The smallest sample with ``percent`` % of them at or below it: of 20, p99 is the max."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def notice_to_sigterm(base: Path, rng: random.Random) -> list[float]:
    """Seconds from each notice posted to the SIGTERM handler running in the script."""
    store = LocalStore(base / "store")
    bundle_key = make_bundle(base, store)
    latencies = []
    for i in range(NOTICES):
        directory = base / f"notice{i:02d}"
        with experiment(store, bundle_key, directory, f"notice{i:02d}") as (_, recorder, imds):
            seen = interrupt(directory, recorder, imds, rng)
        latencies.append(seen.sigterm - seen.posted)
    return latencies


def baseline_upload(client, root: Path, files: list[Path], prefix: str) -> float:
    """Seconds a plain parallel boto3 upload of ``files`` takes."""

    def put(path: Path) -> None:
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(root).as_posix()}")

    start = time.perf_counter()
    with ThreadPoolExecutor(BASELINE_WORKERS) as pool:
        for _ in pool.map(put, files):
            pass
    return time.perf_counter() - start


def notice_to_durable(
    base: Path, rng: random.Random
) -> tuple[list[Interruption], list[float], int, int]:
    """Interruptions of a script that put 200 MiB in its exec dir, each checked to have left
    every file in the bucket, and the baseline uploads; also (files, bytes)."""
    with moto_bucket(base, BUCKET) as client:
        store = S3Store(BUCKET, REGION)
        bundle_key = make_bundle(base, store)
        source = base / "source"
        files = build_exec_dir(source)
        expected = {path.relative_to(source).as_posix() for path in files}
        baselines, interruptions = [], []
        # Each baseline just before its round, so a slow spell of moto hits both alike.
        for i in range(DURABLE_ROUNDS):
            baselines.append(baseline_upload(client, source, files, f"baseline{i}"))
            directory = base / f"durable{i}"
            name = f"durable{i}"
            with experiment(store, bundle_key, directory, name, (str(source),)) as running:
                runner, recorder, imds = running
                interruptions.append(interrupt(directory, recorder, imds, rng))
            prefix = runner.artifact_prefix + "/"
            stored = {key.removeprefix(prefix) for key in store.list(prefix)}
            if stored != expected:
                missing = sorted(expected - stored)
                raise RuntimeError(f"{len(missing)} file(s) not in the bucket: {missing[:5]}")
    return interruptions, baselines, len(files), sum(path.stat().st_size for path in files)


def main() -> int:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-") as tmp:
        base = Path(tmp)
        latencies = notice_to_sigterm(base / "latency", rng)
        interruptions, baselines, files, size = notice_to_durable(base / "durable", rng)
    p50, p99 = nearest_rank(latencies, 50), nearest_rank(latencies, 99)
    print(
        f"spot notice to SIGTERM, {NOTICES} notices, {POLL_INTERVAL:.0f} s polling:"
        f" p50 {p50:.2f} s, p99 {p99:.2f} s (nearest rank: the max of {NOTICES})"
        f" {verdict(p99, LATENCY_TARGET, ' s')}"
    )
    # The median round, split where its time went: waiting for the poll, then the sync.
    middle = sorted(interruptions, key=lambda i: i.finished - i.posted)[len(interruptions) // 2]
    durable = middle.finished - middle.posted
    poll, sync = middle.sigterm - middle.posted, middle.finished - middle.sigterm
    baseline = statistics.median(baselines)
    print(
        f"spot notice to durable, {files} files {size / 1e6:.0f} MB to S3 (moto, TLS):"
        f" gridctl {durable:.2f} s (poll {poll:.2f} s + SIGTERM to recorded {sync:.2f} s)"
        f" / boto3 {BASELINE_WORKERS} threads {baseline:.2f} s"
        f" = ratio {durable / baseline:.2f} (median of {DURABLE_ROUNDS}; information, no target)"
    )
    return 0 if p99 <= LATENCY_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
