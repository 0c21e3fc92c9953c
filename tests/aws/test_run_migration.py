"""A run applied by a gridctl from before the ``experiment`` module became ``machine`` keeps
its groups, launch templates and instances when this gridctl applies it again (as
``gridctl delete`` of some of its experiments does): the old code, taken from git, applies
the run against moto into a shared Terraform data dir and the run's state in the bucket;
this code then plans (nothing destroyed, created or replaced; everything moved) and applies
it, and AWS still holds the same resources."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from io import BytesIO
from pathlib import Path

import pytest

from gridctl.infra import amis, rootmodule, runs, terraform
from gridctl.infra.environment import EnvironmentRecord

from .test_modules import MODULES, REGION, WHEEL_KEY, Terraform, clients, write_root

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform")

REPO = Path(__file__).resolve().parents[2]
BEFORE_RENAME = "bf40185ba5c9d042126030a318c2eb0b507242ff"
"""The last commit whose run roots called ``module "experiment"`` (infra/render.py)."""
BEFORE_GANGS = "e2ba09dc1237be10989164e349171cb39c3fe552"
"""The last commit before machines could have several nodes (placement groups, the
environment's members-only ingress rule)."""
ENVIRONMENT = "mig"
RUN = "calm-heron-2"
MACHINES = (f"{RUN}-exp0", f"{RUN}-exp1")

# What the old gridctl ran: its own infra.runs.apply over its own infra.render root.
OLD_APPLY = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from gridctl.infra import amis, environment, render, runs

    home, record, run, ami, wheel_key, *machines = sys.argv[1:]
    record = environment.EnvironmentRecord(**json.loads(record))
    inputs = render.RunInputs(
        environment=record.name, run=run, use_spot=False, agent_wheel_key=wheel_key,
        outputs=record.outputs, image=amis.Image(ami, "/dev/sda1"),
        groups=tuple(
            render.ExperimentInputs(f"gridctl-{record.name}-{m}", m, ("t3.micro",))
            for m in machines
        ),
    )
    runs.apply(Path(home), record, inputs)
    print(render.__file__)
    """
)


def old_gridctl(directory: Path, commit: str = BEFORE_RENAME) -> Path:
    """The gridctl packages as of ``commit``, importable from the returned folder (its
    Terraform modules are at ``directory/tree/modules``)."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"needs the git history with {commit[:7]} (a full clone)")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "agent", "cli", "infra", "modules"],
        capture_output=True,
        check=True,
    ).stdout
    tree = directory / "tree"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    package = directory / "site" / "gridctl"
    package.mkdir(parents=True)
    for name in ("agent", "cli", "infra", "modules"):
        (package / name).symlink_to(tree / name)
    return directory / "site"


def environment(aws_env: dict[str, str]) -> tuple[EnvironmentRecord, str]:
    """What ``gridctl up`` would have made, made directly: the state bucket, a subnet, a
    security group and an instance profile; and an AMI moto knows."""
    client = clients(aws_env)
    ec2, iam = client("ec2"), client("iam")
    bucket = f"gridctl-{ENVIRONMENT}-123456789012-{REGION}"
    client("s3").create_bucket(Bucket=bucket)
    vpc = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.5.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="nodes", Description="nodes", VpcId=vpc)
    iam.create_role(RoleName="node", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="node")
    iam.add_role_to_instance_profile(InstanceProfileName="node", RoleName="node")
    outputs = {
        "bucket_name": bucket,
        "subnet_ids": [subnet],
        "security_group_id": group["GroupId"],
        "instance_profile_name": "node",
        "node_public_ip": True,
    }
    record = EnvironmentRecord(ENVIRONMENT, REGION, None, bucket, outputs=outputs)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return record, ami


def inputs(record: EnvironmentRecord, ami: str) -> rootmodule.RunInputs:
    """The same run as OLD_APPLY's, as this gridctl describes it."""
    return rootmodule.RunInputs(
        environment=record.name,
        run=RUN,
        use_spot=False,
        agent_wheel_key=WHEEL_KEY,
        outputs=record.outputs,
        groups=tuple(
            rootmodule.MachineInputs(f"gridctl-{record.name}-{m}", m, ("t3.micro",))
            for m in MACHINES
        ),
        image=amis.Image(ami, "/dev/sda1"),
    )


def resources(aws_env: dict[str, str]) -> dict[str, tuple]:
    """Each group's identity in AWS: its ARN, launch template and instances (all three new
    if Terraform replaced it)."""
    client = clients(aws_env)
    groups = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {
        g["AutoScalingGroupName"]: (
            g["AutoScalingGroupARN"],
            g["LaunchTemplate"]["LaunchTemplateId"],
            sorted(i["InstanceId"] for i in g["Instances"]),
        )
        for g in groups
    }


