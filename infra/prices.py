"""What an instance type costs per hour (SPEC section 11).

On-demand prices come from AWS's Pricing API (served from us-east-1 whatever the region
priced), spot prices from the region's spot price history. Each answer is kept under
``GRIDCTL_HOME/cache/prices/`` for a day, so dry runs and submissions do not each ask AWS
for figures that rarely move. When AWS does not answer (no credentials, no network, an
emulator without the API, a type it does not know) the shipped table
(``infra/price_table.py``) answers; a spot price falls back to the table's on-demand price,
since gridctl's groups set no maximum price and spot never costs more than on-demand.
Lookups make one attempt with short timeouts: a price must never hang or fail a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.contract import (
    ON_DEMAND,
    PRICE_TABLE,
    PRICING_API,
    SPOT,
    SPOT_HISTORY,
)
from gridctl.infra.aws import Account
from gridctl.infra.errors import InfraError
from gridctl.infra.price_table import ON_DEMAND_USD_PER_HOUR

PRICING_REGION = "us-east-1"
"""The Pricing API answers for every region from this one endpoint."""
CACHE_SECONDS = 24 * 3600.0
TIMEOUTS = {"connect_timeout": 3, "read_timeout": 5, "retries": {"max_attempts": 1}}
_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}
"""The product AWS bills a plain Linux instance as (Pricing API attribute -> value)."""


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    source: str


def table_price(region: str, instance_type: str) -> Price | None:
    """The shipped on-demand price, None where the table has none (a type a region lacks)."""
    found = ON_DEMAND_USD_PER_HOUR.get(region, {}).get(instance_type)
    return None if found is None else Price(found, PRICE_TABLE)


def sources(prices: Iterable[Price]) -> str | None:
    """What a set of prices came from, in a phrase (``pricing api``, or two sources)."""
    found = sorted({p.source for p in prices})
    return " and ".join(found) or None


class Prices:
    """Prices in one region, asked of AWS as ``account`` (without credentials nobody answers
    and the table does), cached under ``home`` (GRIDCTL_HOME)."""

    def __init__(
        self,
        account: Account,
        region: str,
        home: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.region = region
        self.cache_dir = home / "cache" / "prices"
        self.clock = clock

    def on_demand(self, types: Iterable[str]) -> dict[str, Price]:
        """USD per hour of each type found (API, cache or table); types none knows are left
        out."""
        return self._lookup(ON_DEMAND, types, self._ask_pricing)

    def spot(self, types: Iterable[str]) -> dict[str, Price]:
        """An estimate for a run not yet launched: the highest of the region's zones' latest
        spot prices (a node charges its own zone's price when it starts)."""
        return self._lookup(SPOT, types, self._ask_spot_history)

    def _lookup(
        self, market: str, types: Iterable[str], ask: Callable[[list[str]], dict[str, float]]
    ) -> dict[str, Price]:
        wanted = list(dict.fromkeys(types))
        now = self.clock()
        cached = self._read_cache(market)
        fresh = {
            t: Price(entry["usd_per_hour"], entry["source"])
            for t, entry in cached.items()
            if t in wanted and 0 <= now - entry["at"] < CACHE_SECONDS
        }
        missing = [t for t in wanted if t not in fresh]
        answered = ask(missing) if missing else {}
        if answered:
            source = PRICING_API if market == ON_DEMAND else SPOT_HISTORY
            for t, usd in answered.items():
                cached[t] = {"usd_per_hour": usd, "source": source, "at": now}
                fresh[t] = Price(usd, source)
            self._write_cache(market, cached)
        for t in wanted:
            if t not in fresh and (table := table_price(self.region, t)) is not None:
                fresh[t] = table
        return {t: fresh[t] for t in wanted if t in fresh}

    def _client(self, service: str, region: str):
        from botocore.config import Config

        return self.account.session.client(service, region_name=region, config=Config(**TIMEOUTS))

    def _ask_pricing(self, types: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        with _quietly():
            client = self._client("pricing", PRICING_REGION)
            for instance_type in types:
                filters = {**_FILTERS, "instanceType": instance_type, "regionCode": self.region}
                reply = client.get_products(
                    ServiceCode="AmazonEC2",
                    Filters=[
                        {"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()
                    ],
                    MaxResults=10,
                )
                usd = on_demand_usd(reply.get("PriceList", []))
                if usd is not None:
                    found[instance_type] = usd
        return found

    def _ask_spot_history(self, types: list[str]) -> dict[str, float]:
        entries: list[dict] = []
        with _quietly():
            ec2 = self._client("ec2", self.region)
            pages = ec2.get_paginator("describe_spot_price_history").paginate(
                InstanceTypes=types,
                ProductDescriptions=["Linux/UNIX"],
                StartTime=self.clock(),
                PaginationConfig={"MaxItems": 1000},
            )
            for page in pages:
                entries += page.get("SpotPriceHistory", [])
        return highest_latest(entries, types)

    def _cache_file(self, market: str) -> Path:
        return self.cache_dir / f"{self.region}.{market}.json"

    def _read_cache(self, market: str) -> dict[str, dict]:
        try:
            data = json.loads(self._cache_file(market).read_text())
        except (OSError, ValueError):
            return {}
        return {
            t: e
            for t, e in data.items()
            if isinstance(e, dict)
            and isinstance(e.get("usd_per_hour"), int | float)
            and isinstance(e.get("at"), int | float)
            and isinstance(e.get("source"), str)
        }

    def _write_cache(self, market: str, entries: Mapping[str, dict]) -> None:
        """Atomic: a concurrent reader sees the old file or the new one, never half."""
        with contextlib.suppress(OSError):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".prices-")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(entries, out, indent=1, sort_keys=True)
                os.replace(tmp, self._cache_file(market))
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                raise


def highest_latest(entries: Iterable[dict], types: Iterable[str]) -> dict[str, float]:
    """Each type's highest price among its zones' newest spot price history entries: a run
    may land in any zone, so the estimate does not bet on the cheapest."""
    wanted = set(types)
    latest: dict[tuple[str, str], dict] = {}
    for entry in entries:
        key = (entry.get("InstanceType", ""), entry.get("AvailabilityZone", ""))
        if key[0] not in wanted:
            continue
        if key not in latest or entry["Timestamp"] > latest[key]["Timestamp"]:
            latest[key] = entry
    highest: dict[str, float] = {}
    for (instance_type, _zone), entry in latest.items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            usd = float(entry["SpotPrice"])
            if usd > 0:
                highest[instance_type] = max(usd, highest.get(instance_type, 0.0))
    return highest


def on_demand_usd(price_list: Iterable[str]) -> float | None:
    """The hourly USD of a GetProducts answer (one JSON document per product): the highest
    positive OnDemand price per hour, should several products match the filters."""
    found: list[float] = []
    for document in price_list:
        try:
            product = json.loads(document)
            terms = product["terms"]["OnDemand"].values()
            dimensions = [d for term in terms for d in term["priceDimensions"].values()]
            found += [
                float(d["pricePerUnit"]["USD"])
                for d in dimensions
                if d.get("unit") in ("Hrs", "Hours")
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    positive = [usd for usd in found if usd > 0]
    return max(positive) if positive else None


@contextlib.contextmanager
def _quietly():
    """AWS not answering (no credentials, no such profile, no network, no such API) or
    answering nonsense leaves the table to answer."""
    import botocore.exceptions

    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, InfraError):
        pass
    except (KeyError, TypeError, ValueError):
        pass
