"""What a run gets on AWS when the user names no AMI, through the real gridctl, Terraform and
moto: the PyTorch Deep Learning AMI, resolved by EC2 at launch; capacity
rebalancing only with --auto_resume; groups named after their environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Gridctl

from .cloud import client, groups

pytestmark = pytest.mark.e2e

PYTORCH_AMI = (
    "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
    "oss-nvidia-driver-gpu-pytorch-2.12-ubuntu-24.04/latest/ami-id"
)


def test_runs_without_an_ami_of_their_own(cloud: Gridctl, aws_env, project: Path):
    # No --ami: nothing is looked up at `up`; every run picks its AMI itself.
    made = cloud("up", "--name", "team-b", timeout=600)
    assert made.returncode == 0, made.stderr
    (project / "train.py").write_text("print('trained')\n")

    # K80: no current Deep Learning AMI drives it, so the run is refused before anything.
    refused = cloud("run", "--instance_type", "p2.xlarge", "train.py")
    assert refused.returncode == 2
    assert "p2.xlarge (K80 GPUs) has no default AMI" in refused.stderr
    assert cloud.json("status") == []

    for name, flags in (("resumes", ("--auto_resume",)), ("once", ())):
        run = cloud(
            "run",
            "--name",
            name,
            "--use_spot",
            *flags,
            "--instance_type",
            "g4dn.xlarge",
            "train.py",
            timeout=600,
        )
        assert run.returncode == 0, run.stderr

    found = client(aws_env, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    by_name = {g["AutoScalingGroupName"]: g for g in found}
    assert set(by_name) == {"gridctl-team-b-resumes-exp0", "gridctl-team-b-once-exp0"}
    assert by_name["gridctl-team-b-resumes-exp0"]["CapacityRebalance"] is True
    assert by_name["gridctl-team-b-once-exp0"]["CapacityRebalance"] is False
    for group in by_name.values():
        distribution = group["MixedInstancesPolicy"]["InstancesDistribution"]
        assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"

    ec2 = client(aws_env, "ec2")
    data = ec2.describe_launch_template_versions(
        LaunchTemplateName="gridctl-team-b-once-exp0", Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["ImageId"] == PYTORCH_AMI
    assert data["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    assert data["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True  # gridctl's VPC

    # The CLI finds its groups by their new names: stop scales the run's group to zero.
    assert cloud("stop", "once", timeout=300).returncode == 0
    assert groups(aws_env)["gridctl-team-b-once-exp0"] == 0
    assert cloud("delete", "once", "resumes", timeout=600).returncode == 0
    assert groups(aws_env) == {}
