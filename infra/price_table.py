"""The on-demand Linux price, in USD per hour, of every instance type in gridctl's catalogue
(``cli/machines.py``) in every region gridctl ships prices for: what a price is when the
Pricing API does not answer (``infra/prices.py``).

The figures are the ``Price`` column (on-demand, Linux, shared tenancy) of SkyPilot's public
AWS catalogue, ``catalogs/v7/aws/vms.csv`` of github.com/skypilot-org/skypilot-catalog at
commit 001367d22a0033fac286a8c71aeac7109e431bcb, which mirrors AWS's public price list;
copied on 2026-12-01. A type a region does not offer has no entry there (its price is
unknown). AWS changes prices rarely and mostly downwards; refresh the figures from that
catalogue, and keep ``REGIONS`` and the tables in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-west-3", "eu-central-1")
"""The regions whose prices ship with gridctl; elsewhere only AWS's answers count."""

ON_DEMAND_USD_PER_HOUR: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "us-east-1": MappingProxyType(
            {
                "c5.xlarge": 0.17,
                "c5.18xlarge": 3.06,
                "c5.24xlarge": 4.08,
                "c5.2xlarge": 0.34,
                "c5.4xlarge": 0.68,
                "c5.9xlarge": 1.53,
                "c5.large": 0.085,
                "c5.12xlarge": 2.04,
                "g4dn.xlarge": 0.526,
            }
        ),
        "us-east-2": MappingProxyType(
            {
                "c5.xlarge": 0.17,
                "c5.18xlarge": 3.06,
                "c5.24xlarge": 4.08,
                "c5.2xlarge": 0.34,
                "c5.4xlarge": 0.68,
                "c5.9xlarge": 1.53,
                "c5.large": 0.085,
                "c5.12xlarge": 2.04,
                "g4dn.xlarge": 0.526,
            }
        ),
        "us-west-2": MappingProxyType(
            {
                "c5.xlarge": 0.17,
                "c5.18xlarge": 3.06,
                "c5.24xlarge": 4.08,
                "c5.2xlarge": 0.34,
                "c5.4xlarge": 0.68,
                "c5.9xlarge": 1.53,
                "c5.large": 0.085,
                "c5.12xlarge": 2.04,
                "g4dn.xlarge": 0.526,
            }
        ),
        "eu-west-1": MappingProxyType(
            {
                "c5.xlarge": 0.192,
                "c5.18xlarge": 3.456,
                "c5.24xlarge": 4.608,
                "c5.2xlarge": 0.384,
                "c5.4xlarge": 0.768,
                "c5.9xlarge": 1.728,
                "c5.large": 0.096,
                "c5.12xlarge": 2.304,
                "g4dn.xlarge": 0.587,
            }
        ),
        "eu-west-3": MappingProxyType(
            {
                "c5.xlarge": 0.202,
                "c5.18xlarge": 3.636,
                "c5.24xlarge": 4.848,
                "c5.2xlarge": 0.404,
                "c5.4xlarge": 0.808,
                "c5.9xlarge": 1.818,
                "c5.large": 0.101,
                "c5.12xlarge": 2.424,
                "g4dn.xlarge": 0.615,
            }
        ),
        "eu-central-1": MappingProxyType(
            {
                "c5.xlarge": 0.194,
                "c5.18xlarge": 3.492,
                "c5.24xlarge": 4.656,
                "c5.2xlarge": 0.388,
                "c5.4xlarge": 0.776,
                "c5.9xlarge": 1.746,
                "c5.large": 0.097,
                "c5.12xlarge": 2.328,
                "g4dn.xlarge": 0.658,
            }
        ),
    }
)
