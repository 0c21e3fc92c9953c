"""``--max_runtime`` and ``--max_cost`` (SPEC section 11): what the command line accepts and
refuses, and the runtime limit on the local backend through the real ``gridctl``. The budget
is a node's (local runs cost nothing): tests/aws/test_node_guards.py and test_aws_guards.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scripts import UNTIL_TERM
from test_cli_input import dry_run, one_line_usage_error

from gridctl.agent.core.contract import Charge, charge_key
from gridctl.agent.core.guards import (
    GuardError,
    budget_reason,
    format_duration,
    parse_duration,
    runtime_used,
    spent,
    usd,
)
from gridctl.agent.core.state import Attempt, State
from gridctl.agent.core.store import LocalStore
from gridctl.agent.node.budget import Budget, Ledger

LEFT = re.compile(r"--max_runtime (\S+): ([\d.]+) s left after the earlier attempts' ([\d.]+) s")


@pytest.fixture
def slow(project: Path) -> str:
    (project / "slow.py").write_text(UNTIL_TERM)
    return "slow.py"


# ---------------------------------------------------------------------------------------------
# The words: durations, amounts, reasons


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400),
     ("2d3h4m5s", 2 * 86400 + 3 * 3600 + 4 * 60 + 5), ("0.5s", 0.5), (" 5S ", 5)],
)  # fmt: skip
def test_a_duration_reads_as_seconds_and_says_itself_back(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", "--max_runtime 30 needs a unit: 30s, 30m or 30h"),
        ("1.5", "--max_runtime 1.5 needs a unit: 1.5s, 1.5m or 1.5h"),
        ("soon", "--max_runtime soon is not a duration such as 90s, 30m, 2h or 1h30m"),
        ("1m2h", "--max_runtime 1m2h is not a duration such as 90s, 30m, 2h or 1h30m"),
        ("-5s", "--max_runtime -5s is not a duration such as 90s, 30m, 2h or 1h30m"),
        ("", "--max_runtime '' is not a duration such as 90s, 30m, 2h or 1h30m"),
        ("0s", "--max_runtime 0s must be longer than nothing"),
        ("0h0m", "--max_runtime 0h0m must be longer than nothing"),
    ],
)
def test_what_is_no_duration_is_refused_saying_why(text, message):
    with pytest.raises(GuardError) as refused:
        parse_duration(text)
    assert str(refused.value) == message


def test_amounts_show_cents_or_finer_below_a_dollar():
    shown = [usd(a) for a in (0.01, 0.0123, 0.5, 25, 1234.5, 0.00001)]
    assert shown == ["$0.01", "$0.0123", "$0.50", "$25", "$1,234.50", "$0.00"]
    assert budget_reason(0.01, 0.0123) == "the run's budget of $0.01 was reached ($0.0123 spent)"


def test_only_ended_attempts_count_as_runtime_used():
    attempts = (
        Attempt("i-1", 100.0, 130.5, State.INTERRUPTED),
        Attempt("i-2", 140.0, 150.0, State.INTERRUPTED),
        Attempt("i-3", 160.0),
    )
    assert runtime_used(attempts) == 40.5
    assert runtime_used(()) == 0.0


def charge(experiment: str, price: float | None, seconds: float, **more) -> Charge:
    fields = dict(
        experiment=experiment, attempt=0, rank=0, instance="i-1", instance_type="t3.medium",
        zone="us-east-1a", market="on-demand", price_per_hour=price, price_source="price table",
        started_at=1000.0, seen_at=1000.0 + seconds, ended_at=1000.0 + seconds,
    )  # fmt: skip
    return Charge(**{**fields, **more})


def test_a_budget_counts_what_is_known_and_is_reached_at_the_cap(tmp_path):
    store = LocalStore(tmp_path)
    budget = Budget(0.02, Ledger(store, "run"))
    assert budget.reached(2000.0) is None  # nothing charged yet
    # 0.36 USD/h for 100 s is 0.01; a charge of unknown price adds nothing it knows.
    store.put_bytes(charge_key("run", "run-exp0", 0, 0), charge("run-exp0", 0.36, 100).encode())
    store.put_bytes(charge_key("run", "run-exp1", 0, 0), charge("run-exp1", None, 100).encode())
    assert spent([charge("a", 0.36, 100), charge("b", None, 100)], 2000.0) == pytest.approx(0.01)
    assert budget.reached(2000.0) is None
    store.put_bytes(charge_key("run", "run-exp1", 1, 0), charge("run-exp1", 0.36, 100).encode())
    assert budget.reached(2000.0) == "the run's budget of $0.02 was reached ($0.02 spent)"
    # Another run's charges are no part of it.
    other = Budget(0.02, Ledger(store, "other"))
    assert other.reached(2000.0) is None


def test_an_open_charge_grows_until_the_budget_is_reached(tmp_path):
    store = LocalStore(tmp_path)
    # 36 USD/h: a cent every second, past the first minute's 0.60.
    running = charge("run-exp0", 36.0, 0, ended_at=None, beat_interval=3600.0)
    store.put_bytes(charge_key("run", "run-exp0", 0, 0), running.encode())
    budget = Budget(1.0, Ledger(store, "run"))
    assert budget.reached(1030.0) is None
    assert budget.reached(1100.0) == "the run's budget of $1 was reached ($1 spent)"


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max_runtime", "30"], "--max_runtime 30 needs a unit: 30s, 30m or 30h"),
        (["--max-runtime", "soon"], "is not a duration such as 90s, 30m, 2h or 1h30m"),
        (["--max_runtime", "0m"], "--max_runtime 0m must be longer than nothing"),
        (["--max_cost", "0"], "--max_cost must be a positive amount of USD"),
        (["--max-cost", "-1"], "--max_cost must be a positive amount of USD"),
        (["--max_cost", "nan"], "--max_cost must be a positive amount of USD"),
        (["--max_cost", "inf"], "--max_cost must be a positive amount of USD"),
        (["--max_cost", "cheap"], "Invalid value for '--max_cost' / '--max-cost'"),
    ],
)
@pytest.mark.parametrize("cloud", ["local", "aws"])
def test_bad_limits_are_one_line_and_start_nothing(gridctl, slow, args, message, cloud):
    refused = gridctl("run", "--cloud", cloud, "--dry-run", *args, slow)
    assert message in one_line_usage_error(refused)
    assert one_line_usage_error(gridctl("run", *args, slow))
    assert gridctl.json("status") == []


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("max_runtime: 30", "compute.train.max_runtime must be a duration such as 90s"),
        ("max_runtime: 30x", "compute.train.max_runtime 30x is not a duration"),
        ("max_cost: 0", "compute.train.max_cost must be a positive amount of USD"),
        ("max_cost: ten", "compute.train.max_cost must be an amount of USD such as 25"),
    ],
)
def test_a_config_files_bad_limits_are_one_line(gridctl, slow, project, train, message):
    (project / "grid.yml").write_text(f"compute:\n  train:\n    {train}\n")
    refused = gridctl("run", "--dry-run", "--config", "grid.yml", slow)
    assert message in one_line_usage_error(refused)


def test_the_plan_carries_the_limits_from_flags_over_the_config_file(gridctl, slow, project):
    assert dry_run(gridctl, slow)["max_runtime"] is None
    flags = dry_run(gridctl, "--cloud", "aws", "--max_runtime", "1h30m", "--max_cost", "2.5", slow)
    assert (flags["max_runtime"], flags["max_cost"]) == (5400, 2.5)
    (project / "grid.yml").write_text("compute:\n  train:\n    max_runtime: 2h\n    max_cost: 7\n")
    configured = dry_run(gridctl, "--cloud", "aws", "--config", "grid.yml", slow)
    assert (configured["max_runtime"], configured["max_cost"]) == (7200, 7)
    both = dry_run(gridctl, "--cloud", "aws", "--config", "grid.yml", "--max_runtime", "5s", slow)
    assert (both["max_runtime"], both["max_cost"]) == (5, 7)


def test_a_budget_on_a_local_run_is_said_to_do_nothing(gridctl, slow):
    planned = gridctl("run", "--dry-run", "--max_cost", "5", slow)
    assert planned.returncode == 0, planned.stderr
    assert "--max_cost only applies to AWS runs; local runs ignore it" in planned.stderr


# ---------------------------------------------------------------------------------------------
# The runtime limit, locally


def test_max_runtime_stops_a_long_script_as_stop_would_and_keeps_its_files(gridctl, slow, tmp_path):
    run = gridctl(
        "run", "--name", "capped", "--max_runtime", "5s", "--wait", "--output", "json", slow,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # --wait: the run did not succeed
    (experiment,) = json.loads(run.stdout)["experiments"]
    reason = "ran longer than --max_runtime 5s"
    assert (experiment["status"], experiment["reason"]) == ("stopped", reason)
    assert experiment["exit_code"] == 0  # the script saved and exited on SIGTERM
    (attempt,) = experiment["attempts"]
    assert attempt["reason"] == reason
    assert duration(attempt) >= 5 - 1  # whole seconds
    log = gridctl("logs", "capped-exp0").stdout
    assert f"gridctl: {reason}: stopping it" in log
    assert log.rstrip().endswith("got SIGTERM")
    kept = tmp_path / "kept"
    assert gridctl("artifacts", "capped", "--dest", str(kept)).returncode == 0
    assert (kept / "capped-exp0" / "terminated.txt").read_text() == "SIGTERM"


def test_max_runtime_counts_every_attempt_of_a_resumed_experiment(gridctl, slow):
    started = gridctl("run", "--name", "twice", "--auto_resume", "--max_runtime", "15s", slow)
    assert started.returncode == 0, started.stderr
    gridctl.wait_until(lambda: "tick 20\n" in gridctl("logs", "twice-exp0").stdout, 120)
    assert gridctl("interrupt", "twice-exp0", "--window", "30").returncode == 0
    gridctl.wait_until(lambda: gridctl.status("twice")["status"] == "stopped", 120)
    (experiment,) = gridctl.status("twice")["experiments"]
    assert (experiment["reason"], experiment["resumes"]) == (
        "ran longer than --max_runtime 15s",
        1,
    )
    first, second = experiment["attempts"]
    assert (first["status"], second["status"]) == ("interrupted", "stopped")
    # The resume was given what the first attempt left, as the recorded attempts say (to
    # the second: status JSON's times are whole seconds).
    found = LEFT.search(gridctl("logs", "twice-exp0").stdout)
    assert found is not None
    limit, left, before = found.groups()
    assert limit == "15s"
    assert float(before) == pytest.approx(duration(first), abs=1)
    assert float(left) + float(before) == pytest.approx(15, abs=0.11)
    assert duration(second) >= float(left) - 1


def duration(attempt: dict) -> float:
    return gridctl_time(attempt["finished_at"]) - gridctl_time(attempt["started_at"])


def gridctl_time(stamp: str) -> float:
    """A time as status JSON gives it (ISO 8601 with its offset), in seconds."""
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
