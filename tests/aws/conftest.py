"""The AWS test bench: a real moto server on 127.0.0.1 and real Terraform with the AWS
provider from this machine's filesystem mirror (SPEC section 8)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REGION = "us-east-1"
MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_provider_mirror() -> Path:
    """The folder holding registry.terraform.io (the mirror is its parent)."""
    known = Path("/opt/tf-plugins")
    if (known / "registry.terraform.io").is_dir():
        return known
    found = subprocess.run(
        ["find", "/", "-type", "d", "-name", "registry.terraform.io", "-not", "-path",
         "*/.terraform/*"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if not found:
        pytest.skip("no Terraform provider mirror on this machine")
    return Path(found[0]).parent


@pytest.fixture(scope="session")
def moto_server():
    """One moto server per test process; each test starts from a reset server."""
    port = _free_port()
    proc = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)  # noqa: S310 - loopback
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def moto(moto_server: str) -> str:
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback
    return moto_server


@pytest.fixture(scope="session")
def terraform_cli(tmp_path_factory) -> dict[str, str]:
    """Environment for Terraform: the mirror as the only provider source, a shared cache."""
    root = tmp_path_factory.mktemp("terraform")
    config = root / "cli.tfrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{find_provider_mirror()}"\n  }}\n'
        "}\n"
        f'plugin_cache_dir = "{root / "plugins"}"\n'
    )
    (root / "plugins").mkdir()
    return {"TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}


@pytest.fixture
def aws_env(moto: str, terraform_cli: dict[str, str]) -> dict[str, str]:
    """What a user testing against moto exports: fake credentials and the endpoint."""
    env = {
        **os.environ,
        **terraform_cli,
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    return env
