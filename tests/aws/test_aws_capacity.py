"""Before a run starts on AWS: the account's vCPU quota (Service Quotas, stubbed: moto has
no EC2 quotas) and the zones of the environment's subnets. What could never launch is
refused in one line; what launches only in part says so, or launches where it can."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Gridctl

from gridctl.agent.core.contract import machine_key
from gridctl.agent.core.spec import MachineSpec
from gridctl.infra.price_table import ON_DEMAND_USD_PER_HOUR

from .cloud import client, first_bucket
from .emulator import free_port
from .service_quotas import ServiceQuotas

pytestmark = pytest.mark.e2e

ZONES = ("us-east-1a", "us-east-1e")  # moto's us-east-1e offers t2 but not m5, g4dn, p4de


@pytest.fixture
def service_quotas():
    with ServiceQuotas() as stub:
        yield stub


def error_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("gridctl: error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_quotas_and_zones_are_checked_before_anything_starts(
    cloud: Gridctl, aws_env, ami, project: Path, service_quotas: ServiceQuotas
):
    ec2 = client(aws_env, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        zone: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=zone)[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(ZONES)
    }
    cloud.env["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = service_quotas.url
    up = cloud(
        "up",
        "--ami",
        ami,
        "--vpc-id",
        vpc,
        "--subnet-ids",
        ",".join(subnets.values()),
        timeout=600,
    )
    assert up.returncode == 0, up.stderr
    (project / "train.py").write_text("print('trained')\n")
    gpu_spot = ("run", "--use_spot", "--instance_type", "g4dn.xlarge", "--gpus", "1")

    # A new account: no applied value for G spot, and AWS's default is 0 vCPUs.
    service_quotas.defaults["L-3819A6DF"] = 0
    refused = error_line(cloud(*gpu_spot, "--dry-run", "train.py"))
    for part in (
        "L-3819A6DF (All G and VT Spot Instance Requests) in us-east-1 is 0 vCPUs",
        "one g4dn.xlarge needs 4",
        "Service Quotas page",
        "aws service-quotas request-service-quota-increase --service-code ec2"
        " --quota-code L-3819A6DF --desired-value 4",
    ):
        assert part in refused, refused
    assert ("GetAWSDefaultServiceQuota", "L-3819A6DF") in service_quotas.calls
    # Nothing was made of it.
    assert cloud.json("status") == []

    # Service Quotas denied, or out of reach: the run is not held up.
    service_quotas.denied = True
    denied = cloud(*gpu_spot, "--dry-run", "train.py")
    assert denied.returncode == 0, denied.stderr
    assert "L-3819A6DF not checked: Service Quotas answered AccessDeniedException" in denied.stderr
    # Priced as the environment's account: moto's spot history (a placeholder figure).
    priced = cloud(*gpu_spot, "--dry-run", "--output", "json", "train.py")
    assert priced.returncode == 0, priced.stderr
    planned = json.loads(priced.stdout)
    assert (planned["price_per_hour"], planned["price_source"]) == (0.00001, "spot price history")
    unreachable = {
        **cloud.env,
        "AWS_ENDPOINT_URL_SERVICE_QUOTAS": f"http://127.0.0.1:{free_port()}",
    }
    offline = cloud(*gpu_spot, "--dry-run", "train.py", env=unreachable)
    assert offline.returncode == 0, offline.stderr
    assert "L-3819A6DF not checked: Could not connect" in offline.stderr
    service_quotas.denied = False

    # Offered in the region, but in none of the subnets' zones.
    refused = error_line(
        cloud("run", "--instance_type", "p4de.24xlarge", "--gpus", "8", "--dry-run", "train.py")
    )
    assert "p4de.24xlarge is not offered in the zones" in refused, refused
    assert "(us-east-1a, us-east-1e); us-east-1 offers it in us-east-1b, us-east-1c" in refused

    # Offered in one zone of two, with room for one machine of two: both experiments are
    # submitted, their groups span only that zone's subnet, and the user hears that they
    # take turns.
    service_quotas.applied["L-1216C47A"] = 2
    run = cloud(
        "run",
        "--name",
        "zoned",
        "--instance_type",
        "m5.large",
        "train.py",
        "--lr",
        "[1, 2]",
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "L-1216C47A" in line]
    assert len(warned) == 1, run.stderr
    assert "is 2 vCPUs: only 1 of this run's 2 machines" in warned[0]
    assert "--quota-code L-1216C47A --desired-value 4" in warned[0]
    found = client(aws_env, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    zoned = {g["AutoScalingGroupName"]: g["VPCZoneIdentifier"] for g in found}
    assert zoned == {f"gridctl-default-zoned-exp{i}": subnets["us-east-1a"] for i in range(2)}
    # Each machine tells its nodes what they cost: moto has no Pricing API, so the table's
    # on-demand figure of every type the group may launch.
    s3 = client(aws_env, "s3")
    for i in range(2):
        key = machine_key("zoned", f"zoned-exp{i}")
        body = s3.get_object(Bucket=first_bucket(aws_env), Key=key)["Body"].read()
        spec = MachineSpec.from_json(body)
        assert (spec.spot, spec.prices, spec.price_source) == (
            False,
            {"m5.large": ON_DEMAND_USD_PER_HOUR["us-east-1"]["m5.large"]},
            "price table",
        )
