"""The root modules gridctl applies, as Terraform JSON (``*.tf.json``): built as data,
never as HCL text. One for the environment (``gridctl up``), one per run.

Every string that comes from outside goes through ``literal`` so that Terraform's
``${...}``/``%{...}`` template syntax in it stays text.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.contract import ENVIRONMENT_TAG
from gridctl.infra.amis import PYTORCH, Image

# The S3 backend's use_lockfile (state locking without DynamoDB) needs Terraform 1.10.
TERRAFORM_VERSION = ">= 1.10"
# One major version: a new major of the provider may change what the modules mean.
PROVIDER_VERSION = "~> 5.0"
# Every service the provider and our modules talk to, pointed at AWS_ENDPOINT_URL when set.
SERVICES = ("autoscaling", "ec2", "iam", "s3", "sts", "ssm", "dynamodb")


def literal(value: str) -> str:
    return value.replace("${", "$${").replace("%{", "%%{")


def modules_dir() -> Path:
    return Path(str(importlib.resources.files("gridctl.modules")))


@dataclass(frozen=True)
class Target:
    """Where Terraform acts: the region, the profile, and a test endpoint if any."""

    region: str
    profile: str | None = None
    endpoint_url: str | None = None


def provider(target: Target) -> dict:
    config: dict = {"region": literal(target.region)}
    if target.profile:
        config["profile"] = literal(target.profile)
    if target.endpoint_url:
        url = literal(target.endpoint_url)
        config.update(
            endpoints={service: url for service in SERVICES},
            s3_use_path_style=True,
            skip_credentials_validation=True,
            skip_requesting_account_id=True,
            skip_metadata_api_check=True,
        )
    return {"aws": config}


def s3_backend(target: Target, bucket: str, key: str) -> dict:
    """State in the environment's bucket, locked with S3 conditional writes (no DynamoDB)."""
    config: dict = {
        "bucket": literal(bucket),
        "key": literal(key),
        "region": literal(target.region),
        "encrypt": True,
        "use_lockfile": True,
    }
    if target.profile:
        config["profile"] = literal(target.profile)
    if target.endpoint_url:
        config.update(
            endpoints={"s3": literal(target.endpoint_url)},
            use_path_style=True,
            skip_credentials_validation=True,
            skip_region_validation=True,
            skip_requesting_account_id=True,
            skip_metadata_api_check=True,
        )
    return {"s3": config}


def terraform_block(backend: dict | None) -> dict:
    block: dict = {
        "required_version": TERRAFORM_VERSION,
        "required_providers": {"aws": {"source": "hashicorp/aws", "version": PROVIDER_VERSION}},
    }
    if backend is not None:
        block["backend"] = backend
    return block


@dataclass(frozen=True)
class EnvironmentInputs:
    name: str
    bucket: str
    ami_id: str | None
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    deny_insecure_transport: bool = True


ENVIRONMENT_OUTPUTS = (
    "bucket_name",
    "vpc_id",
    "subnet_ids",
    "security_group_id",
    "instance_profile_name",
    "node_role_arn",
    "ami_id",
    "region",
    "node_public_ip",
)


def environment_root(target: Target, inputs: EnvironmentInputs, backend: dict | None) -> dict:
    module: dict = {
        "source": str(modules_dir() / "environment"),
        "name": literal(inputs.name),
        "bucket_name": literal(inputs.bucket),
        "force_destroy": True,
        "deny_insecure_transport": inputs.deny_insecure_transport,
        "tags": {ENVIRONMENT_TAG: literal(inputs.name)},
    }
    if inputs.ami_id:
        module["ami_id"] = literal(inputs.ami_id)
    if inputs.vpc_id:
        module["vpc_id"] = literal(inputs.vpc_id)
        module["subnet_ids"] = [literal(s) for s in inputs.subnet_ids]
    return {
        "terraform": terraform_block(backend),
        "provider": provider(target),
        "module": {"environment": module},
        "output": {
            name: {"value": f"${{module.environment.{name}}}"} for name in ENVIRONMENT_OUTPUTS
        },
    }


@dataclass(frozen=True)
class MachineInputs:
    """One Auto Scaling group: a machine running one experiment, or several that share it."""

    name: str
    machine: str
    instance_types: tuple[str, ...]
    node_count: int = 1
    """The group's instances: a gang's K nodes (``MachineSpec.nodes``)."""


@dataclass(frozen=True)
class RunInputs:
    """``auto_resume`` turns on a spot group's capacity rebalancing, which ends instances
    early: only a run that resumes gains from that."""

    environment: str
    run: str
    use_spot: bool
    agent_wheel_key: str
    outputs: Mapping[str, object]
    groups: tuple[MachineInputs, ...]
    scratch_size: int = 0
    subnet_ids: tuple[str, ...] = ()
    """The subnets to launch in; empty: all of the environment's."""
    disk_size: int | None = None
    """GiB of each instance's root disk; None keeps the module's default."""
    max_lifetime_hours: int = 168
    """Hours after which a node fails what it still runs and scales its group to zero."""
    auto_resume: bool = False
    image: Image = PYTORCH
    placement_group: bool = True
    """A cluster placement group for each machine of several nodes; False where there are
    none (emulators)."""


def run_root(target: Target, inputs: RunInputs, backend: dict) -> dict:
    """One ``machine`` module instance per group, keyed by machine name (``for_each`` keeps
    the module call, and so the shared Terraform data dir, the same for every run)."""
    outputs = inputs.outputs
    groups = {
        literal(g.machine): {
            "name": literal(g.name),
            "instance_types": [literal(t) for t in g.instance_types],
            "node_count": g.node_count,
        }
        for g in inputs.groups
    }
    module = {
        "source": str(modules_dir() / "machine"),
        "for_each": groups,
        "name": "${each.value.name}",
        "machine": "${each.key}",
        "instance_types": "${each.value.instance_types}",
        "node_count": "${each.value.node_count}",
        "environment": literal(inputs.environment),
        "run": literal(inputs.run),
        "bucket": literal(str(outputs["bucket_name"])),
        "region": literal(target.region),
        "ami_id": literal(inputs.image.image_id),
        "root_device_name": literal(inputs.image.root_device_name),
        "use_spot": inputs.use_spot,
        "capacity_rebalance": inputs.auto_resume,
        "create_placement_group": inputs.placement_group,
        # null: the subnet decides. Environments made before this output: public, as then.
        "associate_public_ip_address": True if outputs.get("node_public_ip", True) else None,
        "subnet_ids": [literal(s) for s in inputs.subnet_ids or outputs["subnet_ids"]],  # type: ignore[attr-defined]
        "security_group_id": literal(str(outputs["security_group_id"])),
        "instance_profile_name": literal(str(outputs["instance_profile_name"])),
        "agent_wheel_key": literal(inputs.agent_wheel_key),
        "scratch_size": inputs.scratch_size,
        **({"root_volume_size": inputs.disk_size} if inputs.disk_size is not None else {}),
        "max_lifetime_hours": inputs.max_lifetime_hours,
        "tags": {ENVIRONMENT_TAG: literal(inputs.environment)},
    }
    return {
        "terraform": terraform_block(backend),
        "provider": provider(target),
        "module": {"machine": module},
        # Runs applied before the module was renamed from ``experiment`` hold their groups
        # at module.experiment[...]: moved, they keep them instead of replacing them.
        "moved": [{"from": "module.experiment", "to": "module.machine"}],
    }


def write_root(directory: Path, root: dict) -> bool:
    """Whether the file changed: a root whose module calls or their sources changed needs
    ``terraform init`` again."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "main.tf.json"
    text = json.dumps(root, indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
