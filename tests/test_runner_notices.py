"""How an ExperimentRunner takes notices: the outcome, the notice file, and the deadline.

The runner is driven directly (LocalStore, a real script) because the cases here are
about ordering: a notice that arrives as the script ends must not change its outcome."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from recorders import Recorded, workspace_in

from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.store import LocalStore
from gridctl.agent.runner.experiment import ExperimentRunner, RunnerSettings
from gridctl.agent.runner.notice import REBALANCE, Notice, interruption
from gridctl.cli.bundle import scan, upload


class SlowFinalSync(LocalStore):
    """Holds the first upload of ``held`` until released, to act during the final sync."""

    def __init__(self, root: Path, held: str) -> None:
        super().__init__(root)
        self.held = held
        self.reached = threading.Event()
        self.release = threading.Event()

    def put_file(self, key, path, sent=None):
        if key.endswith(self.held) and not self.release.is_set():
            self.reached.set()
            assert self.release.wait(30)
        super().put_file(key, path, sent)


def runner_for(tmp_path: Path, script: str, store: LocalStore | None = None):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(script)
    store = store or LocalStore(tmp_path / "store")
    bundle = scan(project)
    upload(bundle, store)
    spec = ExperimentSpec("r", "r-exp0", 0, ("python", "train.py"), bundle.key)
    workspace = workspace_in(tmp_path)
    recorded = Recorded()
    settings = RunnerSettings(grace_period=5, sync_interval=3600)
    return ExperimentRunner(spec, store, workspace, recorded, settings=settings), recorded


def wait_ready(tmp_path: Path) -> None:
    """Until the script has installed its SIGTERM handler and said so."""
    give_up = time.monotonic() + 60
    while not (tmp_path / "work" / "ready").exists():
        assert time.monotonic() < give_up, "the script never got ready"
        time.sleep(0.02)


def start(runner: ExperimentRunner) -> threading.Thread:
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    return thread


WAITS_FOR_TERM = """\
import json, os, signal, sys, time
def on_term(*_):
    with open("notice-seen.json", "w") as f:
        f.write(open(os.environ["GRIDCTL_NOTICE_FILE"]).read())
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open("ready", "w").close()
time.sleep(60)
"""


def test_an_interruption_ends_the_attempt_interrupted_even_after_exit_0(tmp_path):
    runner, recorded = runner_for(tmp_path, WAITS_FOR_TERM)
    thread = start(runner)
    wait_ready(tmp_path)
    notice = interruption("spot interruption notice (terminate at 12:00:00Z)", 60)
    assert runner.notice(notice) is True
    thread.join(30)
    assert recorded.outcome == ("interrupted", 0, notice.reason)
    # The script read the notice file before exiting; it reached the store as an artifact.
    seen = json.loads((tmp_path / "store" / "runs/r/r-exp0/artifacts/notice-seen.json").read_text())
    assert seen == {
        "kind": "interruption",
        "seen_at": notice.seen_at,
        "deadline": notice.deadline,
        "reason": notice.reason,
    }
    assert "gridctl: spot interruption notice" in (tmp_path / "log").read_text()
    assert runner.notice(interruption("later", 60)) is False


def test_a_rebalance_recommendation_only_writes_the_notice_file(tmp_path):
    script = WAITS_FOR_TERM.replace("time.sleep(60)", "time.sleep(1)")
    runner, recorded = runner_for(tmp_path, script)
    thread = start(runner)
    assert recorded.started.wait(30)
    rebalance = Notice(REBALANCE, time.time(), None, "spot rebalance recommendation: {}")
    assert runner.notice(rebalance) is True
    thread.join(30)
    assert recorded.outcome == ("succeeded", 0, None)
    assert json.loads((tmp_path / "notices" / "r-exp0.json").read_text())["kind"] == REBALANCE


def test_a_notice_during_the_final_sync_does_not_undo_success(tmp_path):
    store = SlowFinalSync(tmp_path / "store", "result.txt")
    script = "open('result.txt', 'w').write('done')\n"
    runner, recorded = runner_for(tmp_path, script, store)
    thread = start(runner)
    assert store.reached.wait(30)  # the script has exited; its files are being synced
    assert runner.notice(interruption("spot interruption notice", 60)) is False
    store.release.set()
    thread.join(30)
    assert recorded.outcome == ("succeeded", 0, None)


def test_a_script_ignoring_sigterm_is_killed_before_the_deadline(tmp_path):
    script = WAITS_FOR_TERM.replace(
        "signal.signal(signal.SIGTERM, on_term)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    )
    runner, recorded = runner_for(tmp_path, script)
    thread = start(runner)
    wait_ready(tmp_path)
    # Less time than the final sync is reckoned to need: SIGKILL follows at once.
    runner.notice(interruption("spot interruption notice", 1))
    thread.join(30)
    assert recorded.outcome is not None
    assert recorded.outcome[:2] == ("interrupted", 137)


@pytest.mark.parametrize("kind", ["interruption", "rebalance"])
def test_a_notice_before_the_start_is_not_lost(tmp_path, kind):
    runner, recorded = runner_for(tmp_path, "print('ran')\n")
    notice = (
        interruption("spot", 60)
        if kind == "interruption"
        else Notice(REBALANCE, time.time(), None, "rebalance")
    )
    runner.notice(notice)
    runner.run()
    expected = "interrupted" if kind == "interruption" else "succeeded"
    assert recorded.outcome is not None and recorded.outcome[0] == expected
    assert (tmp_path / "notices" / "r-exp0.json").exists()
