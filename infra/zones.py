"""Where a run can launch: the environment's subnets whose availability zone offers its
instance types.

A type offered somewhere in the region may still be missing from the zones the
environment's subnets lie in; an Auto Scaling group over those subnets would then retry
forever. Launching only in the subnets of zones that offer a type avoids that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def launchable(subnet_zones: Mapping[str, str], offered: Iterable[str]) -> tuple[str, ...]:
    """The subnets (in their given order) whose zone is among ``offered``."""
    zones = set(offered)
    return tuple(subnet for subnet, zone in subnet_zones.items() if zone in zones)


def subnet_zones(ec2, subnet_ids: Sequence[str]) -> dict[str, str]:
    """Each subnet's availability zone, in the given order."""
    found = ec2.describe_subnets(SubnetIds=list(subnet_ids))["Subnets"]
    zones = {s["SubnetId"]: s["AvailabilityZone"] for s in found}
    return {subnet: zones[subnet] for subnet in subnet_ids if subnet in zones}


def offered_zones(ec2, instance_types: Sequence[str]) -> set[str]:
    """The region's zones that offer at least one of the types."""
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": list(instance_types)}],
    )
    return {o["Location"] for page in pages for o in page["InstanceTypeOfferings"]}
