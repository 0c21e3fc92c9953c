"""The AWS test bench: a real moto server on 127.0.0.1 and real Terraform with the AWS
provider from this machine's filesystem mirror (SPEC section 8)."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
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


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, so moto speaks TLS like AWS does."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "moto.pem", directory / "moto.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def moto_tls(tmp_path_factory) -> Path:
    """The CA file that makes boto3 (AWS_CA_BUNDLE) and Terraform (SSL_CERT_FILE) trust moto.

    TLS matters: the environment's bucket policy denies every request not made over TLS,
    and moto enforces that condition.
    """
    cert, _key = _self_signed(tmp_path_factory.mktemp("tls"))
    os.environ["AWS_CA_BUNDLE"] = str(cert)
    return cert


@pytest.fixture(scope="session")
def moto_server(moto_tls: Path):
    """One moto server per test process; each test starts from a reset server."""
    port = _free_port()
    proc = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port), "-s",
         "-c", str(moto_tls), "-k", str(moto_tls.with_suffix(".key"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(moto_tls))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1, context=context)  # noqa: S310
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
def moto(moto_server: str, moto_tls: Path) -> str:
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    context = ssl.create_default_context(cafile=str(moto_tls))
    urllib.request.urlopen(request, timeout=10, context=context)  # noqa: S310 - loopback
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
def aws_env(moto: str, moto_tls: Path, terraform_cli: dict[str, str]) -> dict[str, str]:
    """What a user testing against moto exports: fake credentials and the endpoint."""
    env = {
        **os.environ,
        **terraform_cli,
        "AWS_ENDPOINT_URL": moto,
        "AWS_CA_BUNDLE": str(moto_tls),
        "SSL_CERT_FILE": str(moto_tls),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    return env


@pytest.fixture
def metadata_service():
    """A started IMDSv2 stand-in with default identity, for tests of IMDS clients."""
    from .imds import MetadataService

    with MetadataService() as service:
        yield service


@pytest.fixture
def nodes(aws_env: dict[str, str], moto: str, tmp_path: Path):
    """Simulated EC2 nodes: every tagged instance moto runs gets the real agent."""
    from .nodes import NodeSimulator

    with NodeSimulator(moto, tmp_path / "nodes", env=aws_env) as simulator:
        yield simulator
