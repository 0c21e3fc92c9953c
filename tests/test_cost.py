"""Billing arithmetic (agent.core.cost): per second, a minute at least, summed over charges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.agent.core.contract import Charge, charge_key, ledger_prefix
from gridctl.agent.core.cost import (
    billed_seconds,
    charge_cost,
    end_of,
    gpu_hours,
    is_open,
    total_cost,
)

T0 = 1_800_000_000.0


def charge(**changes) -> Charge:
    values = {
        "experiment": "r-exp0",
        "attempt": 0,
        "rank": 0,
        "instance": "i-1",
        "instance_type": "t3.medium",
        "zone": "us-east-1a",
        "market": "on-demand",
        "price_per_hour": 0.0416,
        "price_source": "price table",
        "started_at": T0,
        "seen_at": T0,
        "beat_interval": 10.0,
    }
    return Charge(**{**values, **changes})


def test_a_short_attempt_is_billed_a_minute():
    short = charge(ended_at=T0 + 5, seen_at=T0 + 5)
    assert billed_seconds(short, T0 + 1000) == 60
    assert charge_cost(short, T0 + 1000) == pytest.approx(0.0416 * 60 / 3600)


def test_a_long_attempt_is_billed_per_second():
    long = charge(ended_at=T0 + 125.5, seen_at=T0 + 125)
    assert charge_cost(long, T0 + 9999) == pytest.approx(0.0416 * 125.5 / 3600)


def test_an_open_charge_grows_while_its_node_speaks_and_stops_when_it_went_silent():
    live = charge(seen_at=T0 + 100)
    assert is_open(live, T0 + 120)
    assert end_of(live, T0 + 120) == T0 + 120
    assert not is_open(live, T0 + 131)  # 3 beats of 10 s missed
    assert end_of(live, T0 + 5000) == T0 + 100


def test_a_shared_machine_is_split_and_gpu_hours_have_no_minimum():
    half = charge(share=0.5, gpus=2, ended_at=T0 + 1800, seen_at=T0 + 1800)
    assert charge_cost(half, T0 + 1800) == pytest.approx(0.0416 * 0.5 * 0.5)
    assert gpu_hours([half, charge(gpus=1, ended_at=T0 + 36, seen_at=T0)], T0) == pytest.approx(
        1.0 + 0.01
    )


def test_a_sum_with_an_unknown_price_is_unknown():
    known = charge(ended_at=T0 + 60)
    assert total_cost([known, known], T0 + 60) == pytest.approx(2 * 0.0416 / 60)
    assert total_cost([known, charge(price_per_hour=None)], T0 + 60) is None
    assert total_cost([], T0) == 0


def test_a_charge_round_trips_and_ignores_keys_it_does_not_know():
    original = charge(ended_at=T0 + 61.25, share=0.25, gpus=1)
    assert Charge.decode(original.encode()) == original
    newer = original.encode().replace(b'"rank": 0', b'"rank": 0, "future": [1]')
    assert Charge.decode(newer) == original


def test_the_ledger_lies_beside_the_run_experiments():
    assert ledger_prefix("r") == "runs/r/ledger/"
    assert charge_key("r", "r-exp3", 1, 2) == "runs/r/ledger/r-exp3/1.2.json"
    assert charge_key("r", "r-exp3", 1, 2).startswith(ledger_prefix("r", "r-exp3"))


@given(
    price=st.floats(0.001, 100),
    duration=st.floats(0, 10 * 86400),
    later=st.floats(0, 86400),
)
def test_cost_never_falls_with_time_and_is_at_least_a_minute(price, duration, later):
    open_charge = charge(price_per_hour=price, seen_at=T0 + duration, beat_interval=1e9)
    first = charge_cost(open_charge, T0 + duration)
    assert first is not None
    assert first >= price * 60 / 3600 * (1 - 1e-9)
    second = charge_cost(open_charge, T0 + duration + later)
    assert second is not None and second >= first