def test_a_run_applied_before_the_machine_rename_keeps_its_resources(aws_env, tmp_path):
    site = old_gridctl(tmp_path / "old")
    record, ami = environment(aws_env)
    home = tmp_path / "home"

    old = subprocess.run(
        [
            sys.executable,
            "-c",
            OLD_APPLY,
            str(home),
            json.dumps(dataclasses.asdict(record)),
            RUN,
            ami,
            WHEEL_KEY,
            *MACHINES,
        ],
        env={**aws_env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert old.returncode == 0, old.stdout + old.stderr
    assert old.stdout.strip().startswith(str(site)), old.stdout  # the old code, not this one
    before = resources(aws_env)
    assert sorted(before) == [f"gridctl-{ENVIRONMENT}-{m}" for m in MACHINES]
    assert all(instances for _, _, instances in before.values()), before

    # This gridctl's plan of that state, with the same flags as its apply.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_env.items():
            patch.setenv(name, value)
        workdir = runs._workdir(home, record, inputs(record, ami), None)
        terraform.run(workdir, "plan", "-refresh=false", "-out=migration.tfplan")
        shown = json.loads(terraform.run(workdir, "show", "-json", "migration.tfplan"))
        changes = shown["resource_changes"]
        assert changes, shown
        for change in changes:
            address, actions = change["address"], change["change"]["actions"]
            assert "delete" not in actions and "create" not in actions, (address, actions)
            assert address.startswith("module.machine["), address
            assert change.get("previous_address") == address.replace(
                "module.machine[", "module.experiment[", 1
            ), change

        runs.apply(home, record, inputs(record, ami))
        assert resources(aws_env) == before
        state = json.loads(terraform.run(workdir, "show", "-json"))["values"]["root_module"]
        calls = sorted(module["address"] for module in state["child_modules"])
        assert calls == [f'module.machine["{m}"]' for m in MACHINES], calls

        runs.destroy(home, record, inputs(record, ami))
        assert resources(aws_env) == {}


# What the gridctl before gangs did with a run of single-node machines: apply it, or plan it
# and print the plan (its own infra.runs over its own rootmodule root).
BEFORE_GANGS_RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from gridctl.infra import amis, environment, rootmodule, runs, terraform

    action, home, record, run, ami, wheel_key, spot, *machines = sys.argv[1:]
    record = environment.EnvironmentRecord(**json.loads(record))
    inputs = rootmodule.RunInputs(
        environment=record.name, run=run, use_spot=spot == "spot", agent_wheel_key=wheel_key,
        outputs=record.outputs, image=amis.Image(ami, "/dev/sda1"),
        groups=tuple(
            rootmodule.MachineInputs(f"gridctl-{record.name}-{m}", m, ("c5.large",))
            for m in machines
        ),
    )
    if action == "apply":
        runs.apply(Path(home), record, inputs)
        print(rootmodule.__file__)
    else:
        workdir = runs._workdir(Path(home), record, inputs, None)
        terraform.run(workdir, "plan", "-refresh=false", "-out=upgrade.tfplan")
        print(terraform.run(workdir, "show", "-json", "upgrade.tfplan"))
    """
)
UPGRADED_RUNS = ((RUN, False), ("spot-heron-3", True))
"""Single-node runs of the gridctl before gangs: one on demand, one spot."""


def planned(shown: dict) -> dict[str, tuple]:
    """A plan's changes by address: the actions and the planned values, known and unknown."""
    return {
        c["address"]: (c["change"]["actions"], c["change"]["after"], c["change"]["after_unknown"])
        for c in shown["resource_changes"]
    }


def test_runs_and_environments_from_before_gangs_keep_their_resources(aws_env, moto, tmp_path):
    """Upgrading gridctl under running single-node runs and an environment made before gangs:
    this gridctl plans exactly what the old one plans for the same runs (moto's state draws
    the same small in-place updates from both; no placement group, nothing created, replaced
    or destroyed), and ``gridctl up`` adds the members-only rule to the same security group
    and the newer rights to the node role's policy, in place, leaving the runs' groups and
    instances as they were."""
    site = old_gridctl(tmp_path / "old", BEFORE_GANGS)
    record, ami = environment(aws_env)
    home = tmp_path / "home"

    # The old environment module, applied; later the same root over this one.
    env_root = Terraform(tmp_path / "environment", aws_env)
    module = {
        "source": str(tmp_path / "old" / "tree" / "modules" / "environment"),
        "name": ENVIRONMENT,
        "bucket_name": "gridctl-upgrade-bucket",
        "force_destroy": True,
        "az_count": 1,
    }
    write_root(env_root.workdir, moto, {"environment": module})
    env_root.init()
    env_apply = env_root.start("apply", "-auto-approve", "-input=false", "-no-color")

    def before_gangs(action: str, run: str, spot: bool) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                BEFORE_GANGS_RUN,
                action,
                str(home),
                json.dumps(dataclasses.asdict(record)),
                run,
                ami,
                WHEEL_KEY,
                "spot" if spot else "on-demand",
                f"{run}-exp0",
                f"{run}-exp1",
            ],
            env={**aws_env, "PYTHONPATH": str(site)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def output(proc: subprocess.Popen) -> str:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
        return out

    # Both runs at once (their workspaces are apart; the shared data dir's init is locked).
    applies = [before_gangs("apply", run, spot) for run, spot in UPGRADED_RUNS]
    for proc in applies:
        assert output(proc).startswith(str(site))  # the old code ran
    env_root.finish(env_apply)
    before = groups_of_any_kind(aws_env)
    assert len(before) == 4 and all(instances for *_, instances in before.values()), before

    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_env.items():
            patch.setenv(name, value)
        for run, spot in UPGRADED_RUNS:
            old = planned(json.loads(output(before_gangs("plan", run, spot))))
            # As a real account renders it: placement groups on.
            inputs = rootmodule.RunInputs(
                environment=record.name,
                run=run,
                use_spot=spot,
                agent_wheel_key=WHEEL_KEY,
                outputs=record.outputs,
                groups=tuple(
                    rootmodule.MachineInputs(f"gridctl-{record.name}-{m}", m, ("c5.large",), 1)
                    for m in (f"{run}-exp0", f"{run}-exp1")
                ),
                image=amis.Image(ami, "/dev/sda1"),
                placement_group=True,
            )
            workdir = runs._workdir(home, record, inputs, None)
            terraform.run(workdir, "plan", "-refresh=false", "-out=upgrade.tfplan")
            new = planned(json.loads(terraform.run(workdir, "show", "-json", "upgrade.tfplan")))
            assert len(new) == 4, new  # a launch template and a group per machine
            assert all(actions in (["no-op"], ["update"]) for actions, *_ in new.values()), new
            assert new == old

    module["source"] = str(MODULES / "environment")
    write_root(env_root.workdir, moto, {"environment": module})
    env_root.init()
    changed = {
        address: change
        for address, change in planned(env_plan(env_root)).items()
        if change[0] != ["no-op"]
    }
    # The node role's policy gains the rights added since (Python environments in the bucket,
    # image pulls from the account's ECR), in place.
    assert sorted(changed) == [
        "module.environment.aws_iam_role_policy.this",
        "module.environment.aws_security_group.this",
    ], changed
    actions, policy, _ = changed["module.environment.aws_iam_role_policy.this"]
    assert actions == ["update"]
    sids = {s.get("Sid") for s in json.loads(policy["policy"])["Statement"]}
    assert {"ShareVenvs", "LogInToEcr", "PullImagesOfThisAccount"} <= sids, sids
    actions, after, _ = changed["module.environment.aws_security_group.this"]
    assert actions == ["update"]
    (rule,) = after["ingress"]
    assert rule["self"] is True and not rule["cidr_blocks"], rule
    env_root.run("apply", "-auto-approve", "-input=false", "-no-color")
    (group,) = clients(aws_env)("ec2").describe_security_groups(GroupIds=[after["id"]])[
        "SecurityGroups"
    ]
    assert [p["UserIdGroupPairs"][0]["GroupId"] for p in group["IpPermissions"]] == [after["id"]]
    assert groups_of_any_kind(aws_env) == before


def env_plan(tf: Terraform) -> dict:
    tf.run("plan", "-input=false", "-no-color", "-out=upgrade.tfplan")
    shown = subprocess.run(
        ["terraform", "show", "-json", "upgrade.tfplan"],
        cwd=tf.workdir,
        env=tf.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)


def groups_of_any_kind(aws_env: dict[str, str]) -> dict[str, tuple]:
    """Each group's identity: its ARN, launch template (or mixed instances policy) and
    instances (all new if Terraform replaced it)."""
    client = clients(aws_env)
    found = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {
        g["AutoScalingGroupName"]: (
            g["AutoScalingGroupARN"],
            (
                g.get("LaunchTemplate")
                or g["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
            )["LaunchTemplateId"],
            sorted(i["InstanceId"] for i in g["Instances"]),
        )
        for g in found
    }
