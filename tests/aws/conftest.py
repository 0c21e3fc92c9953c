"""The AWS test bench: moto over TLS on 127.0.0.1 and real Terraform with the AWS provider
from this machine's filesystem mirror (see emulator.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .emulator import (
    aws_environment,
    provider_mirror,
    self_signed,
    start_moto,
    terraform_cli_config,
)


@pytest.fixture(scope="session")
def moto_tls(tmp_path_factory) -> Path:
    """The CA file that makes boto3 (AWS_CA_BUNDLE) and Terraform (SSL_CERT_FILE) trust moto.

    TLS matters: AWS endpoints are TLS, and so the tests exercise the same clients' paths.
    """
    cert = self_signed(tmp_path_factory.mktemp("tls"))
    os.environ["AWS_CA_BUNDLE"] = str(cert)
    return cert


@pytest.fixture(scope="session")
def moto_server(moto_tls: Path, tmp_path_factory):
    """One moto server per test process; each test starts from a reset server. Its request
    recorder is off unless a test starts it (``moto_server.record()``)."""
    server = start_moto(moto_tls, tmp_path_factory.mktemp("moto") / "requests.jsonl")
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server) -> str:
    moto_server.reset()
    return moto_server.url


@pytest.fixture(scope="session")
def terraform_cli(tmp_path_factory) -> dict[str, str]:
    mirror = provider_mirror()
    if mirror is None:
        pytest.skip("no Terraform provider mirror on this machine")
    return terraform_cli_config(tmp_path_factory.mktemp("terraform"), mirror)


@pytest.fixture
def aws_env(moto: str, moto_server, terraform_cli: dict[str, str]) -> dict[str, str]:
    return aws_environment(moto_server, terraform_cli, dict(os.environ))


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


@pytest.fixture
def single_node(moto: str, moto_tls: Path, tmp_path: Path, monkeypatch):
    """One instance of a group of one, for the real node agent (see single_node.py)."""
    from .single_node import one_node

    with one_node(moto, moto_tls, tmp_path, monkeypatch) as node:
        yield node


@pytest.fixture
def gang(moto: str, moto_tls: Path, tmp_path: Path, monkeypatch):
    """A group of two instances in moto for real node agents started as a gang's ranks (see
    gang_nodes.py), with boto3's credentials and endpoint in this process's environment."""
    from .gang_nodes import gang_group

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(moto_tls))
    with gang_group(moto, moto_tls, tmp_path / "nodes") as group:
        yield group


@pytest.fixture
def ami(aws_env) -> str:
    from .cloud import default_ami

    return default_ami(aws_env)


@pytest.fixture
def cloud(aws_env, tmp_path: Path, project: Path):
    """The real gridctl with its own GRIDCTL_HOME, pointed at the emulated account."""
    from .cloud import user

    return user(aws_env, tmp_path / "home", project)
