"""Bad input and missing prerequisites on the AWS path: one line, exit 2, nothing made."""

from __future__ import annotations

import pytest
from conftest import Gridctl


@pytest.fixture
def bare(tmp_path, project) -> Gridctl:
    """No credentials anywhere boto3 would look, and no emulator endpoint."""
    cli = Gridctl(tmp_path / "home", project)
    for name in list(cli.env):
        if name.startswith("AWS_"):
            del cli.env[name]
    cli.env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    (project / "train.py").write_text("print(1)\n")
    return cli


def one_line_exit_2(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("gridctl: error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_no_credentials_says_how_to_provide_them(bare):
    message = one_line_exit_2(bare("up", "--ami", "ami-12345678", "--region", "us-east-1"))
    assert "no AWS credentials" in message and "--credential" in message


def test_unknown_region(bare):
    bare.env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    message = one_line_exit_2(bare("up", "--ami", "ami-12345678", "--region", "mars-north-1"))
    assert "mars-north-1" in message


def test_unknown_profile(bare):
    message = one_line_exit_2(bare("up", "--credential", "nobody", "--ami", "ami-12345678"))
    assert "nobody" in message


def test_terraform_missing(bare):
    bare.env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    bare.env["PATH"] = "/usr/bin:/bin"
    message = one_line_exit_2(bare("up", "--ami", "ami-12345678"))
    assert "terraform was not found" in message


def test_run_on_aws_before_up(bare):
    message = one_line_exit_2(bare("run", "--cloud", "aws", "train.py"))
    assert "gridctl up" in message


def test_resources_beyond_the_instance_type(bare):
    result = bare(
        "run",
        "--cloud",
        "aws",
        "--dry-run",
        "--instance_type",
        "t2.medium",
        "--cpus",
        "4",
        "train.py",
    )
    assert "t2.medium" in one_line_exit_2(result)


def test_down_without_an_environment(bare):
    assert "no AWS environment" in one_line_exit_2(bare("down"))


def test_vpc_without_subnets(bare):
    assert "--subnet-ids" in one_line_exit_2(bare("up", "--vpc-id", "vpc-123"))


@pytest.fixture
def old_terraform(bare, tmp_path) -> Gridctl:
    """A ``terraform`` first on PATH that says it is 1.9.8, before use_lockfile existed."""
    fake = tmp_path / "old-bin" / "terraform"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho \'{"terraform_version":"1.9.8","platform":"linux_amd64"}\'\n')
    fake.chmod(0o755)
    bare.env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    bare.env["PATH"] = f"{fake.parent}:{bare.env['PATH']}"
    return bare


@pytest.mark.parametrize(
    "command", [("up", "--ami", "ami-12345678"), ("run", "--cloud", "aws", "train.py")]
)
def test_terraform_too_old(old_terraform, command):
    message = one_line_exit_2(old_terraform(*command))
    assert "terraform 1.9.8" in message and "Terraform 1.10 or newer" in message


@pytest.mark.parametrize(
    "instance_type", ["p2.xlarge", "8_k80_12gb", "p3.2xlarge", "8_v100_32gb", "g3s.xlarge"]
)
def test_types_no_deep_learning_ami_supports_are_refused(bare, instance_type):
    result = bare(
        "run", "--cloud", "aws", "--dry-run", "--instance_type", instance_type, "train.py"
    )
    message = one_line_exit_2(result)
    assert "has no default AMI" in message
    assert "gridctl up --ami" in message
