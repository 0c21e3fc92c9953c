"""EC2 vCPU quotas: which Service Quotas code an instance type counts against, and its value.

AWS limits the vCPUs an account runs at once per family class and market (on-demand or
spot). New accounts get 0 for G and P spot, so a GPU spot run would queue forever; asking
before submitting turns that into one line that says how to raise the quota. Only the
classes gridctl's catalogue offers are known; other types go unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gridctl.infra.aws import Account

SERVICE_CODE = "ec2"
ATTEMPTS = 2
"""The check is optional: when Service Quotas does not answer, the run goes ahead."""


@dataclass(frozen=True)
class Quota:
    code: str
    name: str

    def increase_command(self, desired: int) -> str:
        return (
            f"aws service-quotas request-service-quota-increase --service-code {SERVICE_CODE}"
            f" --quota-code {self.code} --desired-value {desired}"
        )


STANDARD_CLASSES = frozenset({"a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z"})
G_CLASSES = frozenset({"g", "gr", "vt"})
P_CLASSES = frozenset({"p"})

_QUOTAS: dict[tuple[frozenset[str], bool], Quota] = {
    (STANDARD_CLASSES, False): Quota(
        "L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
    ),
    (STANDARD_CLASSES, True): Quota(
        "L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"
    ),
    (G_CLASSES, False): Quota("L-DB2E81BA", "Running On-Demand G and VT instances"),
    (G_CLASSES, True): Quota("L-3819A6DF", "All G and VT Spot Instance Requests"),
    (P_CLASSES, False): Quota("L-417A185B", "Running On-Demand P instances"),
    (P_CLASSES, True): Quota("L-7212CCBC", "All P Spot Instance Requests"),
}


def quota_for(instance_type: str, *, spot: bool) -> Quota | None:
    """The quota ``g4dn.xlarge`` counts against (the letters before the generation digit
    name its class), or None for a class not known here."""
    found = re.match(r"[a-z]+", instance_type.lower())
    letters = found.group(0) if found else ""
    for (classes, market), quota in _QUOTAS.items():
        if letters in classes and market == spot:
            return quota
    return None


def machines_within(quota_vcpus: float, vcpus_per_machine: int) -> int:
    """How many machines of that size the quota lets run at once."""
    return int(quota_vcpus // vcpus_per_machine) if vcpus_per_machine > 0 else 0


class QuotaUnknown(Exception):
    """Service Quotas did not tell (unreachable, access denied, no such quota)."""


def value(account: Account, quota: Quota) -> float:
    """The account's applied value, else AWS's default (an account that never asked for
    an increase has no applied value)."""
    import botocore.exceptions

    try:
        client = account.client("service-quotas", attempts=ATTEMPTS)
        try:
            found = client.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=quota.code)
        except client.exceptions.NoSuchResourceException:
            found = client.get_aws_default_service_quota(
                ServiceCode=SERVICE_CODE, QuotaCode=quota.code
            )
        return float(found["Quota"]["Value"])
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code") or "an error"
        raise QuotaUnknown(f"Service Quotas answered {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise QuotaUnknown(" ".join(str(exc).split())) from None
    except (KeyError, TypeError, ValueError):
        raise QuotaUnknown("Service Quotas gave no value") from None
