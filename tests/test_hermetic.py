"""The suite never touches the user's gridctl, Terraform or AWS setup, whatever the shell
exports: a local and an AWS end-to-end test run in a pytest subprocess whose environment
points every such variable, and HOME, at a decoy that must come out unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws.emulator import provider_mirror

ROOT = Path(__file__).resolve().parents[1]
# Explicit test ids, never this file: the subprocess must not recurse into this test.
SELECTION = (
    "tests/test_local_e2e.py::test_sweep_runs_every_combination_with_its_params",
    # The cheapest test that does `gridctl up` (twice) and runs through the `cloud`
    # fixture, the path whose environment once replaced each test's private GRIDCTL_HOME
    # with the user's.
    "tests/aws/test_aws_e2e.py::test_up_again_changes_nothing_and_duplicates_nothing",
)

pytestmark = [pytest.mark.e2e, pytest.mark.weight(30)]  # a pytest run of an AWS test


def aws_record(bucket: str) -> dict:
    return {
        "aws": {
            "name": "default",
            "region": "eu-west-3",
            "profile": "decoy",
            "bucket": bucket,
            "inputs": {"ami_id": "ami-0decoy0decoy0dec"},
            "outputs": {"bucket_name": bucket, "region": "eu-west-3", "subnet_ids": []},
        },
        "default_cloud": "aws",
    }


def decoy_setup(root: Path) -> dict[str, str]:
    """A user's gridctl, Terraform and AWS files under root, and the variables naming them."""
    files = {
        "gridctl/settings.json": json.dumps(aws_record("gridctl-team-bucket")),
        "gridctl/terraform/default/environment/terraform.tfstate": '{"version": 4}\n',
        "home/.gridctl/settings.json": json.dumps(aws_record("gridctl-home-bucket")),
        "home/.aws/config": "[default]\nregion = eu-west-3\n[profile decoy]\nregion = eu-west-3\n",
        "home/.aws/credentials": "[decoy]\naws_access_key_id = AKIADECOY\n"
        "aws_secret_access_key = decoy\n",
        "home/.terraformrc": 'plugin_cache_dir = "/nonexistent"\n',
        "tf-data/terraform.tfstate": '{"version": 3, "backend": {"type": "local"}}\n',
        "tf-plugins/README": "the user's plugin cache\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return {
        "HOME": str(root / "home"),
        "GRIDCTL_HOME": str(root / "gridctl"),
        "GRIDCTL_BUCKET_TLS_POLICY": "on",
        "AWS_PROFILE": "decoy",
        "AWS_DEFAULT_PROFILE": "decoy",
        "AWS_CONFIG_FILE": str(root / "home/.aws/config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "home/.aws/credentials"),
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL": "https://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIADECOY",
        "AWS_SECRET_ACCESS_KEY": "decoy",
        "AWS_SESSION_TOKEN": "decoy",
        "TF_DATA_DIR": str(root / "tf-data"),
        "TF_WORKSPACE": "decoy",
        "TF_CLI_CONFIG_FILE": str(root / "home/.terraformrc"),
        "TF_PLUGIN_CACHE_DIR": str(root / "tf-plugins"),
    }


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a directory."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def test_the_suite_leaves_the_users_home_and_settings_untouched(tmp_path: Path):
    if provider_mirror() is None:
        pytest.skip("no Terraform provider mirror on this machine")
    decoy = tmp_path / "decoy"
    env = {**os.environ, **decoy_setup(decoy)}
    before = snapshot(decoy)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-q",
            f"--basetemp={tmp_path / 'inner'}",
            *SELECTION,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    after = snapshot(decoy)
    changed = sorted({path for path, _ in before.items() ^ after.items()})
    assert not changed, f"the suite changed the user's files: {changed}\n{result.stdout[-3000:]}"
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert f"{len(SELECTION)} passed" in result.stdout, result.stdout[-2000:]
