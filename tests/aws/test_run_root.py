"""The per-run root module gridctl writes (infra/rootmodule.py), planned by real Terraform with
the real provider against moto: what each run's groups and launch templates would be,
read from ``terraform show -json``. Planning needs no environment, so every case is cheap."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gridctl.infra import amis, rootmodule

from .test_modules import REGION, WHEEL_KEY, Terraform

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
    roots = []
    for case in cases:
        root = rootmodule.run_root(target, case, backend={})
        del root["terraform"]["backend"]  # planned here, not applied: no state to keep
        tf = Terraform(tmp_path / case.run, aws_env)
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
        changes = json.loads(shown)["resource_changes"]
        planned = {c["type"]: c["change"]["after"] for c in changes}
        results.append((planned, tf.text()[start:]))
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
    oss = (
        "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
        "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
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
    assert template["image_id"] == oss
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
