"""The per-run root module gridctl writes (infra/rootmodule.py), planned by real Terraform with
the real provider against moto: what each run's groups and launch templates would be,
read from ``terraform show -json``. Planning needs no environment, so every case is cheap."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gridctl.agent.core.spec import MachineSpec
from gridctl.cli.backends.aws import AwsBackend
from gridctl.infra import amis, environment, rootmodule
from gridctl.infra.environment import EnvironmentRecord
from gridctl.infra.rootmodule import EnvironmentInputs

from .test_modules import REGION, WHEEL_KEY, Terraform, clients

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform")

CREATED_VPC = {
    "bucket_name": "gridctl-plan-123456789012-us-east-1",
    "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "security_group_id": "sg-0123456789abcdef0",
    "instance_profile_name": "gridctl-plan-us-east-1-node",
    "node_public_ip": True,
}
GIVEN_VPC = {**CREATED_VPC, "node_public_ip": False}
OWN_AMI = "ami-0123456789abcdef0"


def inputs(run: str, instance_type: str, outputs: dict, **options) -> rootmodule.RunInputs:
    return rootmodule.RunInputs(
        environment="plan",
        run=run,
        agent_wheel_key=WHEEL_KEY,
        outputs=outputs,
        groups=(
            rootmodule.MachineInputs(f"gridctl-plan-{run}-exp0", f"{run}-exp0", (instance_type,)),
        ),
        **options,
    )


def plan(tmp_path: Path, aws_env: dict, moto: str, cases: list[rootmodule.RunInputs]) -> tuple:
    """Each case's root, planned at once: the planned values by resource type, and what
    the plan printed."""
    target = rootmodule.Target(REGION, None, moto)
    roots = {case.run: rootmodule.run_root(target, case, backend={}) for case in cases}
    return [
        ({c["type"]: c["change"]["after"] for c in changes}, log)
        for changes, log in plan_written(tmp_path, aws_env, roots)
    ]


def plan_written(tmp_path: Path, aws_env: dict, roots_by_name: dict[str, dict]) -> list:
    """Each root, planned at once: its planned resource changes, and what the plan printed."""
    roots = []
    for name, root in roots_by_name.items():
        root["terraform"].pop("backend", None)  # planned here, not applied: no state to keep
        tf = Terraform(tmp_path / name, aws_env)
        rootmodule.write_root(tf.workdir, root)
        tf.init()
        roots.append(tf)
    starts = [len(tf.text()) for tf in roots]
    procs = [tf.start("plan", "-input=false", "-no-color", "-out=plan") for tf in roots]
    results = []
    for tf, start, proc in zip(roots, starts, procs, strict=True):
        tf.finish(proc)
        shown = subprocess.run(
            ["terraform", "show", "-json", "plan"],
            cwd=tf.workdir,
            env=tf.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results.append((json.loads(shown)["resource_changes"], tf.text()[start:]))
    return results


def test_run_roots_plan_what_each_run_needs(aws_env, moto, tmp_path):
    cases = [
        # Spot with auto-resume: capacity rebalancing replaces instances at risk.
        inputs("resuming", "g4dn.xlarge", CREATED_VPC, use_spot=True, auto_resume=True),
        # Spot without auto-resume: a rebalance would end the experiment for nothing.
        inputs("once", "g4dn.xlarge", GIVEN_VPC, use_spot=True),
        # An AMI of the user's own, on Amazon Linux: its root device is the one sized.
        inputs(
            "own",
            "p3.2xlarge",
            CREATED_VPC,
            use_spot=False,
            image=amis.image_for("p3.2xlarge", "V100", amis.Image(OWN_AMI, "/dev/xvda")),
        ),
    ]
    (resuming, log), (once, _), (own, _) = plan(tmp_path, aws_env, moto, cases)
    pytorch = (
        "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
        "oss-nvidia-driver-gpu-pytorch-2.12-ubuntu-24.04/latest/ami-id"
    )

    group = resuming["aws_autoscaling_group"]
    assert group["capacity_rebalance"] is True
    assert group["name"] == "gridctl-plan-resuming-exp0"
    distribution = group["mixed_instances_policy"][0]["instances_distribution"][0]
    assert distribution["spot_allocation_strategy"] == "price-capacity-optimized"
    assert once["aws_autoscaling_group"]["capacity_rebalance"] is False
    assert own["aws_autoscaling_group"]["capacity_rebalance"] is False

    # The default AMI is resolved by EC2 at each launch, by GPU generation.
    template = resuming["aws_launch_template"]
    assert template["name"] == "gridctl-plan-resuming-exp0"
    assert template["image_id"] == pytorch
    assert template["block_device_mappings"][0]["device_name"] == "/dev/sda1"
    template = own["aws_launch_template"]
    assert template["image_id"] == OWN_AMI
    assert template["block_device_mappings"][0]["device_name"] == "/dev/xvda"

    # gridctl's own VPC needs public IPs; in a user's VPC the subnet decides.
    interface = resuming["aws_launch_template"]["network_interfaces"][0]
    assert interface["associate_public_ip_address"] == "true"
    interface = once["aws_launch_template"]["network_interfaces"][0]
    assert interface["associate_public_ip_address"] in (None, "")

    # Nothing deprecated, nothing else Terraform or the provider warns about.
    assert "Warning" not in log, log


def test_run_roots_require_the_terraform_and_provider_they_were_written_for():
    root = rootmodule.run_root(
        rootmodule.Target(REGION), inputs("r", "t3.large", CREATED_VPC, use_spot=False), backend={}
    )
    assert root["terraform"]["required_version"] == ">= 1.10"
    assert root["terraform"]["required_providers"]["aws"]["version"] == "~> 5.0"
    for module in ("environment", "machine"):
        versions = (Path(rootmodule.modules_dir()) / module / "versions.tf").read_text()
        assert 'required_version = ">= 1.10"' in versions
        assert 'version = "~> 5.0"' in versions


def gang_run(name: str, instance_type: str, nodes: dict[str, int], store) -> dict:
    """A run record with one machine per entry of ``nodes``, and each machine's spec in the
    bucket, as ``gridctl run --cloud aws`` writes them."""
    for machine, count in nodes.items():
        spec = MachineSpec(name, machine, (machine,), 4.0, 0, 2**33, nodes=count)
        store.put_bytes(spec.key, spec.to_json().encode())
    return {
        "name": name,
        "use_spot": False,
        "agent_wheel_key": WHEEL_KEY,
        "scratch_size": 0,
        "instance_types": [instance_type],
        "machines": {machine: [machine] for machine in nodes},
        "groups": {machine: f"gridctl-plan-{machine}" for machine in nodes},
    }


def test_a_gang_gets_its_nodes_and_a_cluster_placement_group(aws_env, moto, tmp_path, monkeypatch):
    """The AWS backend sizes each group from its machine's spec and places a gang's nodes
    together unless GRIDCTL_PLACEMENT_GROUP=off; the environment lets them reach each other."""
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    clients(aws_env)("s3").create_bucket(Bucket=CREATED_VPC["bucket_name"])
    home = tmp_path / "home"
    home.mkdir()
    record = EnvironmentRecord("plan", REGION, None, CREATED_VPC["bucket_name"], {}, CREATED_VPC)
    environment.save(home, record)
    backend = AwsBackend(home)
    store = backend.store
    gang = gang_run("gang", "c5.xlarge", {"gang-exp0": 2, "gang-exp1": 1}, store)

    monkeypatch.delenv("GRIDCTL_PLACEMENT_GROUP")  # a real account: placement groups on
    placed = backend._inputs(gang)
    monkeypatch.setenv("GRIDCTL_PLACEMENT_GROUP", "off")
    unplaced = backend._inputs(gang_run("unplaced", "c5.xlarge", {"unplaced-exp0": 2}, store))
    assert [g.node_count for g in placed.groups] == [2, 1]
    assert [g.node_count for g in unplaced.groups] == [2]
    assert placed.placement_group and not unplaced.placement_group
    burstable = inputs("burstable", "t3.large", CREATED_VPC, use_spot=True)
    burstable = dataclasses.replace(
        burstable, groups=(dataclasses.replace(burstable.groups[0], node_count=2),)
    )

    target = rootmodule.Target(REGION, None, moto)
    roots = {case.run: rootmodule.run_root(target, case, {}) for case in (placed, unplaced)}
    roots["burstable"] = rootmodule.run_root(target, burstable, {})
    env = EnvironmentInputs("plan", CREATED_VPC["bucket_name"], None)
    roots["environment"] = rootmodule.environment_root(target, env, None)
    results = plan_written(tmp_path, aws_env, roots)
    (on, log), (off, _), (burst, _), (environment_plan, _) = results
    on = {c["address"]: c["change"]["after"] for c in on}
    off = {c["address"]: c["change"]["after"] for c in off}
    burst = {c["address"]: c["change"]["after"] for c in burst}

    def group(planned: dict, machine: str) -> dict:
        return planned[f'module.machine["{machine}"].aws_autoscaling_group.this']

    every = CREATED_VPC["subnet_ids"]
    # Two nodes: a cluster placement group of the group's name, in one zone, both launched.
    placement = on['module.machine["gang-exp0"].aws_placement_group.this[0]']
    assert placement["strategy"] == "cluster"
    assert placement["name"] == "gridctl-plan-gang-exp0"
    assert placement["tags"]["gridctl:run"] == "gang"
    two = group(on, "gang-exp0")
    assert two["placement_group"] == "gridctl-plan-gang-exp0"
    assert (two["min_size"], two["max_size"], two["desired_capacity"]) == (0, 2, 2)
    assert two["vpc_zone_identifier"] == every[:1]
    assert two["suspended_processes"] == ["AZRebalance"]
    # One node: exactly what it was before gangs (no placement group, every zone).
    assert not [a for a in on if a.startswith('module.machine["gang-exp1"].aws_placement')]
    one = group(on, "gang-exp1")
    assert one["placement_group"] is None and one["max_size"] == 1
    assert sorted(one["vpc_zone_identifier"]) == every
    assert not one["suspended_processes"]
    # Switched off (emulators), or a type EC2 cannot place (T): no placement group.
    for planned, machine in ((off, "unplaced-exp0"), (burst, "burstable-exp0")):
        assert not [a for a in planned if ".aws_placement_group." in a], planned.keys()
        unplaced_group = group(planned, machine)
        assert unplaced_group["placement_group"] is None
        assert unplaced_group["max_size"] == 2
        assert sorted(unplaced_group["vpc_zone_identifier"]) == every
        assert unplaced_group["suspended_processes"] == ["AZRebalance"]

    # The nodes' security group: its own members on every port, nothing else inbound.
    (security_group,) = [c for c in environment_plan if c["type"] == "aws_security_group"]
    (rule,) = security_group["change"]["after"]["ingress"]
    assert rule["self"] is True
    assert (rule["protocol"], rule["from_port"], rule["to_port"]) == ("-1", 0, 0)
    assert not rule["cidr_blocks"] and not rule["ipv6_cidr_blocks"]
    assert not rule["prefix_list_ids"] and not rule["security_groups"]
    assert "Warning" not in log, log
