"""`gridctl up` / `gridctl down`: the shared environment, as named and logged steps.

The environment's Terraform state lives in its own bucket (``gridctl/environment.tfstate``),
so a teammate with the same account, region and name finds the bucket, joins the same
state and sees the same runs. The very first ``up`` cannot keep state in a bucket that does
not exist yet: it applies with local state, then migrates it into the bucket; ``down``
migrates it back out before destroying the bucket that held it.

Here an environment is always that deployment (bucket, network, node role); the variables
Terraform's process runs with are its ``env``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gridctl.infra import amis, rootmodule, terraform
from gridctl.infra.aws import Account, endpoint_url
from gridctl.infra.errors import InfraError

ENV_STATE_KEY = "gridctl/environment.tfstate"
RUNS_STATE_KEY = "gridctl/runs.tfstate"
INPUTS_KEY = "gridctl/environment.json"

Step = Callable[[str], None]
"""Told the name of each step as it starts (the CLI shows them)."""


@dataclass(frozen=True)
class EnvironmentRecord:
    """What this machine remembers of an environment (the truth is in the bucket)."""

    name: str
    region: str
    profile: str | None
    bucket: str
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    @property
    def environment_inputs(self) -> rootmodule.EnvironmentInputs:
        """Exactly what ``up`` applied, so ``down`` destroys the same configuration."""
        return rootmodule.EnvironmentInputs(
            name=self.name,
            bucket=self.bucket,
            ami_id=self.inputs.get("ami_id"),
            vpc_id=self.inputs.get("vpc_id"),
            subnet_ids=tuple(self.inputs.get("subnet_ids", ())),
            deny_insecure_transport=self.inputs.get("deny_insecure_transport", True),
        )

    @property
    def own_image(self) -> amis.Image | None:
        """The AMI given to ``up --ami`` (an environment made before AMIs were picked per
        instance type recorded the default one here too), else None."""
        ami = self.inputs.get("ami_id")
        if ami is None:
            return None
        return amis.Image(ami, self.inputs.get("root_device_name", amis.DEFAULT_ROOT_DEVICE))

    @property
    def target(self) -> rootmodule.Target:
        return rootmodule.Target(self.region, self.profile, endpoint_url())

    @property
    def account(self) -> Account:
        return Account(self.profile, self.region)


def bucket_name(name: str, account_id: str, region: str) -> str:
    return f"gridctl-{name}-{account_id}-{region}"


def load(home: Path) -> EnvironmentRecord | None:
    try:
        data = json.loads((home / "settings.json").read_text())["aws"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return EnvironmentRecord(**data)


def save(home: Path, record: EnvironmentRecord | None) -> None:
    path = home / "settings.json"
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        settings = {}
    if record is None:
        settings.pop("aws", None)
        settings["default_cloud"] = "local"
    else:
        settings["aws"] = asdict(record)
        settings["default_cloud"] = "aws"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=2))
    tmp.replace(path)


def terraform_dir(home: Path, name: str) -> Path:
    return home / "terraform" / name


def _workdir(home: Path, record: EnvironmentRecord) -> terraform.Workdir:
    base = terraform_dir(home, record.name)
    return terraform.Workdir(
        path=base / "environment",
        log_path=base / "terraform.log",
        env=record.account.process_env(),
    )


def _write_root(
    workdir: terraform.Workdir, record: EnvironmentRecord, backend: dict | None
) -> None:
    root = rootmodule.environment_root(record.target, record.environment_inputs, backend)
    rootmodule.write_root(workdir.path, root)


def root_device_name(account: Account, ami: str) -> str:
    """The AMI's root device, which the launch templates size and encrypt; refuses an AMI
    this account cannot see in the region before anything is made."""
    import botocore.exceptions

    try:
        images = account.client("ec2").describe_images(ImageIds=[ami])["Images"]
    except botocore.exceptions.ClientError as exc:
        raise InfraError(f"--ami {ami}: {exc}") from None
    if not images:
        raise InfraError(f"--ami {ami}: no such AMI in {account.region}")
    return images[0].get("RootDeviceName") or amis.DEFAULT_ROOT_DEVICE


def _bucket_exists(account: Account, bucket: str) -> bool:
    import botocore.exceptions

    try:
        account.client("s3").head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise InfraError(f"bucket {bucket} exists but is not yours: {exc}") from None
    return True


def _read_inputs(account: Account, bucket: str) -> dict:
    import botocore.exceptions

    try:
        body = account.client("s3").get_object(Bucket=bucket, Key=INPUTS_KEY)["Body"].read()
    except botocore.exceptions.ClientError:
        return {}
    return json.loads(body)


def _empty_bucket(account: Account, bucket: str) -> None:
    """Delete every object version, so destroying the bucket is one call, not a retry loop."""
    s3 = account.client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})


def up(
    home: Path,
    account: Account,
    name: str,
    *,
    ami: str | None,
    vpc_id: str | None,
    subnet_ids: tuple[str, ...],
    step: Step,
    progress: terraform.Progress | None = None,
    deny_insecure_transport: bool = True,
) -> EnvironmentRecord:
    """``deny_insecure_transport=False`` drops the bucket's TLS-only policy: only for
    emulators (moto) that treat a conditional deny as unconditional."""
    step("checking credentials, region and Terraform")
    terraform.check_version()
    account.check_region()
    bucket = bucket_name(name, account.account_id, account.region)
    record = EnvironmentRecord(name, account.region, account.profile, bucket)
    joining = _bucket_exists(account, bucket)
    # A teammate's `up` keeps what the creator chose unless told otherwise.
    chosen = _read_inputs(account, bucket) if joining else {}
    if ami:
        chosen.update(ami_id=ami, root_device_name=root_device_name(account, ami))
    if vpc_id:
        chosen.update(vpc_id=vpc_id, subnet_ids=list(subnet_ids))
    if not deny_insecure_transport:
        chosen["deny_insecure_transport"] = False
    record = EnvironmentRecord(name, account.region, account.profile, bucket, inputs=chosen)
    workdir = _workdir(home, record)
    in_bucket = rootmodule.s3_backend(record.target, bucket, ENV_STATE_KEY)
    if joining:
        step(f"joining environment {name} (state in s3://{bucket})")
        _write_root(workdir, record, in_bucket)
        terraform.run(workdir, "init", "-reconfigure", progress=progress)
        terraform.run(workdir, "apply", "-auto-approve", progress=progress)
    else:
        step(f"creating environment {name} (bucket s3://{bucket})")
        # This machine may have used an environment of that name that a teammate destroyed:
        # its backend setting names the bucket that is gone, with the state that was in it,
        # and Terraform refuses to apply until that setting is dropped.
        (workdir.path / ".terraform" / "terraform.tfstate").unlink(missing_ok=True)
        _write_root(workdir, record, None)
        terraform.run(workdir, "init", "-reconfigure", progress=progress)
        terraform.run(workdir, "apply", "-auto-approve", progress=progress)
        step("moving the environment's Terraform state into its bucket")
        _write_root(workdir, record, in_bucket)
        terraform.run(workdir, "init", "-migrate-state", "-force-copy", progress=progress)
        for leftover in ("terraform.tfstate", "terraform.tfstate.backup"):
            (workdir.path / leftover).unlink(missing_ok=True)
    step("reading the environment's outputs")
    outputs = json.loads(terraform.run(workdir, "output", "-json"))
    record = EnvironmentRecord(
        name,
        account.region,
        account.profile,
        bucket,
        inputs=chosen,
        outputs={k: v["value"] for k, v in outputs.items()},
    )
    account.client("s3").put_object(Bucket=bucket, Key=INPUTS_KEY, Body=json.dumps(chosen).encode())
    save(home, record)
    return record


def down(
    home: Path,
    record: EnvironmentRecord,
    *,
    step: Step,
    progress: terraform.Progress | None = None,
) -> None:
    """Destroy everything ``up`` made; the caller has already removed every run."""
    workdir = _workdir(home, record)
    in_bucket = rootmodule.s3_backend(record.target, record.bucket, ENV_STATE_KEY)
    step("reading the environment's state from its bucket")
    _write_root(workdir, record, in_bucket)
    terraform.run(workdir, "init", "-reconfigure", progress=progress)
    step("moving the state out of the bucket that is about to go")
    _write_root(workdir, record, None)
    terraform.run(workdir, "init", "-migrate-state", "-force-copy", progress=progress)
    step(f"emptying s3://{record.bucket}")
    _empty_bucket(record.account, record.bucket)
    step(f"destroying environment {record.name}")
    terraform.run(workdir, "destroy", "-auto-approve", progress=progress)
    _forget(home, record)


def forget(
    home: Path,
    record: EnvironmentRecord,
    *,
    step: Step,
    progress: terraform.Progress | None = None,
) -> None:
    """This machine stops using an environment whose bucket is gone (a teammate destroyed
    it). State left on this machine means our own ``up`` or ``down`` stopped halfway, with
    the state outside the bucket: what it holds is destroyed first, so nothing leaks."""
    workdir = _workdir(home, record)
    if (workdir.path / "terraform.tfstate").exists():
        step(f"destroying what is left of environment {record.name}")
        terraform.run(workdir, "destroy", "-auto-approve", progress=progress)
    step(f"forgetting environment {record.name} on this machine")
    _forget(home, record)


def _forget(home: Path, record: EnvironmentRecord) -> None:
    shutil.rmtree(terraform_dir(home, record.name), ignore_errors=True)
    save(home, None)
