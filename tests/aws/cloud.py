"""Looking at the emulated account from a test: what runs, what exists, what is stored."""

from __future__ import annotations

from pathlib import Path

import boto3
from conftest import Gridctl

REGION = "us-east-1"


def client(aws_env: dict[str, str], service: str):
    return boto3.client(
        service,
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def running_instances(aws_env: dict[str, str]) -> list[str]:
    reservations = client(aws_env, "ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def groups(aws_env: dict[str, str]) -> dict[str, int]:
    """Every Auto Scaling group's desired capacity, by name."""
    found = client(aws_env, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: g["DesiredCapacity"] for g in found}


def keys_of(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def first_bucket(aws_env: dict[str, str]) -> str:
    return client(aws_env, "s3").list_buckets()["Buckets"][0]["Name"]


def default_ami(aws_env: dict[str, str]) -> str:
    return client(aws_env, "ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def user(aws_env: dict[str, str], home: Path, project: Path) -> Gridctl:
    """The real gridctl with its own GRIDCTL_HOME, pointed at the emulated account."""
    cli = Gridctl(home, project)
    cli.env.update(aws_env)
    cli.env.update(GRIDCTL_LOG_INTERVAL="1", GRIDCTL_HEARTBEAT_INTERVAL="2")
    # moto treats the TLS-only bucket policy's conditional deny as unconditional.
    cli.env["GRIDCTL_BUCKET_TLS_POLICY"] = "off"
    return cli
