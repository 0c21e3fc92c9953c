"""A run's compute as one Terraform apply.

Every run's root module has the same backend block and the same single ``machine``
module call (``for_each`` over its groups), so all runs share one initialized Terraform
data dir (``TF_DATA_DIR``: providers, modules, backend) and differ only in their workspace
(``TF_WORKSPACE`` = the run name, state at ``env:/<run>/gridctl/runs.tfstate`` in the
bucket, locked by S3 conditional writes). A run therefore costs one ``terraform apply``,
not init + plan + apply; the data dir is initialized once per machine and environment.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

from gridctl.agent.core.contract import wheel_key
from gridctl.infra import rootmodule, terraform
from gridctl.infra.environment import RUNS_STATE_KEY, EnvironmentRecord, terraform_dir

LOCK_FILE = ".terraform.lock.hcl"
PARALLELISM = 64
"""Resources Terraform creates or destroys at once. A run's groups are independent of each
other and each waits seconds on the provider (a launch template's is about 6 s): at
Terraform's default of 10, a 32-experiment run waits through four rounds of them. The cap
keeps a big sweep within the EC2 API's request rates (the provider retries a throttled call)."""


def _base(home: Path, record: EnvironmentRecord) -> Path:
    return terraform_dir(home, record.name) / "runs"


def state_key(run: str) -> str:
    return f"env:/{run}/{RUNS_STATE_KEY}"


def _backend(record: EnvironmentRecord) -> dict:
    return rootmodule.s3_backend(record.target, record.bucket, RUNS_STATE_KEY)


def _prepared(home: Path, record: EnvironmentRecord, progress) -> Path:
    """The shared data dir, initialized once (under a lock: runs may start concurrently),
    and again when the seed's root changes: a data dir initialized by an older gridctl
    knows other module calls (``experiment`` before ``machine``) or another modules folder."""
    base = _base(home, record)
    data_dir = base / ".data"
    seed = base / ".seed"
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        empty = rootmodule.RunInputs(
            record.name, "seed", False, wheel_key("none"), record.outputs, ()
        )
        changed = rootmodule.write_root(
            seed, rootmodule.run_root(record.target, empty, _backend(record))
        )
        if changed or not (seed / LOCK_FILE).exists():
            workdir = terraform.Workdir(
                seed, base / "terraform.log", data_dir, env=record.account.process_env()
            )
            terraform.run(workdir, "init", "-reconfigure", progress=progress)
    return data_dir


def _workdir(home: Path, record: EnvironmentRecord, inputs: rootmodule.RunInputs, progress):
    data_dir = _prepared(home, record, progress)
    base = _base(home, record)
    path = base / inputs.run
    rootmodule.write_root(path, rootmodule.run_root(record.target, inputs, _backend(record)))
    shutil.copyfile(base / ".seed" / LOCK_FILE, path / LOCK_FILE)
    return terraform.Workdir(
        path,
        path / "terraform.log",
        data_dir,
        workspace=inputs.run,
        env=record.account.process_env(),
    )


def apply(home: Path, record: EnvironmentRecord, inputs: rootmodule.RunInputs, progress=None):
    """Bring the run's groups to its inputs: create them, or destroy those of deleted
    machines. Nothing to refresh: only gridctl changes them, and the module ignores the
    capacity the agents set."""
    workdir = _workdir(home, record, inputs, progress)
    terraform.run(
        workdir,
        "apply",
        "-auto-approve",
        "-refresh=false",
        f"-parallelism={PARALLELISM}",
        progress=progress,
    )


def destroy(home: Path, record: EnvironmentRecord, inputs: rootmodule.RunInputs, progress=None):
    """Remove everything the run's state holds; the state object itself is left to delete."""
    workdir = _workdir(home, record, inputs, progress)
    terraform.run(
        workdir, "destroy", "-auto-approve", f"-parallelism={PARALLELISM}", progress=progress
    )
    shutil.rmtree(workdir.path, ignore_errors=True)
