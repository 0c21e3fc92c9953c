"""Which EC2 vCPU quota an instance type counts against, and how many machines fit it."""

from __future__ import annotations

import pytest

from gridctl.cli.machines import INSTANCE_TYPES
from gridctl.infra.quotas import machines_within, quota_for


@pytest.mark.parametrize(
    ("instance_type", "spot", "code"),
    [
        ("g4dn.xlarge", True, "L-3819A6DF"),
        ("g5.xlarge", False, "L-DB2E81BA"),
        ("vt1.3xlarge", True, "L-3819A6DF"),
        ("p3.2xlarge", False, "L-417A185B"),
        ("p4d.24xlarge", True, "L-7212CCBC"),
        ("m5.large", False, "L-1216C47A"),
        ("t3.micro", True, "L-34B43A08"),
        ("c5.xlarge", True, "L-34B43A08"),
        ("im4gn.large", False, "L-1216C47A"),
    ],
)
def test_the_quota_of_a_type(instance_type: str, spot: bool, code: str):
    quota = quota_for(instance_type, spot=spot)
    assert quota is not None and quota.code == code


def test_classes_without_a_known_quota_are_not_checked():
    assert quota_for("inf2.xlarge", spot=False) is None
    assert quota_for("x2idn.16xlarge", spot=True) is None


def test_every_type_in_the_catalogue_has_a_quota():
    missing = [t for t in INSTANCE_TYPES if quota_for(t, spot=True) is None]
    assert missing == []


def test_the_increase_command_names_the_quota_and_the_value():
    quota = quota_for("g4dn.xlarge", spot=True)
    assert quota is not None
    assert quota.increase_command(8) == (
        "aws service-quotas request-service-quota-increase --service-code ec2"
        " --quota-code L-3819A6DF --desired-value 8"
    )


@pytest.mark.parametrize(
    ("quota", "vcpus", "machines"), [(0, 4, 0), (3, 4, 0), (4, 4, 1), (10, 4, 2), (5, 0, 0)]
)
def test_machines_within_a_quota(quota: float, vcpus: int, machines: int):
    assert machines_within(quota, vcpus) == machines
