"""What a run costs on AWS (SPEC section 11), end to end: the real gridctl, real Terraform,
moto and simulated nodes whose agents write the ledger. Each figure is checked against the
ledger's own start and end and the price the CLI gave the machine, and a teammate's CLI,
which has nothing of this machine's, shows the same figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Gridctl

from gridctl.agent.core.contract import ON_DEMAND, Charge, ledger_prefix, machine_key
from gridctl.agent.core.cost import MINIMUM_SECONDS

from .cloud import client, first_bucket
from .nodes import NodeSimulator

pytestmark = pytest.mark.e2e

TRAIN = "import time\ntime.sleep(2)\nprint('trained', flush=True)\n"
TYPE = "t3.medium"


def charges_of(aws_env, run: str) -> dict[str, list[Charge]]:
    """The run's ledger as the bucket holds it, by experiment."""
    s3, bucket = client(aws_env, "s3"), first_bucket(aws_env)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=ledger_prefix(run)).get("Contents", [])
    found: dict[str, list[Charge]] = {}
    for item in listed:
        charge = Charge.decode(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        found.setdefault(charge.experiment, []).append(charge)
    return found


def test_an_on_demand_run_costs_its_price_for_its_billed_seconds(
    cloud: Gridctl, aws_env, ami, project: Path, tmp_path: Path, nodes: NodeSimulator
):
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    (project / "train.py").write_text(TRAIN)
    run = cloud(
        "run", "--name", "priced", "--instance_type", TYPE, "train.py", "--lr", "[1, 2]",
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cloud.wait_until(lambda: cloud.status("priced")["status"] == "succeeded", 300)
    nodes.wait_for(lambda seen: len(seen) == 2 and all(n.returncode is not None for n in seen))

    s3, bucket = client(aws_env, "s3"), first_bucket(aws_env)
    machine = json.loads(
        s3.get_object(Bucket=bucket, Key=machine_key("priced", "priced-exp0"))["Body"].read()
    )
    assert (machine["spot"], machine["price_source"]) == (False, "price table")
    price = machine["prices"][TYPE]
    assert price > 0
    ledger = charges_of(aws_env, "priced")
    assert sorted(ledger) == ["priced-exp0", "priced-exp1"]
    expected: dict[str, float] = {}
    for name, charges in ledger.items():
        (charge,) = charges
        node = nodes.node_for(name)
        assert node is not None
        assert (charge.attempt, charge.rank, charge.instance) == (0, 0, node.instance_id)
        assert (charge.instance_type, charge.market) == (TYPE, ON_DEMAND)
        assert charge.zone is not None and charge.zone.startswith("us-east-1")
        assert (charge.price_per_hour, charge.price_source) == (price, "price table")
        assert (charge.share, charge.gpus) == (1.0, 0)
        assert charge.ended_at is not None and charge.ended_at >= charge.started_at
        billed = max(MINIMUM_SECONDS, charge.ended_at - charge.started_at)
        expected[name] = price * billed / 3600

    status = cloud.status("priced")
    costs = {e["name"]: e["cost"] for e in status["experiments"]}
    assert costs == pytest.approx(expected, abs=1e-6)
    assert status["cost"] == pytest.approx(sum(expected.values()), abs=1e-6)
    (listed,) = cloud.json("status")
    assert listed["cost"] == status["cost"]
    assert cloud.json("status", "priced-exp1")["cost"] == costs["priced-exp1"]

    report = cloud.json("cost", "--output", "json")
    assert report == {
        "since": None,
        "runs": [
            {
                "run": "priced",
                "backend": "aws",
                "status": "succeeded",
                "created_at": listed["created_at"],
                "cost": status["cost"],
                "gpu_hours": 0.0,
                "estimate": False,
                "experiments": [
                    {
                        "name": name,
                        "status": "succeeded",
                        "cost": costs[name],
                        "gpu_hours": 0.0,
                        "estimate": False,
                    }
                    for name in ("priced-exp0", "priced-exp1")
                ],
            }
        ],
        "total": {"cost": status["cost"], "gpu_hours": 0.0, "estimate": False},
    }
    assert cloud.json("cost", "priced", "--output", "json") == report
    later = cloud.json("cost", "--since", "2999-01-01", "--output", "json")
    assert later["runs"] == [] and later["since"] == "2999-01-01T00:00:00Z"
    assert later["total"] == {"cost": 0.0, "gpu_hours": 0.0, "estimate": False}
    table = cloud("cost")
    assert table.returncode == 0, table.stderr
    print(table.stdout)  # the README's example (pytest -s shows it)
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["total", "0.00", f"${status['cost']:.4f}"] in rows, table.stdout

    # A teammate's CLI with a fresh home reads the same ledger.
    teammate = Gridctl(tmp_path / "teammate", project)
    teammate.env.update(aws_env)
    assert teammate("up", timeout=600).returncode == 0
    assert teammate.json("cost", "--output", "json") == report
    assert teammate.status("priced")["cost"] == status["cost"]

    # AWS's cost allocation can group by run: the instances carry it, and their launch
    # templates tag their volumes with it at launch (moto's groups launch no volumes of the
    # template, so the template is what can be checked here).
    ec2 = client(aws_env, "ec2")
    ids = [n.instance_id for n in nodes.nodes()]
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    for instance in (i for r in found for i in r["Instances"]):
        assert {"Key": "gridctl:run", "Value": "priced"} in instance["Tags"], instance["Tags"]
    for name in ("priced-exp0", "priced-exp1"):
        (version,) = ec2.describe_launch_template_versions(
            LaunchTemplateName=f"gridctl-default-{name}", Versions=["$Latest"]
        )["LaunchTemplateVersions"]
        tagged = {
            spec["ResourceType"]: spec["Tags"]
            for spec in version["LaunchTemplateData"]["TagSpecifications"]
        }
        for resource in ("instance", "volume"):
            assert {"Key": "gridctl:run", "Value": "priced"} in tagged[resource], tagged
