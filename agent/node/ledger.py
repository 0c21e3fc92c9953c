"""A node's lines of its run's ledger (SPEC section 11): what each attempt it runs costs.

Each rank of each attempt has one charge (``agent.core.contract.Charge``), written as the
attempt starts, rewritten with a new ``seen_at`` every beat while it runs and with
``ended_at`` when it ends, on every path the runner returns from. A node killed with no
word leaves its charge open: it is billed until its last beat, which is what a teammate's
CLI and the run's budget then see. Nothing here may keep an experiment from starting or
ending: a price that cannot be found is recorded as unknown, a write that fails is said
and tried again at the next beat.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from gridctl.agent.core.contract import (
    ON_DEMAND,
    PRICE_TABLE,
    SPOT,
    SPOT_HISTORY,
    Charge,
    charge_key,
)
from gridctl.agent.core.s3store import S3Store
from gridctl.agent.core.spec import MachineSpec
from gridctl.agent.node.imds import Identity
from gridctl.agent.node.report import say

UNKNOWN = "no price found"
PRODUCT = "Linux/UNIX"
LOOKUP_TIMEOUT = 5.0
"""Seconds a price lookup may take: it runs before the script starts."""


@dataclass(frozen=True)
class Price:
    """What this instance costs per hour, and on what market."""

    market: str
    per_hour: float | None
    source: str


def price_of(identity: Identity, machine: MachineSpec, endpoint_url: str | None) -> Price:
    """Spot: the price in force in this instance's zone now, else the on-demand price the
    CLI found (spot never costs more in gridctl's groups, which set no maximum price).
    On-demand: the CLI's price for this type. Unknown rather than guessed."""
    itype = identity.instance_type
    known = machine.prices.get(itype) if itype else None
    source = machine.price_source or PRICE_TABLE
    if not machine.spot:
        return Price(ON_DEMAND, known, source if known is not None else UNKNOWN)
    if itype and identity.availability_zone:
        try:
            spot = spot_price(identity, itype, endpoint_url)
        except Exception as exc:  # the on-demand price bounds it
            say(f"cannot read the spot price of {itype} in {identity.availability_zone}: {exc}")
            spot = None
        if spot is not None:
            return Price(SPOT, spot, SPOT_HISTORY)
    return Price(SPOT, known, source if known is not None else UNKNOWN)


def spot_price(identity: Identity, itype: str, endpoint_url: str | None) -> float | None:
    """The newest spot price of ``itype`` in the instance's zone, None when there is none."""
    zone = identity.availability_zone
    found = _ec2(identity.region, endpoint_url).describe_spot_price_history(
        InstanceTypes=[itype],
        AvailabilityZone=zone,
        ProductDescriptions=[PRODUCT],
        StartTime=time.time(),
    )["SpotPriceHistory"]
    here = [entry for entry in found if entry.get("AvailabilityZone") == zone]
    if not here:
        return None
    return float(max(here, key=lambda entry: entry["Timestamp"])["SpotPrice"])


def _ec2(region: str, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(
            connect_timeout=LOOKUP_TIMEOUT,
            read_timeout=LOOKUP_TIMEOUT,
            retries={"mode": "standard", "max_attempts": 2},
        ),
    )


def share_of(machine: MachineSpec, gpus: int) -> float:
    """The part of the instance an experiment holds: all of a machine of its own; on a
    machine shared by several, its GPUs' part of the machine's (else an equal part), so
    that the run's sum is what AWS bills for the instance."""
    if len(machine.experiments) == 1:
        return 1.0
    if machine.gpus:
        return gpus / machine.gpus
    return 1.0 / len(machine.experiments)


class Meter:
    """One rank's charge for one attempt, kept in the bucket while the attempt runs."""

    def __init__(self, store: S3Store, run: str, charge: Charge) -> None:
        self.store = store
        self.key = charge_key(run, charge.experiment, charge.attempt, charge.rank)
        self.charge = charge
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls,
        store: S3Store,
        run: str,
        *,
        experiment: str,
        attempt: int,
        rank: int,
        identity: Identity,
        price: Price,
        share: float,
        gpus: int,
        beat_interval: float,
    ) -> Meter:
        """The attempt's charge, written at once: from here on its instance is billed."""
        now = time.time()
        charge = Charge(
            experiment=experiment,
            attempt=attempt,
            rank=rank,
            instance=identity.instance_id,
            instance_type=identity.instance_type or "unknown",
            zone=identity.availability_zone,
            market=price.market,
            price_per_hour=price.per_hour,
            price_source=price.source,
            share=share,
            gpus=gpus,
            started_at=now,
            seen_at=now,
            beat_interval=beat_interval,
        )
        meter = cls(store, run, charge)
        meter._write()
        return meter

    def beat(self) -> None:
        with self._lock:
            if self.charge.ended_at is None:
                self.charge = replace(self.charge, seen_at=time.time())
                self._write()

    def end(self) -> None:
        """The attempt has ended on this instance: it is billed no further for it."""
        with self._lock:
            if self.charge.ended_at is None:
                now = time.time()
                self.charge = replace(self.charge, seen_at=now, ended_at=now)
            self._write()

    def watch(self, done: threading.Event) -> None:
        """Beat until ``done``: a thread's loop, beside the status heartbeat."""
        while not done.wait(self.charge.beat_interval):
            self.beat()

    def _write(self) -> None:
        try:
            self.store.put_bytes(self.key, self.charge.encode())
        except Exception as exc:  # the next beat (or the end) writes it again
            say(f"cannot write the charge {self.key}: {exc}")
