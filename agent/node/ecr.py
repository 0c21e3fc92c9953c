"""Logging a node's docker in to Amazon ECR with the instance role, before a pull.

An ECR image (``<account>.dkr.ecr.<region>.amazonaws.com/repo:tag``) needs a login that
lasts 12 hours; the node asks ECR for a token with its role's credentials
(``ecr:GetAuthorizationToken``) right before each pull, and hands the password to
``docker login --password-stdin``: never in an argument, where a process listing shows it.
Any other registry is taken to be public (Docker Hub, ghcr.io, public.ecr.aws).
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from gridctl.agent.core.logs import note
from gridctl.agent.core.s3store import boto_config
from gridctl.agent.runner.container import ContainerError

_ECR_HOST = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)


@dataclass(frozen=True)
class Registry:
    host: str
    region: str


def ecr_registry(image: str) -> Registry | None:
    """The private ECR registry ``image`` is in; None for any other."""
    host, slash, _ = image.partition("/")
    found = _ECR_HOST.match(host) if slash else None
    return Registry(host, found.group("region")) if found else None


@dataclass(frozen=True)
class EcrLogin:
    """``Images``' login on a node; ``endpoint_url`` is the AWS endpoint (an emulator's)."""

    endpoint_url: str | None = None

    def __call__(self, docker: str, env: Mapping[str, str], image: str, log: BinaryIO) -> None:
        registry = ecr_registry(image)
        if registry is None:
            return
        try:
            user, password = self.credentials(registry)
        except Exception as exc:  # any failure of the call is the pull's failure
            raise ContainerError(f"cannot get an ECR token for {registry.host}: {exc}") from None
        login = [docker, "login", "--username", user, "--password-stdin", registry.host]
        result = subprocess.run(
            login, env=env, input=password.encode(), capture_output=True, check=False
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit code {result.returncode}"
            raise ContainerError(f"cannot log in to {registry.host}: {why}")
        note(log, f"logged in to {registry.host} with the instance role")

    def credentials(self, registry: Registry) -> tuple[str, str]:
        """The user and password of a token for the registry's region."""
        import boto3

        client = boto3.session.Session().client(
            "ecr",
            region_name=registry.region,
            endpoint_url=self.endpoint_url,
            config=boto_config(self.endpoint_url),
        )
        (data,) = client.get_authorization_token()["authorizationData"]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return user, password
