"""Prices asked of AWS: on-demand from a stand-in for the Pricing API (moto has none), spot
from moto's spot price history, each kept under GRIDCTL_HOME for a day, and the shipped table
whenever AWS does not answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridctl.infra.aws import Account
from gridctl.infra.price_table import ON_DEMAND_USD_PER_HOUR
from gridctl.infra.prices import (
    CACHE_SECONDS,
    PRICE_TABLE,
    PRICING_API,
    SPOT_HISTORY,
    Price,
    Prices,
)

from .emulator import free_port
from .pricing import Pricing

FILTERS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA"}


@pytest.fixture
def credentials(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def pricing(monkeypatch, credentials):
    with Pricing() as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", stub.url)
        yield stub


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def prices(region: str, home: Path, clock: Clock | None = None) -> Prices:
    return Prices(Account(None, region), region, home, clock or Clock())


def test_on_demand_prices_come_from_the_pricing_api(pricing: Pricing, tmp_path: Path):
    pricing.prices[("g4dn.xlarge", "eu-west-1")] = 0.61
    found = prices("eu-west-1", tmp_path).on_demand(["g4dn.xlarge", "t3.medium"])
    assert found == {
        "g4dn.xlarge": Price(0.61, PRICING_API),
        # A type the API has no product for: the table's figure.
        "t3.medium": Price(ON_DEMAND_USD_PER_HOUR["eu-west-1"]["t3.medium"], PRICE_TABLE),
    }
    # Linux, shared tenancy, no preinstalled software, in the run's region.
    assert pricing.calls[0] == {
        **FILTERS,
        "capacitystatus": "Used",
        "instanceType": "g4dn.xlarge",
        "regionCode": "eu-west-1",
    }


def test_answers_are_kept_for_a_day(pricing: Pricing, tmp_path: Path):
    clock = Clock()
    pricing.prices[("m5.large", "us-east-1")] = 0.1
    assert (
        prices("us-east-1", tmp_path, clock).on_demand(["m5.large"])["m5.large"].usd_per_hour == 0.1
    )
    cache = tmp_path / "cache" / "prices" / "us-east-1.on-demand.json"
    assert json.loads(cache.read_text())["m5.large"]["usd_per_hour"] == 0.1

    # Within the day another process asks nobody, even after AWS changed its price.
    pricing.prices[("m5.large", "us-east-1")] = 0.2
    clock.now += CACHE_SECONDS - 1
    assert prices("us-east-1", tmp_path, clock).on_demand(["m5.large"]) == {
        "m5.large": Price(0.1, PRICING_API)
    }
    assert len(pricing.calls) == 1

    # Once it is a day old, AWS is asked again.
    clock.now += 2
    assert prices("us-east-1", tmp_path, clock).on_demand(["m5.large"]) == {
        "m5.large": Price(0.2, PRICING_API)
    }
    assert len(pricing.calls) == 2
    assert json.loads(cache.read_text())["m5.large"]["usd_per_hour"] == 0.2


def test_without_credentials_nobody_is_asked(pricing: Pricing, tmp_path: Path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    pricing.prices[("t3.medium", "us-east-1")] = 9.99
    assert prices("us-east-1", tmp_path).on_demand(["t3.medium"]) == {
        "t3.medium": Price(ON_DEMAND_USD_PER_HOUR["us-east-1"]["t3.medium"], PRICE_TABLE)
    }
    # Nor with a profile that does not exist.
    nosuch = Prices(Account("nosuch", "us-east-1"), "us-east-1", tmp_path)
    assert nosuch.on_demand(["t3.medium"]) == prices("us-east-1", tmp_path).on_demand(["t3.medium"])
    assert pricing.calls == []


def test_an_unreachable_or_missing_api_leaves_the_table_and_no_cache(
    tmp_path: Path, monkeypatch, credentials, moto: str
):
    table = Price(ON_DEMAND_USD_PER_HOUR["us-east-1"]["t3.medium"], PRICE_TABLE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", f"http://127.0.0.1:{free_port()}")
    assert prices("us-east-1", tmp_path).on_demand(["t3.medium"]) == {"t3.medium": table}
    # moto answers for AWS but has no Pricing API.
    monkeypatch.delenv("AWS_ENDPOINT_URL_PRICING")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    assert prices("us-east-1", tmp_path).on_demand(["t3.medium"]) == {"t3.medium": table}
    assert not (tmp_path / "cache").exists()


def test_spot_estimates_come_from_the_spot_price_history(
    tmp_path: Path, monkeypatch, credentials, moto: str
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    # moto's history has a placeholder price for every zone that offers the type.
    assert prices("us-east-1", tmp_path).spot(["g4dn.xlarge"]) == {
        "g4dn.xlarge": Price(0.00001, SPOT_HISTORY)
    }
    assert (tmp_path / "cache" / "prices" / "us-east-1.spot.json").exists()

    # Out of reach: the on-demand table price, which spot never exceeds.
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{free_port()}")
    assert prices("eu-west-1", tmp_path).spot(["g4dn.xlarge"]) == {
        "g4dn.xlarge": Price(ON_DEMAND_USD_PER_HOUR["eu-west-1"]["g4dn.xlarge"], PRICE_TABLE)
    }
