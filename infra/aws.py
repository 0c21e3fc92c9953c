"""AWS access for the CLI: one boto3 session per (profile, region), honouring
``AWS_ENDPOINT_URL`` (LocalStack, moto) and retrying with backoff."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from gridctl.infra.errors import InfraError

MAX_ATTEMPTS = 8
RETRIES = {"mode": "standard", "max_attempts": MAX_ATTEMPTS}
NO_CREDENTIALS = (
    "no AWS credentials found: run 'aws configure', export AWS_ACCESS_KEY_ID and"
    " AWS_SECRET_ACCESS_KEY, or pass --credential PROFILE"
)


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL") or None


@dataclass(frozen=True)
class Account:
    profile: str | None
    region: str

    @cached_property
    def session(self):
        import boto3
        import botocore.exceptions

        try:
            return boto3.Session(profile_name=self.profile, region_name=self.region)
        except botocore.exceptions.ProfileNotFound:
            raise InfraError(f"--credential {self.profile}: no such AWS profile") from None

    def client(self, service: str, *, attempts: int = MAX_ATTEMPTS):
        """boto3 finds the endpoint itself (``AWS_ENDPOINT_URL``, and before it
        ``AWS_ENDPOINT_URL_<SERVICE>``, which an explicit ``endpoint_url`` would override).
        Fewer ``attempts`` suit checks that may be skipped when AWS does not answer."""
        from botocore.config import Config

        s3 = {"addressing_style": "path"} if endpoint_url() else {}
        config = Config(retries={**RETRIES, "max_attempts": attempts}, s3=s3)
        return self.session.client(service, config=config)

    def check_region(self) -> None:
        if endpoint_url():
            return  # a local endpoint answers for any region name
        known = self.session.get_available_regions("ec2")
        if self.region not in known:
            raise InfraError(f"unknown AWS region {self.region!r} (e.g. us-east-1, eu-west-1)")

    @cached_property
    def account_id(self) -> str:
        import botocore.exceptions

        if self.session.get_credentials() is None:
            raise InfraError(NO_CREDENTIALS)
        try:
            return self.client("sts").get_caller_identity()["Account"]
        except botocore.exceptions.NoCredentialsError:
            raise InfraError(NO_CREDENTIALS) from None
        except botocore.exceptions.ClientError as exc:
            raise InfraError(f"AWS rejected the credentials: {exc}") from None

    def process_env(self) -> dict[str, str]:
        """The variables Terraform's process needs to act as this account: the profile and
        region."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.profile:
            env["AWS_PROFILE"] = self.profile
        return env
