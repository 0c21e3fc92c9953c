"""The node's last resort (``python3 -m gridctl.agent failed``): which records it ends, and
that it runs on a bare interpreter with nothing but the agent's code."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from gridctl.agent.core import state
from gridctl.agent.core.contract import ExperimentKeys, InterruptRequest, StatusRecord
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
from gridctl.agent.node.failsafe import fail_machine, failed_record, tail
from gridctl.infra.wheel import build_agent_wheel

SPEC = ExperimentSpec("r", "r-exp0", 0, ("python", "t.py"), "bundles/b.tar.gz")
RESUMING = ExperimentSpec(
    "r", "r-exp0", 0, ("python", "t.py"), "bundles/b.tar.gz", auto_resume=True
)


def ended(status: str, at: float) -> bytes:
    record = StatusRecord.first("i-old", at - 10)
    return state.finish(record, status, 0 if status == "succeeded" else None, None, at).to_json()


def test_a_queued_experiment_gets_a_failed_record_with_this_instance():
    record = failed_record(None, SPEC, "i-new", "boot failed", since=100, now=101)
    assert record is not None
    assert (record.status, record.reason, record.instance) == ("failed", "boot failed", "i-new")
    (attempt,) = record.attempts
    assert (attempt.instance, attempt.status, attempt.finished_at) == ("i-new", "failed", 101)


def test_an_active_experiment_is_failed_and_keeps_its_history():
    running = state.running(StatusRecord.first("i-new", 50))
    record = failed_record(running.to_json(), SPEC, "i-new", "lifetime", since=100, now=101)
    assert record is not None
    assert (record.status, record.started_at, len(record.attempts)) == ("failed", 50, 1)


def test_what_ended_before_the_failure_is_left_alone_and_what_ended_after_is_failed():
    assert failed_record(ended("succeeded", 90), SPEC, "i", "x", since=100, now=101) is None
    assert failed_record(ended("interrupted", 90), SPEC, "i", "x", since=100, now=101) is None
    # The agent stopped by the failure handler records its end after the failure came.
    later = failed_record(ended("interrupted", 100.5), SPEC, "i", "limit", since=100, now=101)
    assert later is not None and (later.status, later.reason) == ("failed", "limit")


def test_an_interruption_awaiting_its_resume_fails_with_a_new_attempt():
    record = failed_record(ended("interrupted", 90), RESUMING, "i-new", "x", since=100, now=101)
    assert record is not None
    assert record.instance == "i-new"
    assert [(a.instance, a.status) for a in record.attempts] == [
        ("i-old", "interrupted"),
        ("i-new", "failed"),
    ]


class Bucket:
    """The failsafe's three S3 calls, over a dict (the real ones go through the AWS CLI,
    which tests/aws/test_boot.py drives against moto)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def put_file(self, key: str, path: Path) -> None:
        self.objects[key] = path.read_bytes()


def test_a_failing_node_of_a_gang_alarms_its_peers(tmp_path: Path):
    bucket = Bucket()
    gang = ExperimentSpec("r", "r-exp0", 0, ("python", "t.py"), "bundles/b.tar.gz", nodes=2)
    machine = MachineSpec("r", "r-exp0", ("r-exp0",), 2, 0, 4 << 30, nodes=2)
    keys = ExperimentKeys("r", "r-exp0")
    bucket.put(machine.key, machine.to_json().encode())
    bucket.put(keys.spec, gang.to_json().encode())
    log = tmp_path / "boot.log"
    log.write_text("pip: no matching distribution\n")
    assert fail_machine(bucket, "r", "r-exp0", "i-1", "boot failed", log, 0.0) == ["r-exp0"]
    alarm = InterruptRequest.decode(bucket.objects[keys.alarm(0)])
    assert alarm.attempt == 0 and alarm.node is None
    assert alarm.reason is not None and alarm.reason.startswith("boot failed")


def test_the_tail_is_one_line(tmp_path: Path):
    log = tmp_path / "boot.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)) + "\n")
    assert tail(log) == "line 5 | line 6 | line 7 | line 8 | line 9"
    assert tail(tmp_path / "missing") == ""


def test_it_runs_from_the_unpacked_wheel_with_the_standard_library_alone(tmp_path: Path):
    """As on a node whose venv failed: no boto3, no psutil, only the wheel's files."""
    zipfile.ZipFile(BytesIO(build_agent_wheel().data)).extractall(tmp_path / "code")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    # An `aws` that has no objects at all: the machine spec is missing.
    (bin_dir / "aws").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        "echo 'fatal error: An error occurred (404) when calling the HeadObject operation' >&2\n"
        "exit 1\n"
    )
    (bin_dir / "aws").chmod(0o755)
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['gridctl.agent', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('gridctl.agent', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    heavy = {'boto3', 'botocore', 'psutil'} & set(sys.modules)\n"
        "    print('heavy:', sorted(heavy))\n"
        "    raise\n"
    )
    bare = getattr(sys, "_base_executable", sys.executable)
    result = subprocess.run(
        [
            bare,
            "-s",
            "-c",
            probe,
            "failed",
            "--bucket",
            "b",
            "--run",
            "r",
            "--machine",
            "r-exp0",
            "--instance",
            "i-1",
            "--since",
            "0",
            "--log",
            str(tmp_path / "log"),
            "why",
        ],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(tmp_path / "code")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert "heavy: []" in result.stdout
    assert "no machine spec at s3://b/runs/r/machines/r-exp0.json" in result.stderr
    assert calls.read_text().split() == [
        "s3",
        "cp",
        "--only-show-errors",
        "s3://b/runs/r/machines/r-exp0.json",
        "-",
    ]
