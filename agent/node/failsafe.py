"""``python3 -m gridctl.agent failed``: a node's last word when its agent cannot run.

The boot script calls it when the agent could not be installed, when the agent's service
has failed for good and when the node reaches its maximum lifetime. Every experiment of the
machine that had not ended by then is recorded ``failed`` with the reason and the tail of a
log, in the agent's own status record, so ``gridctl status`` says why instead of ``queued``
forever; the log becomes the experiment's log when it has none. A multi-node experiment's
other nodes hear it through their attempt's alarm, and give their machines back. Standard
library only: the boot script runs it with the system python3 from the unpacked wheel,
since the agent's venv may be what failed, and S3 goes through the AWS CLI for the same
reason.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from gridctl.agent.core import state
from gridctl.agent.core.contract import (
    ExperimentKeys,
    InterruptRequest,
    StatusRecord,
    machine_key,
)
from gridctl.agent.core.spec import ExperimentSpec, MachineSpec
from gridctl.agent.core.state import ACTIVE_STATES, State

TAIL_LINES = 5
"""Lines of the log quoted in the reason: enough for the error, short enough for a table."""


class FailsafeError(RuntimeError):
    """The bucket could not be read or written; the message says which object."""


@dataclass(frozen=True)
class Bucket:
    """The few S3 calls this needs, through ``aws s3`` (credentials from the instance)."""

    name: str

    def _aws(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["aws", "s3", *args], input=data, capture_output=True)

    def get(self, key: str) -> bytes | None:
        """The object's bytes; None when there is none."""
        done = self._aws("cp", "--only-show-errors", f"s3://{self.name}/{key}", "-")
        if done.returncode == 0:
            return done.stdout
        if b"(404)" in done.stderr or b"NoSuchKey" in done.stderr:
            return None
        raise FailsafeError(f"cannot read s3://{self.name}/{key}: {done.stderr.decode().strip()}")

    def exists(self, key: str) -> bool:
        listed = self._aws("ls", f"s3://{self.name}/{key}")
        name = key.rsplit("/", 1)[-1]
        return any(line.split()[-1:] == [name] for line in listed.stdout.decode().splitlines())

    def put(self, key: str, data: bytes) -> None:
        self._upload(["-", f"s3://{self.name}/{key}"], key, data)

    def put_file(self, key: str, path: Path) -> None:
        self._upload([str(path), f"s3://{self.name}/{key}"], key, None)

    def _upload(self, args: list[str], key: str, data: bytes | None) -> None:
        done = self._aws("cp", "--only-show-errors", *args, data=data)
        if done.returncode != 0:
            raise FailsafeError(
                f"cannot write s3://{self.name}/{key}: {done.stderr.decode().strip()}"
            )


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def failed_record(
    previous: bytes | None,
    spec: ExperimentSpec | None,
    instance: str,
    reason: str,
    since: float,
    now: float,
) -> StatusRecord | None:
    """The record that ends the experiment ``failed``; None when it had ended before
    ``since`` (when the failure came) and waits for nothing more. An end recorded after
    the failure came is the failing node's, and is overruled."""
    if previous is None:
        record = StatusRecord.first(instance, now)
    else:
        record = StatusRecord.from_json(previous)
        awaits_resume = record.status == State.INTERRUPTED and spec is not None and spec.auto_resume
        ended_before = record.finished_at is not None and record.finished_at < since
        if record.status not in ACTIVE_STATES and ended_before and not awaits_resume:
            return None
        if awaits_resume and ended_before:
            record = replace(state.resume(record, instance, now), instance=instance)
    if record.status == State.QUEUED:
        record = state.fail(record, reason, now)
    elif record.status in ACTIVE_STATES:
        record = state.finish(record, State.FAILED, None, reason, now)
    else:
        record = state.overrule(record, reason, now)
    return record.beat(now)


def fail_machine(
    bucket: Bucket, run: str, machine: str, instance: str, reason: str, log: Path, since: float
) -> list[str]:
    """Record every unended experiment of the machine failed; the names recorded."""
    data = bucket.get(machine_key(run, machine))
    if data is None:
        raise FailsafeError(f"no machine spec at s3://{bucket.name}/{machine_key(run, machine)}")
    quoted = tail(log)
    why = f"{reason}; last lines of {log.name}: {quoted}" if quoted else reason
    recorded = []
    for name in MachineSpec.from_json(data).experiments:
        keys = ExperimentKeys(run, name)
        spec_data = bucket.get(keys.spec)
        spec = ExperimentSpec.from_json(spec_data.decode()) if spec_data else None
        record = failed_record(bucket.get(keys.status), spec, instance, why, since, time.time())
        if record is None:
            continue
        # The log before the status, as the agent does: an ended experiment has its files.
        if log.is_file() and not bucket.exists(keys.log):
            bucket.put_file(keys.log, log)
        bucket.put(keys.status, record.to_json())
        if spec is not None and spec.nodes > 1:
            # The other nodes of a gang stop now, rather than wait for this one to come.
            alarm = InterruptRequest(None, time.time(), None, record.resumes, why)
            bucket.put(keys.alarm(record.resumes), alarm.encode())
        recorded.append(name)
    return recorded


def main(args: argparse.Namespace) -> int:
    """For ``__main__``: 0 when every unended experiment was recorded, 1 otherwise."""
    try:
        names = fail_machine(
            Bucket(args.bucket),
            args.run,
            args.machine,
            args.instance,
            args.reason,
            args.log,
            args.since,
        )
    except FailsafeError as exc:
        print(f"gridctl failsafe: {exc}", file=sys.stderr)
        return 1
    print(f"gridctl failsafe: recorded failed: {', '.join(names) or 'none'}")
    return 0
