"""The contract between the CLI and the agents is spelled once: no key of the store, tag
or status word is written as a string anywhere but in its module, and the records it
defines read what older and newer writers wrote."""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from gridctl.agent.core.contract import (
    ExperimentKeys,
    InterruptRequest,
    StatusRecord,
    bundle_key,
    datastore_version_key,
    machine_key,
    run_key,
    run_of,
)
from gridctl.agent.core.state import Attempt, State

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("cli", "agent", "infra")
CONTRACT = Path("agent/core/contract.py")
STATE_MACHINE = Path("agent/core/state.py")
KEY = re.compile(
    r"^(runs|bundles|wheels|datastores|machines|control)/"
    r"|/(run|spec|status|machines/.*)\.json$|/(log|artifacts|control|stop|interrupt)/?$"
)
"""A string that starts a store key, or ends one of an experiment's objects."""
TAG = re.compile(r"gridctl:(run|experiment|bucket|environment)\b|aws:autoscaling:groupName")
STATUS_WORD = re.compile(r"^(" + "|".join(State) + r")$")
OUTPUT_FORMATTING = {Path("cli/views.py")}
"""Where status words are the text shown (colours), not a state."""
SUBCOMMANDS = {(Path("agent/__main__.py"), "failed")}
"""Words that happen to be a state: ``python -m gridctl.agent failed`` is a command."""


def strings(source: str) -> list[tuple[int, str]]:
    """Each string literal's line and text (an f-string's text with its fields)."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING:
            text = re.sub(r"^[rRbBfFuU]*('''|\"\"\"|'|\")", "", token.string)
            found.append((token.start[0], re.sub(r"('''|\"\"\"|'|\")$", "", text)))
    return found


def stray(source: str, path: Path) -> list[str]:
    """The keys, tags and status words ``source`` spells that belong to the contract."""
    problems = []
    for line, text in strings(source):
        where = f"{path}:{line}: {text!r}"
        if path != CONTRACT and (KEY.search(text) or TAG.search(text)):
            problems.append(where)
        if (
            STATUS_WORD.match(text)
            and path not in (STATE_MACHINE, *OUTPUT_FORMATTING)
            and (path, text) not in SUBCOMMANDS
        ):
            problems.append(where)
    return problems


def test_keys_tags_and_states_are_spelled_only_by_their_modules():
    problems = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            problems += stray(path.read_text(), path.relative_to(ROOT))
    assert not problems, (
        "spell these through agent/core/contract.py or agent/core/state.py:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize(
    "line",
    [
        'key = f"runs/{run}/{name}/status.json"',
        "prefix = 'bundles/'",
        'self.store.put_bytes(f"{base}/control/stop", b"")',
        'key = f"{prefix}/spec.json"',
        'tags = {"gridctl:run": run}',
        'if status == "running":',
        'help="the gridctl:experiment tag"',
    ],
)
def test_the_check_finds_a_stray_spelling(line: str):
    assert stray(line + "\n", Path("cli/backends/aws.py"))


def test_the_check_leaves_prose_and_other_paths_alone():
    source = '"""Keys such as ``runs/<run>/run.json`` are the contract\'s."""\nx = "a/b"\n'
    assert not stray(source, Path("agent/core/store.py"))
    assert not stray('tags = {"gridctl:run": run}\n', CONTRACT)


def test_keys_are_where_the_bucket_layout_says():
    keys = ExperimentKeys("r", "r-exp0")
    assert (keys.spec, keys.status, keys.log) == (
        "runs/r/r-exp0/spec.json",
        "runs/r/r-exp0/status.json",
        "runs/r/r-exp0/log",
    )
    assert (keys.artifacts, keys.stop, keys.interrupt) == (
        "runs/r/r-exp0/artifacts",
        "runs/r/r-exp0/control/stop",
        "runs/r/r-exp0/control/interrupt",
    )
    assert machine_key("r", "r-machine0") == "runs/r/machines/r-machine0.json"
    assert bundle_key("abc") == "bundles/abc.tar.gz"
    assert datastore_version_key("d", 2, "manifest.json") == "datastores/d/versions/2/manifest.json"
    assert run_of(run_key("r")) == "r"
    assert run_of(keys.status) is None and run_of("runs/r/machines/run.json") is None


def test_a_status_record_reads_what_the_cli_and_older_writers_wrote():
    assert StatusRecord.from_json(b"{}") == StatusRecord()
    written = {"status": "failed", "reason": "apply failed", "exit_code": None, "new": 1}
    record = StatusRecord.from_json(json.dumps(written).encode())
    assert (record.status, record.reason, record.instance, record.resumes) == (
        State.FAILED,
        "apply failed",
        None,
        0,
    )
    first = StatusRecord.first("i-1", 5.0)
    assert StatusRecord.from_json(first.to_json()) == first
    assert first.attempts == (Attempt("i-1", 5.0),)
    assert json.loads(first.to_json())["status"] == "starting"


@pytest.mark.parametrize(
    ("data", "window"),
    [
        (InterruptRequest(30.0, requested_at=1.0).encode(), 30.0),
        (b'{"window": 7}', 7.0),
        (b"", None),
        (b"not json", None),
        (b'{"window": -1}', None),
        (b'["window"]', None),
    ],
)
def test_an_interrupt_request_always_decodes(data: bytes, window: float | None):
    assert InterruptRequest.decode(data).window == window
