"""`gridctl run --cloud aws` against moto: wall time from submit to every group requested
for 1, 8 and 32 experiments (target: 32/1 <= 1.5), and gridctl's own overhead as a ratio to
a bare `terraform apply` of the same root module (target <= 1.2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import verdict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.aws.emulator import (  # noqa: E402
    aws_environment,
    provider_mirror,
    self_signed,
    start_moto,
    terraform_cli_config,
)

GRIDCTL = str(Path(sys.executable).with_name("gridctl"))
SIZES = (1, 8, 32)
SCALING_TARGET = 1.5
OVERHEAD_TARGET = 1.2


def _timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return time.perf_counter() - start


def _ami(env: dict[str, str]) -> str:
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        verify=env["AWS_CA_BUNDLE"],
        region_name=env["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def _bare_apply(home: Path, run: str, env: dict[str, str]) -> float:
    """The same root module applied by terraform alone, into a fresh workspace."""
    runs_dir = home / "terraform" / "default" / "runs"
    copy = runs_dir / f"{run}-bare"
    shutil.copytree(runs_dir / run, copy)
    (copy / "terraform.log").unlink(missing_ok=True)
    # The same groups must not exist twice: rename them for the copy.
    text = (copy / "main.tf.json").read_text().replace(f"gridctl-default-{run}-", f"bare-{run}-")
    (copy / "main.tf.json").write_text(text)
    bare_env = {**env, "TF_DATA_DIR": str(runs_dir / ".data"), "TF_WORKSPACE": f"{run}-bare"}
    return _timed(
        ["terraform", "apply", "-auto-approve", "-input=false", "-refresh=false", "-no-color"],
        cwd=copy,
        env=bare_env,
    )


def main() -> int:
    mirror = provider_mirror()
    if mirror is None or shutil.which("terraform") is None:
        print("aws run: skipped (no terraform or provider mirror on this machine)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        moto = start_moto(self_signed(base / "tls"))
        try:
            env = aws_environment(moto, terraform_cli_config(base / "tf", mirror), {**os.environ})
            env.update(GRIDCTL_HOME=str(base / "home"), GRIDCTL_BUCKET_TLS_POLICY="off")
            project = base / "project"
            project.mkdir()
            (project / "train.py").write_text("print('hello')\n")
            _timed([GRIDCTL, "up", "--ami", _ami(env)], env=env, cwd=project)
            # The first run initializes the shared Terraform data dir: warm it outside the clock.
            _timed([GRIDCTL, "run", "--name", "warm", "train.py"], env=env, cwd=project)
            times = {}
            for n in SIZES:
                sweep = f"range(0, {n})"
                times[n] = _timed(
                    [GRIDCTL, "run", "--name", f"b{n}", "train.py", "--i", sweep],
                    env=env,
                    cwd=project,
                )
            bare = _bare_apply(base / "home", "b8", env)
        finally:
            moto.stop()
    scaling = times[32] / times[1]
    overhead = times[8] / bare
    listed = ", ".join(f"{n}: {t:.1f} s" for n, t in times.items())
    print(f"aws run (submit to groups requested) {listed}")
    print(f"aws run scaling: 32/1 = {scaling:.2f} {verdict(scaling, SCALING_TARGET)}")
    print(
        f"aws run overhead: gridctl {times[8]:.1f} s / bare terraform apply {bare:.1f} s"
        f" = {overhead:.2f} {verdict(overhead, OVERHEAD_TARGET)}"
    )
    return 0 if scaling <= SCALING_TARGET and overhead <= OVERHEAD_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
