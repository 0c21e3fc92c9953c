"""When the CLI takes a node for lost: pure decisions on records it has read."""

from __future__ import annotations

import json

import pytest

from gridctl.agent.core.contract import StatusRecord
from gridctl.cli.backends.lost import (
    DEFAULT_LOST_AFTER,
    instance_gone,
    is_stale,
    lost_after,
)
from gridctl.cli.errors import GridctlError


def test_lost_after_defaults_to_ten_minutes_and_reads_the_variable():
    assert lost_after({}) == DEFAULT_LOST_AFTER == 600
    assert lost_after({"GRIDCTL_LOST_AFTER": "2.5"}) == 2.5


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_lost_after_is_refused_by_name(value: str):
    with pytest.raises(GridctlError, match="GRIDCTL_LOST_AFTER"):
        lost_after({"GRIDCTL_LOST_AFTER": value})


@pytest.mark.parametrize(
    ("record", "stale"),
    [
        ({"status": "running", "heartbeat_at": 100.0}, True),
        ({"status": "starting", "heartbeat_at": 100}, True),
        ({"status": "running", "heartbeat_at": 150.0}, False),
        ({"status": "succeeded", "heartbeat_at": 100.0}, False),
        ({"status": "interrupted", "heartbeat_at": 100.0}, False),
        ({"status": "running"}, False),
        ({}, False),
    ],
)
def test_a_heartbeat_is_stale_only_for_an_experiment_a_node_should_run(record, stale):
    read = StatusRecord.from_json(json.dumps(record).encode())
    assert is_stale(read, now=200.0, after=60.0) is stale


def test_an_instance_is_gone_when_ec2_ends_or_forgets_it():
    assert instance_gone(None) and instance_gone("terminated") and instance_gone("shutting-down")
    assert not instance_gone("running") and not instance_gone("stopped")
