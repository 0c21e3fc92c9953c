"""Ranks of a gang through the real ExperimentRunner and GangMember over a directory store,
each rank in a thread as the local agent runs them: what each script is told, a failing
rank stopping its peer, and what each rank gets back on a resume."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

from gridctl.agent.core.contract import ExperimentKeys
from gridctl.agent.core.gang import Rendezvous
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import State
from gridctl.agent.core.store import LocalStore
from gridctl.agent.runner.experiment import ExperimentRunner, Workspace
from gridctl.agent.runner.gang import GangMember, GangSettings

RUN, NAME = "run", "run-exp0"
KEYS = ExperimentKeys(RUN, NAME)
BUNDLE = "bundles/b.tar.gz"


class Recorder:
    """The outcomes the ranks' recorders got: the combined one, from one rank only."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[State, int | None, str | None]] = []
        self.lock = threading.Lock()


def bundle(store: LocalStore, script: str) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        info = tarfile.TarInfo("s.py")
        info.size = len(script.encode())
        archive.addfile(info, io.BytesIO(script.encode()))
    store.put_bytes(BUNDLE, data.getvalue())


def run_gang(store: LocalStore, root: Path, *, resume: int = 0) -> Recorder:
    spec = ExperimentSpec(RUN, NAME, 0, ("python", "s.py"), BUNDLE, env=dict(os.environ), nodes=2)
    recorder = Recorder()

    def rank(r: int) -> None:
        rendezvous = Rendezvous(store, KEYS, 2, resume, f"local-{r}", "127.0.0.1")
        assert rendezvous.register(want=r) == r
        settings = GangSettings(interval=0.1, beat_interval=1, stale_beats=None)
        member = GangMember(rendezvous, r, spec, settings)
        own = NAME if r == 0 else f"{NAME}-node-{r}"

        class RankRecorder:
            def running(self, pid: int, pid_started: float) -> None:
                pass

            def finished(self, status: State, code: int | None, reason: str | None) -> None:
                outcome = member.finish(status, code, reason, runner.exited_at)
                if outcome is not None:
                    with recorder.lock:
                        recorder.outcomes.append(outcome)

        workspace = Workspace(
            root / "work" / own,
            root / "scratch" / own,
            store.path(KEYS.log_of(r)),
            root / "cache",
            root / "notices" / own,
            Path("/"),
            root / "datastores",
        )
        runner = ExperimentRunner(
            spec, store, workspace, RankRecorder(), gang=member, resume_count=resume
        )
        done = threading.Event()
        watch = threading.Thread(target=member.watch, args=(runner, done), daemon=True)
        watch.start()
        runner.run()
        done.set()
        watch.join()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
        assert not thread.is_alive(), "a rank did not end"
    return recorder


def test_each_rank_is_told_its_place_and_the_gang_succeeds(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    bundle(
        store,
        "import os\n"
        "names = ('GRIDCTL_NODE_RANK', 'GRIDCTL_NUM_NODES', 'MASTER_ADDR', 'NODE_RANK')\n"
        "open('env.txt', 'w').write(' '.join(os.environ[n] for n in names))\n"
        "print('RANK' in os.environ, 'LOCAL_RANK' in os.environ)\n",
    )
    recorder = run_gang(store, tmp_path)
    assert recorder.outcomes == [(State.SUCCEEDED, 0, None)]
    assert store.get_bytes(f"{KEYS.artifacts}/env.txt") == b"0 2 127.0.0.1 0"
    assert store.get_bytes(f"{KEYS.artifacts}/node-1/env.txt") == b"1 2 127.0.0.1 1"
    assert b"False False" in store.get_bytes(KEYS.log_of(1))


def test_a_failing_rank_stops_its_peer_and_fails_the_gang_with_its_code(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    bundle(
        store,
        "import os, sys, time\n"
        "if os.environ['NODE_RANK'] == '1':\n"
        "    sys.exit(7)\n"
        "print('rank 0 sleeps', flush=True)\n"
        "time.sleep(600)\n",
    )
    recorder = run_gang(store, tmp_path)  # returns long before rank 0's sleep would end
    assert recorder.outcomes == [(State.FAILED, 7, "node 1: exit code 7")]


def test_on_a_resume_every_rank_gets_rank_0s_files_under_its_own(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes(f"{KEYS.artifacts}/last.ckpt", b"rank 0's checkpoint")
    store.put_bytes(f"{KEYS.artifacts}/own.txt", b"rank 0")
    store.put_bytes(f"{KEYS.artifacts}/node-1/own.txt", b"rank 1")
    bundle(
        store,
        "import os\n"
        "found = sorted(os.listdir('.'))\n"
        "assert 'node-1' not in found, found\n"
        "print(open('last.ckpt').read(), '|', open('own.txt').read(), flush=True)\n",
    )
    recorder = run_gang(store, tmp_path, resume=1)
    assert recorder.outcomes == [(State.SUCCEEDED, 0, None)]
    assert b"rank 0's checkpoint | rank 0" in store.get_bytes(KEYS.log_of(0))
    assert b"rank 0's checkpoint | rank 1" in store.get_bytes(KEYS.log_of(1))
