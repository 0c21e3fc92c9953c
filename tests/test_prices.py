"""What an instance costs per hour without AWS: the shipped table, the parts of a Pricing API
or spot history answer gridctl reads, and `run --dry-run`'s prices across nicknames, offline.
The paths that ask AWS are in tests/aws/test_prices.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridctl.cli.machines import INSTANCE_TYPES
from gridctl.infra.aws import Account
from gridctl.infra.price_table import ON_DEMAND_USD_PER_HOUR, REGIONS, UNLISTED
from gridctl.infra.prices import PRICE_TABLE, Price, Prices, highest_latest, on_demand_usd

TABLE = ON_DEMAND_USD_PER_HOUR


def test_every_catalogue_type_has_a_us_east_1_price_unless_the_source_lists_it_nowhere():
    unpriced = {t for t in INSTANCE_TYPES if t not in TABLE["us-east-1"]}
    assert unpriced == UNLISTED
    assert not [(r, t) for r in TABLE for t in TABLE[r] if t in UNLISTED]


def test_every_price_is_positive_and_of_a_known_type_and_region():
    assert tuple(TABLE) == REGIONS
    entries = [(r, t, usd) for r, prices in TABLE.items() for t, usd in prices.items()]
    assert all(usd > 0 for _, _, usd in entries), [e for e in entries if not e[2] > 0]
    assert not [(r, t) for r, t, _ in entries if t not in INSTANCE_TYPES]


def test_without_credentials_the_table_answers_and_nothing_is_cached(tmp_path: Path):
    prices = Prices(Account(None, "eu-west-1"), "eu-west-1", tmp_path)
    assert prices.on_demand(["g4dn.xlarge", "t3.medium"]) == {
        "g4dn.xlarge": Price(TABLE["eu-west-1"]["g4dn.xlarge"], PRICE_TABLE),
        "t3.medium": Price(TABLE["eu-west-1"]["t3.medium"], PRICE_TABLE),
    }
    # Spot never costs more than on-demand: the on-demand figure bounds the estimate.
    assert prices.spot(["g4dn.xlarge"]) == {
        "g4dn.xlarge": Price(TABLE["eu-west-1"]["g4dn.xlarge"], PRICE_TABLE)
    }
    # A region or a type the table lacks has no price at all.
    assert (
        Prices(Account(None, "ap-south-2"), "ap-south-2", tmp_path).on_demand(["g4dn.xlarge"]) == {}
    )
    assert prices.on_demand(["p2.xlarge"]) == {}
    assert not (tmp_path / "cache").exists()


def _document(*terms: tuple[str, str]) -> str:
    """A GetProducts PriceList entry with OnDemand terms of (unit, USD) price dimensions."""
    dimensions = {
        f"D{i}": {"unit": u, "pricePerUnit": {"USD": usd}} for i, (u, usd) in enumerate(terms)
    }
    return json.dumps({"terms": {"OnDemand": {"T": {"priceDimensions": dimensions}}}})


def test_an_on_demand_answer_is_read_as_the_highest_hourly_usd():
    assert on_demand_usd([_document(("Hrs", "0.5260000000"))]) == 0.526
    # Several products matching the filters: the dearest, so an estimate does not undercut.
    assert on_demand_usd([_document(("Hrs", "0.5")), _document(("Hrs", "0.6"))]) == 0.6
    # Nothing billed by the hour, zero prices and nonsense mean no answer.
    assert on_demand_usd([_document(("Quantity", "3.0"), ("Hrs", "0.0"))]) is None
    assert on_demand_usd(["not json", json.dumps({"terms": {}})]) is None
    assert on_demand_usd([]) is None


def test_a_spot_estimate_is_the_highest_of_each_zones_latest_price():
    entries = [
        {
            "InstanceType": "g4dn.xlarge",
            "AvailabilityZone": "a",
            "SpotPrice": "0.3",
            "Timestamp": 2,
        },
        {
            "InstanceType": "g4dn.xlarge",
            "AvailabilityZone": "a",
            "SpotPrice": "0.9",
            "Timestamp": 1,
        },
        {
            "InstanceType": "g4dn.xlarge",
            "AvailabilityZone": "b",
            "SpotPrice": "0.1",
            "Timestamp": 1,
        },
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.4", "Timestamp": 1},
        {"InstanceType": "m5.large", "AvailabilityZone": "a", "SpotPrice": "bad", "Timestamp": 1},
    ]
    assert highest_latest(entries, ["g4dn.xlarge", "m5.large"]) == {"g4dn.xlarge": 0.3}


@pytest.fixture
def script(project: Path) -> str:
    (project / "train.py").write_text("print('trained')\n")
    return "train.py"


def dry_run(gridctl, *args: str, env: dict[str, str] | None = None) -> dict:
    result = gridctl("run", "--dry-run", "--output", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hourly(planned: dict) -> tuple[float | None, list[float | None]]:
    return planned["price_per_hour"], [e["price_per_hour"] for e in planned["experiments"]]


@pytest.mark.parametrize(
    ("options", "each", "total"),
    [
        # One machine per experiment, billed whole.
        (("--instance_type", "2_cpu_4gb"), "t2.medium", "t2.medium"),
        (("--instance_type", "1_t4_16gb"), "g4dn.xlarge", "g4dn.xlarge"),
        (("--instance_type", "1_l4_24gb", "--gpus", "1"), "g6.xlarge", "g6.xlarge"),
        (("--instance_type", "16_cpu_64gb"), "m5.4xlarge", "m5.4xlarge"),
    ],
)
def test_dry_run_prices_each_experiment_and_the_sweep_offline(
    gridctl, script: str, options: tuple[str, ...], each: str, total: str
):
    planned = dry_run(gridctl, "--cloud", "aws", *options, script, "--lr", "[1, 2, 3]")
    usd = TABLE["us-east-1"][each]
    assert hourly(planned) == (round(3 * usd, 6), [usd, usd, usd])
    assert planned["price_source"] == PRICE_TABLE


def test_dry_run_prices_shared_machines_gangs_spot_and_regions(gridctl, script: str):
    sweep = (script, "--lr", "[1, 2, 3, 4, 5]")
    # Five one-GPU experiments on 4-GPU machines: four share one, each paying a quarter (as
    # the ledger charges them); the fifth has a machine to itself and pays all of it.
    shared = dry_run(
        gridctl, "--cloud", "aws", "--instance_type", "4_t4_16gb", "--gpus", "1", *sweep
    )
    machine = TABLE["us-east-1"]["g4dn.12xlarge"]
    assert hourly(shared) == (round(2 * machine, 6), [round(machine / 4, 6)] * 4 + [machine])

    # Two nodes per experiment: two instances each.
    gang = dry_run(
        gridctl, "--cloud", "aws", "--instance_type", "c5.xlarge", "--nodes", "2", script
    )
    pair = round(2 * TABLE["us-east-1"]["c5.xlarge"], 6)
    assert hourly(gang) == (pair, [pair])

    # Spot without AWS to ask: the on-demand table price, which spot never exceeds.
    spot = dry_run(gridctl, "--cloud", "aws", "--use_spot", "--instance_type", "1_t4_16gb", script)
    assert hourly(spot) == (0.526, [0.526]) and spot["price_source"] == PRICE_TABLE

    # The region the run would go to prices it.
    paris = dry_run(
        gridctl,
        *("--cloud", "aws", "--instance_type", "1_t4_16gb", script),
        env={**gridctl.env, "AWS_REGION": "eu-west-3"},
    )
    assert hourly(paris) == (TABLE["eu-west-3"]["g4dn.xlarge"], [TABLE["eu-west-3"]["g4dn.xlarge"]])

    # A type with no price there: null, never an error.
    unpriced = dry_run(
        gridctl,
        *("--cloud", "aws", "--instance_type", "1_a10g_24gb", script),
        env={**gridctl.env, "AWS_REGION": "eu-west-3"},
    )
    assert hourly(unpriced) == (None, [None]) and unpriced["price_source"] is None


def test_local_dry_runs_cost_nothing_and_the_table_shows_prices(gridctl, script: str):
    local = dry_run(gridctl, "--cloud", "local", script, "--lr", "[1, 2]")
    assert hourly(local) == (0.0, [0.0, 0.0]) and local["price_source"] is None

    shown = gridctl("run", "--dry-run", "--cloud", "aws", "--instance_type", "1_t4_16gb", script)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert rows[-2][1:] == ["$0.526/h", "python", "train.py"]
    assert rows[-1] == ["all", "$0.526/h", "(price", "table)"]
