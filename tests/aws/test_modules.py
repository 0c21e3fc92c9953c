"""The Terraform modules (SPEC section 6): fmt, validate, checkov, the node's user data
(golden file, shellcheck) and a real apply/destroy of both modules against moto.

Terraform's output goes to ``terraform.log`` in each working directory; failures quote it.
Set ``UPDATE_GOLDEN=1`` to rewrite ``golden/user-data.sh`` after a deliberate change.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "modules"
BIN = Path(sys.executable).parent
TEMPLATE = MODULES / "machine" / "user-data.sh.tftpl"
GOLDEN = Path(__file__).parent / "golden" / "user-data.sh"
REGION = "us-east-1"
WHEEL_KEY = "wheels/gridctl-0.1.0-py3-none-any.whl"
GOLDEN_VALUES = {
    "bucket": "gridctl-demo-123456789012-us-east-1",
    "region": REGION,
    "agent_wheel_key": WHEEL_KEY,
    "run": "swift-otter-7",
    "machine": "swift-otter-7-exp0",
    "max_lifetime_hours": "168",
}
# What the user data may know: nothing secret (SPEC 6: the node learns the rest itself; the
# run and machine are there so that a failed boot can still say which experiments failed).
USER_DATA_INPUTS = {
    "bucket",
    "region",
    "agent_wheel_key",
    "run",
    "machine",
    "max_lifetime_hours",
}
SERVICES = ("s3", "ec2", "iam", "sts", "autoscaling")
RESOLVED_AMI = (
    "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
    "oss-nvidia-driver-gpu-pytorch-2.12-ubuntu-24.04/latest/ami-id"
)
TF_TIMEOUT = 600

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform")


# --- helpers -----------------------------------------------------------------------------


class Terraform:
    """One working directory: ``terraform`` runs in it, all output appended to its log."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.log = workdir / "terraform.log"
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, *args: str) -> subprocess.Popen:
        with self.log.open("a") as log:
            log.write(f"\n$ terraform {' '.join(args)}\n")
            log.flush()
            return subprocess.Popen(
                ["terraform", *args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def finish(self, proc: subprocess.Popen, check: bool = True) -> int:
        rc = proc.wait(TF_TIMEOUT)
        if check and rc != 0:
            pytest.fail(f"terraform {proc.args[1]} failed (exit {rc}){self.report()}")
        return rc

    def run(self, *args: str, check: bool = True) -> int:
        return self.finish(self.start(*args), check)

    def init(self) -> None:
        self.run("init", "-backend=false", "-input=false", "-no-color")

    def _read(self, *args: str) -> str:
        """A read-only terraform command's stdout; its failure fails the test."""
        out = subprocess.run(
            ["terraform", *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr + self.report()
        return out.stdout

    def outputs(self) -> dict:
        return {name: o["value"] for name, o in json.loads(self._read("output", "-json")).items()}

    def state(self) -> list[str]:
        return self._read("state", "list").split()

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def report(self, lines: int = 150) -> str:
        tail = "\n".join(self.text().splitlines()[-lines:])
        return f"\n--- {self.log} (last {lines} lines) ---\n{tail}"


@contextlib.contextmanager
def explained(*roots: Terraform) -> Iterator[None]:
    """Attach the Terraform logs to any assertion that fails inside the block."""
    try:
        yield
    except AssertionError as error:
        raise AssertionError(f"{error}{''.join(r.report(60) for r in roots)}") from None


def both(roots: list[Terraform], *args: str) -> None:
    """Run the same command in several working directories at once (moto is one server)."""
    procs = [root.start(*args) for root in roots]
    for root, proc in zip(roots, procs, strict=True):
        root.finish(proc)


def provider(moto: str) -> dict:
    return {
        "aws": {
            "region": REGION,
            "skip_credentials_validation": True,
            "skip_requesting_account_id": True,
            "skip_metadata_api_check": True,
            "s3_use_path_style": True,
            "endpoints": {service: moto for service in SERVICES},
        }
    }


def write_root(workdir: Path, moto: str, modules: dict, outputs: dict | None = None) -> None:
    """A throwaway root module in JSON syntax, as gridctl renders its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = {
        "terraform": {
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": "~> 5.0"}}
        },
        "provider": provider(moto),
        "module": modules,
    }
    if outputs:
        root["output"] = {name: {"value": value} for name, value in outputs.items()}
    (workdir / "main.tf.json").write_text(json.dumps(root, indent=2))


# What a filesystem mirror of the provider (this machine's test setup) always draws.
_MIRROR_WARNING = "Warning: Incomplete lock file information for providers"


def warnings(output: str) -> list[str]:
    """Terraform's and the provider's warnings in ``output`` (deprecations among them)."""
    found = re.findall(r"Warning: .*", output)
    return [w for w in found if w != _MIRROR_WARNING]


def as_list(value: str | list[str]) -> list[str]:
    """A policy's Action/Resource: one string or a list of them."""
    return [value] if isinstance(value, str) else value


def members_only(group: dict) -> bool:
    """Whether the security group's one inbound rule admits its own members, on every port
    and protocol, and nothing else."""
    return group["IpPermissions"] == [
        {
            "IpProtocol": "-1",
            "IpRanges": [],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
            "UserIdGroupPairs": [
                {
                    "Description": "Nodes of this environment only (the peers of a multi-node"
                    " experiment), every port and protocol",
                    "GroupId": group["GroupId"],
                    "UserId": group["OwnerId"],
                }
            ],
        }
    ]


def clients(aws_env: dict[str, str]):
    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=aws_env["AWS_ENDPOINT_URL"],
            region_name=REGION,
            aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"],
        )

    return client


# Terraform template syntax as templatefile() reads it: "$${" and "%%{" are escapes for
# a literal "${" and "%{"; "${name}" interpolates; any other "${" or "%{" is an expression
# or directive that this small renderer refuses (the template needs none).
_TEMPLATE_TOKEN = re.compile(
    r"(?P<escape>\$\$\{|%%\{)|\$\{(?P<name>[A-Za-z_]\w*)\}|(?P<other>[$%]\{)"
)


def template_placeholders(template: str) -> set[str]:
    return {m["name"] for m in _TEMPLATE_TOKEN.finditer(template) if m["name"]}


def render_template(template: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        if match["escape"]:
            return match["escape"][1:]
        if match["name"]:
            return values[match["name"]]
        raise ValueError(f"unsupported template syntax at offset {match.start()}")

    return _TEMPLATE_TOKEN.sub(substitute, template)


def render_user_data(values: dict[str, str]) -> str:
    return render_template(TEMPLATE.read_text(), values)


def templatefile_keys() -> set[str]:
    """The keys of the templatefile() call that renders the user data in main.tf."""
    main = (MODULES / "machine" / "main.tf").read_text()
    call = re.search(
        r'templatefile\("\$\{path\.module\}/user-data\.sh\.tftpl",\s*\{(?P<args>.*?)\}\)',
        main,
        re.DOTALL,
    )
    assert call, "main.tf does not render user-data.sh.tftpl with templatefile()"
    return set(re.findall(r"^\s*(\w+)\s*=", call["args"], re.MULTILINE))


# --- static checks -----------------------------------------------------------------------


def test_modules_are_terraform_fmt_clean(terraform_cli):
    out = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", "-no-color", "modules"],
        cwd=REPO,
        env={**os.environ, **terraform_cli},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("module", ["environment", "machine"])
def test_module_validates(module, terraform_cli, tmp_path):
    # A copy, so that init leaves no .terraform/ or lock file in the source tree.
    workdir = tmp_path / module
    shutil.copytree(MODULES / module, workdir)
    tf = Terraform(workdir, {**os.environ, **terraform_cli})
    tf.init()
    start = len(tf.text())
    tf.run("validate", "-no-color")
    validate = tf.text()[start:]
    assert "Success! The configuration is valid." in validate, tf.report()
    assert "Warning" not in validate, tf.report()  # e.g. deprecated arguments


def test_module_layout():
    """terraform-aws-modules layout: four files, typed and described variables, described
    outputs wrapped in try()."""
    for module in ("environment", "machine"):
        folder = MODULES / module
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
            assert (folder / name).is_file(), f"{module}/{name} is missing"
        variables = re.split(r'^variable "', (folder / "variables.tf").read_text(), flags=re.M)
        for block in variables[1:]:
            name = block.split('"', 1)[0]
            assert re.search(r"^  type\s+=", block, re.M), f"{module}: variable {name} untyped"
            assert re.search(r"^  description\s+=", block, re.M), f"{module}: {name} undescribed"
        outputs = re.split(r'^output "', (folder / "outputs.tf").read_text(), flags=re.M)
        assert len(outputs) > 1
        for block in outputs[1:]:
            name = block.split('"', 1)[0]
            assert re.search(r"^  description\s+=", block, re.M), f"{module}: {name} undescribed"
            assert re.search(r"^  value\s+=\s+try\(", block, re.M), f"{module}: {name} not try()"
        versions = (folder / "versions.tf").read_text()
        assert 'required_version = ">= 1.10"' in versions  # the S3 backend's use_lockfile
        assert 'version = "~> 5.0"' in versions


def test_checkov_passes_and_every_skip_has_a_reason():
    out = subprocess.run(
        [
            str(BIN / "checkov"),
            "-d",
            "modules",
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Failed checks: 0" in out.stdout, out.stdout
    assert "Parsing errors" not in out.stdout, out.stdout  # checkov exits 0 on those
    for path in MODULES.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.fullmatch(r"\s*#checkov:skip=CKV2?_AWS_\d+:(?P<reason>.+)", line)
                assert match and len(match["reason"]) > 40, f"{path.name}: {line.strip()}"


# --- user data ---------------------------------------------------------------------------


def test_user_data_placeholders_match_the_templatefile_arguments():
    placeholders = template_placeholders(TEMPLATE.read_text())
    assert placeholders == templatefile_keys()
    assert placeholders == USER_DATA_INPUTS


def test_user_data_matches_the_golden_file():
    rendered = render_user_data(GOLDEN_VALUES)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text()


def test_user_data_is_shellcheck_clean_and_holds_no_secret():
    rendered = render_user_data(GOLDEN_VALUES)
    assert rendered.startswith("#!/usr/bin/env bash\nset -euo pipefail\n")
    out = subprocess.run(
        [str(BIN / "shellcheck"), "--shell=bash", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for pattern in (
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",  # access key ids
        r"(?i)aws_secret_access_key|aws_session_token|secret_key|password|passwd",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",  # secret-key shaped
    ):
        assert not re.search(pattern, rendered), pattern
    # What it must do: install the wheel from the bucket and start the node agent.
    assert 'aws s3 cp --only-show-errors "s3://$bucket/$wheel_key"' in rendered
    assert f'readonly wheel_key="{WHEEL_KEY}"' in rendered
    assert '"$python" -m venv' in rendered and "python3.10" in rendered
    assert "-m gridctl.agent node" in rendered
    assert "/var/log/gridctl-agent.log" in rendered
    assert "KillMode=mixed" in rendered
    assert "OnBootSec=${max_lifetime_hours}h" in rendered


def test_template_renderer_handles_escapes():
    rendered = render_template("a=${a} $${HOME} %%{x}", {"a": "1"})
    assert rendered == "a=1 ${HOME} %{x}"
    with pytest.raises(ValueError):
        render_template("${upper(a)}", {"a": "1"})


# --- against moto ------------------------------------------------------------------------


def test_modules_apply_and_destroy_against_moto(aws_env, moto, tmp_path):
    """Two roots applied side by side (the bucket's lifecycle rule alone keeps the provider
    waiting ~55 s): an environment with a created VPC plus an all-spot and an on-demand
    machine, and an environment in an existing VPC; then both destroyed."""
    client = clients(aws_env)
    ec2, s3, asg = client("ec2"), client("s3"), client("autoscaling")

    # An existing network, as a user passing --vpc-id/--subnet-ids has.
    given_vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    given_subnets = []
    for i, zone in enumerate(("us-east-1a", "us-east-1b")):
        subnet = ec2.create_subnet(
            VpcId=given_vpc, CidrBlock=f"10.7.{i}.0/24", AvailabilityZone=zone
        )
        given_subnets.append(subnet["Subnet"]["SubnetId"])
    ami = ec2.describe_images()["Images"][0]["ImageId"]

    created = Terraform(tmp_path / "created-vpc", aws_env)
    wiring = {
        "bucket": "${module.environment.bucket_name}",
        "region": "${module.environment.region}",
        "ami_id": "${module.environment.ami_id}",
        "subnet_ids": "${module.environment.subnet_ids}",
        "security_group_id": "${module.environment.security_group_id}",
        "instance_profile_name": "${module.environment.instance_profile_name}",
        "agent_wheel_key": WHEEL_KEY,
    }
    write_root(
        created.workdir,
        moto,
        {
            "environment": {
                "source": str(MODULES / "environment"),
                "name": "moto-a",
                "bucket_name": "gridctl-moto-a-bucket",
                "force_destroy": True,
                "ami_id": ami,
                "az_count": 2,
                "tags": {"team": "tests"},
            },
            "machine": {
                "source": str(MODULES / "machine"),
                "name": "swift-otter-7-exp0",
                "environment": "moto-a",
                "run": "swift-otter-7",
                "machine": "swift-otter-7-exp0",
                "instance_types": ["g4dn.xlarge", "g5.xlarge"],
                "use_spot": True,
                "capacity_rebalance": True,
                "tags": {"team": "tests"},
                **wiring,
            },
            # The on-demand shape: a plain launch template, the first type, two nodes (no
            # placement group: moto has none).
            "on_demand": {
                "source": str(MODULES / "machine"),
                "name": "calm-heron-2-exp0",
                "environment": "moto-a",
                "run": "calm-heron-2",
                "machine": "calm-heron-2-exp0",
                "instance_types": ["c5.large", "c5.xlarge"],
                "node_count": 2,
                "create_placement_group": False,
                **wiring,
                # The default AMI: EC2 resolves the public parameter at each launch.
                "ami_id": RESOLVED_AMI,
                "root_device_name": "/dev/xvda",
            },
        },
        {
            "environment": "${module.environment}",
            "machine": "${module.machine}",
            "on_demand": "${module.on_demand}",
        },
    )
    existing = Terraform(tmp_path / "existing-vpc", aws_env)
    write_root(
        existing.workdir,
        moto,
        {
            "environment": {
                "source": str(MODULES / "environment"),
                "name": "moto-b",
                "bucket_name": "gridctl-moto-b-bucket",
                "force_destroy": True,
                "ami_id": ami,
                "vpc_id": given_vpc,
                "subnet_ids": given_subnets,
                "deny_insecure_transport": False,
            }
        },
        {"environment": "${module.environment}"},
    )
    roots = [created, existing]
    for root in roots:  # one after the other: the shared plugin cache is not safe to race
        root.init()
    starts = [len(root.text()) for root in roots]
    both(roots, "apply", "-auto-approve", "-input=false", "-no-color")
    for root, start in zip(roots, starts, strict=True):  # deprecations included
        assert not warnings(root.text()[start:]), root.report()

    # `gridctl up` is idempotent: a second plan finds nothing to change. (Only the
    # environment of the first root: moto echoes a launch template's own tags back as a
    # "launch-template" tag specification, a diff real AWS does not produce.)
    plan = ("plan", "-detailed-exitcode", "-input=false", "-no-color")
    replans = [created.start(*plan, "-target=module.environment"), existing.start(*plan)]
    for root, proc in zip(roots, replans, strict=True):
        assert root.finish(proc, check=False) == 0, f"a second plan wants changes{root.report()}"

    outputs = created.outputs()
    env_a, machine, on_demand = outputs["environment"], outputs["machine"], outputs["on_demand"]
    env_b = existing.outputs()["environment"]

    with explained(created):
        # The bucket: private, encrypted, TLS only.
        bucket = env_a["bucket_name"]
        assert bucket == "gridctl-moto-a-bucket"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"),
            True,
        )
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in {
            "AES256",
            "aws:kms",
        }
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert any(
            statement["Effect"] == "Deny"
            and statement["Condition"]["Bool"]["aws:SecureTransport"] == "false"
            for statement in policy["Statement"]
        ), policy
        # moto evaluates bucket policies on object requests: plain HTTP is refused.
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            s3.put_object(Bucket=bucket, Key="plain-http.txt", Body=b"x")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
        assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert lifecycle[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

        # The network: a created VPC, one public subnet per zone, inbound from members only.
        vpc = ec2.describe_vpcs(VpcIds=[env_a["vpc_id"]])["Vpcs"][0]
        assert {"Key": "gridctl:environment", "Value": "moto-a"} in vpc["Tags"]
        subnets = ec2.describe_subnets(SubnetIds=env_a["subnet_ids"])["Subnets"]
        assert len(subnets) == 2
        assert len({s["AvailabilityZone"] for s in subnets}) == 2
        assert all(s["MapPublicIpOnLaunch"] and s["VpcId"] == vpc["VpcId"] for s in subnets)
        assert env_a["node_public_ip"] is True
        # S3 traffic goes through a gateway endpoint on the subnets' route table.
        (endpoint,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[env_a["s3_vpc_endpoint_id"]])[
            "VpcEndpoints"
        ]
        assert endpoint["VpcEndpointType"] == "Gateway"
        assert endpoint["ServiceName"] == f"com.amazonaws.{REGION}.s3"
        assert endpoint["VpcId"] == vpc["VpcId"]
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": env_a["subnet_ids"]}]
        )["RouteTables"]
        assert {t["RouteTableId"] for t in tables} == set(endpoint["RouteTableIds"])
        group = ec2.describe_security_groups(GroupIds=[env_a["security_group_id"]])
        group = group["SecurityGroups"][0]
        assert members_only(group), group["IpPermissions"]
        assert group["VpcId"] == vpc["VpcId"]
        default = ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
                {"Name": "group-name", "Values": ["default"]},
            ]
        )["SecurityGroups"][0]
        assert default["IpPermissions"] == [] and default["IpPermissionsEgress"] == []

        # The node role: assumable by EC2 only, no wildcard action.
        iam = client("iam")
        role = iam.get_role(RoleName=env_a["node_role_arn"].rsplit("/", 1)[1])["Role"]
        assume = role["AssumeRolePolicyDocument"]
        assume = json.loads(assume) if isinstance(assume, str) else assume
        assert assume["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
        names = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
        document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=names[0])
        document = document["PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        statements = document["Statement"]
        actions = [a for s in statements for a in as_list(s["Action"])]
        assert actions and not [a for a in actions if "*" in a], actions
        unscoped = [s for s in statements if "*" in as_list(s["Resource"])]
        # These support no resource-level permissions.
        assert {a for s in unscoped for a in as_list(s["Action"])} == {
            "autoscaling:DescribeAutoScalingInstances",
            "ec2:DescribeSpotPriceHistory",
            "ecr:GetAuthorizationToken",
        }
        # Images: pulled from this account's repositories only, never pushed.
        ecr = {a: as_list(s["Resource"]) for s in statements for a in as_list(s["Action"])}
        ecr = {a: r for a, r in ecr.items() if a.startswith("ecr:") and "*" not in r}
        assert ecr == {
            f"ecr:{action}": ["arn:aws:ecr:*:123456789012:repository/*"]
            for action in ("BatchCheckLayerAvailability", "BatchGetImage", "GetDownloadUrlForLayer")
        }
        for statement in statements:  # scaling and terminating: this environment's only
            if {
                "autoscaling:SetDesiredCapacity",
                "autoscaling:TerminateInstanceInAutoScalingGroup",
            } & set(as_list(statement["Action"])):
                (condition,) = statement["Condition"]["StringEquals"].items()
                assert condition[0].endswith("ResourceTag/gridctl:environment"), statement
                assert as_list(condition[1]) == ["moto-a"], statement
        profile = iam.get_instance_profile(InstanceProfileName=env_a["instance_profile_name"])
        assert profile["InstanceProfile"]["Roles"][0]["RoleName"] == role["RoleName"]

        # The launch template: IMDSv2 required, metadata tags on, encrypted gp3 root, the
        # environment's profile, security group and AMI.
        version = ec2.describe_launch_template_versions(
            LaunchTemplateId=machine["launch_template_id"], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]
        data = version["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
        assert data["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert data["IamInstanceProfile"]["Name"] == env_a["instance_profile_name"]
        assert data["ImageId"] == ami
        assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
        assert "InstanceType" not in data  # spot: the overrides choose
        assert data["NetworkInterfaces"][0]["Groups"] == [env_a["security_group_id"]]
        root = data["BlockDeviceMappings"][0]
        assert root["DeviceName"] == "/dev/sda1"
        assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["VolumeType"] == "gp3"
        expected_user_data = render_user_data({**GOLDEN_VALUES, "bucket": bucket})
        assert base64.b64decode(data["UserData"]).decode() == expected_user_data

        # The group: all spot over both types, capacity rebalancing, tags propagated.
        (group,) = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[machine["autoscaling_group_name"]]
        )["AutoScalingGroups"]
        mixed = group["MixedInstancesPolicy"]
        overrides = [o["InstanceType"] for o in mixed["LaunchTemplate"]["Overrides"]]
        assert overrides == ["g4dn.xlarge", "g5.xlarge"]
        distribution = mixed["InstancesDistribution"]
        assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
        assert distribution["OnDemandBaseCapacity"] == 0
        assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
        assert group["CapacityRebalance"] is True
        assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 1, 1)
        assert set(group["VPCZoneIdentifier"].split(",")) == set(env_a["subnet_ids"])
        tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]}
        assert tags["gridctl:environment"] == ("moto-a", True)
        assert tags["gridctl:run"] == ("swift-otter-7", True)
        assert tags["gridctl:experiment"] == ("swift-otter-7-exp0", True)
        assert tags["gridctl:bucket"] == (bucket, True)
        assert tags["Name"] == ("swift-otter-7-exp0", True)
        assert tags["team"] == ("tests", True)

        # moto launched the node, tagged, with the user data rendered from the template.
        reservations = ec2.describe_instances(
            Filters=[
                {"Name": "tag:gridctl:experiment", "Values": ["swift-otter-7-exp0"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        instances = [i for r in reservations for i in r["Instances"]]
        assert len(instances) == 1
        user_data = ec2.describe_instance_attribute(
            InstanceId=instances[0]["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
        assert base64.b64decode(user_data).decode() == expected_user_data

        # On demand: the first type in the launch template, no mixed instances policy.
        data = ec2.describe_launch_template_versions(
            LaunchTemplateId=on_demand["launch_template_id"], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert data["InstanceType"] == "c5.large"
        assert data["ImageId"] == RESOLVED_AMI
        assert data["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        (group,) = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[on_demand["autoscaling_group_name"]]
        )["AutoScalingGroups"]
        assert "MixedInstancesPolicy" not in group
        assert group["LaunchTemplate"]["LaunchTemplateId"] == on_demand["launch_template_id"]
        assert group["CapacityRebalance"] is False
        assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 2, 2)
        # A gang's nodes stay where they are: AWS does not move them between zones.
        assert [p["ProcessName"] for p in group["SuspendedProcesses"]] == ["AZRebalance"]
        assert on_demand["placement_group_name"] is None
        assert machine["placement_group_name"] is None  # one node
        reservations = ec2.describe_instances(
            Filters=[
                {"Name": "tag:gridctl:experiment", "Values": ["calm-heron-2-exp0"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        types = [i["InstanceType"] for r in reservations for i in r["Instances"]]
        assert types == ["c5.large", "c5.large"]  # launched from a resolve:ssm: template

    with explained(existing):
        # The existing network is used as given; the module created no network of its own.
        assert env_b["vpc_id"] == given_vpc
        assert env_b["subnet_ids"] == given_subnets
        # In the user's VPC: no S3 endpoint of ours, and the subnets decide on public IPs.
        assert env_b["s3_vpc_endpoint_id"] is None and env_b["node_public_ip"] is False
        assert (
            ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [given_vpc]}])[
                "VpcEndpoints"
            ]
            == []
        )
        group = ec2.describe_security_groups(GroupIds=[env_b["security_group_id"]])
        assert group["SecurityGroups"][0]["VpcId"] == given_vpc
        assert members_only(group["SecurityGroups"][0]), group
        network = ("aws_vpc", "aws_subnet", "aws_internet_gateway", "aws_route_table")
        network += ("aws_vpc_endpoint",)
        assert not [r for r in existing.state() if r.split(".")[2].startswith(network)]
        tagged = ec2.describe_vpcs(
            Filters=[{"Name": "tag:gridctl:environment", "Values": ["moto-b"]}]
        )
        assert tagged["Vpcs"] == []
        # Without the TLS-only policy (a plain-HTTP test endpoint), objects can be written.
        with pytest.raises(botocore.exceptions.ClientError):
            s3.get_bucket_policy(Bucket=env_b["bucket_name"])
        s3.put_object(Bucket=env_b["bucket_name"], Key="runs/swift-otter-7/log.txt", Body=b"x")

    # That leftover object must not block `gridctl down` (force_destroy).
    both(roots, "destroy", "-auto-approve", "-input=false", "-no-color")

    with explained(*roots):
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert not buckets & {env_a["bucket_name"], env_b["bucket_name"]}
        assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
        assert ec2.describe_launch_templates()["LaunchTemplates"] == []
        running = ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )["Reservations"]
        assert running == []
        assert not ec2.describe_vpcs(
            Filters=[{"Name": "tag:gridctl:environment", "Values": ["moto-a"]}]
        )["Vpcs"]
        # What the module did not create, it leaves alone.
        assert ec2.describe_vpcs(VpcIds=[given_vpc])["Vpcs"]
        assert len(ec2.describe_subnets(SubnetIds=given_subnets)["Subnets"]) == 2


def test_modules_refuse_bad_inputs_at_plan(aws_env, moto, tmp_path):
    """Mistakes AWS would only report late (or never) fail the plan with a clear message:
    invalid values first (Terraform stops there), then the cross-input checks."""
    ec2 = clients(aws_env)("ec2")
    given_vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    foreign_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.9.0.0/24")["Subnet"]
    foreign_subnet = foreign_subnet["SubnetId"]

    def environment(**values) -> dict:
        return {
            "source": str(MODULES / "environment"),
            "name": "moto-c",
            "bucket_name": "gridctl-moto-c-bucket",
            "ami_id": "ami-12c6146b",
            **values,
        }

    cases: list[tuple[Terraform, tuple[str, ...]]] = []

    def plan_fails(name: str, modules: dict, *messages: str) -> None:
        tf = Terraform(tmp_path / name, aws_env)
        write_root(tf.workdir, moto, modules)
        tf.init()
        cases.append((tf, messages))

    plan_fails(
        "bad-values",
        {
            "environment": environment(name="Not_Valid", bucket_name="Bad..Bucket", az_count=7),
            "machine": {
                "source": str(MODULES / "machine"),
                "name": "has spaces",
                "environment": "moto-c",
                "run": "r",
                "machine": "r-exp0",
                "bucket": "gridctl-moto-c-bucket",
                "region": REGION,
                "ami_id": "ami-12c6146b",
                "instance_types": [],
                "node_count": 0,
                "subnet_ids": ["subnet-0123456789abcdef0"],
                "security_group_id": "sg-0123456789abcdef0",
                "instance_profile_name": "p",
                "root_volume_size": 4,
                "agent_wheel_key": "wheels/not-a-wheel.tar.gz",
                "max_lifetime_hours": 0,
            },
        },
        "The name must be 1 to 24 characters",
        "The bucket_name must be a valid S3 bucket name",
        "The az_count must be a whole number from 1 to 6",
        "The name must be 1 to 128 characters",
        "The instance_types list must hold at least one instance type",
        "The node_count must be a whole number of at least 1",
        "The root_volume_size must be a whole number of GiB from 8 to 16384",
        "The agent_wheel_key must be an S3 key",
        "The max_lifetime_hours must be a whole number of hours from 1 to 8760",
    )
    plan_fails(
        "bad-network",
        {
            "vpc_without_subnets": environment(vpc_id=given_vpc),
            "subnet_elsewhere": environment(vpc_id=given_vpc, subnet_ids=[foreign_subnet]),
        },
        "subnet_ids is required (non-empty) when vpc_id is set",
        f"Subnet {foreign_subnet} is in {other_vpc}, not in vpc_id {given_vpc}",
    )

    # Both plans at once (each spends seconds loading the provider).
    plans = [(tf, len(tf.text()), tf.start("plan", "-input=false", "-no-color")) for tf, _ in cases]
    for (tf, start, proc), (_, messages) in zip(plans, cases, strict=True):
        assert tf.finish(proc, check=False) != 0, f"the plan passed{tf.report()}"
        output = re.sub(r"\s+", " ", tf.text()[start:])
        missing = [message for message in messages if message not in output]
        assert not missing, f"{missing} not in the plan output{tf.report()}"
