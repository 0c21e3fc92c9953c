"""Why an Auto Scaling group has not launched its instance: its latest scaling activity.

AWS launches a group's instances after the call that sized it, and a launch that fails (no
capacity of the type in the subnets' zones, a spot or vCPU limit, an AMI that is gone) is
retried with backoff for as long as the group wants the instance. The experiment then waits
with nothing on the bucket to say why; only the group's activity history does. Its latest
activity tells: ``Failed`` or ``Cancelled`` (or still under way with a ``StatusMessage``,
as a spot request waiting for capacity) is why the group is short. ``Successful`` says the
instance is there or on its way, so nothing is shown.

A lookup that fails shows nothing rather than failing or holding up ``gridctl status``.
"""

from __future__ import annotations

from gridctl.infra.aws import Account
from gridctl.infra.errors import InfraError

ATTEMPTS = 2
"""Few retries: this only decorates ``status``."""
TROUBLE_CODES = ("Failed", "Cancelled")


def reason_from(activity: dict) -> str | None:
    """What an activity (DescribeScalingActivities' shape) says about a group that waits."""
    code = activity.get("StatusCode")
    message = (activity.get("StatusMessage") or "").strip()
    if code in TROUBLE_CODES:
        message = message or (activity.get("Description") or "").strip() or f"launch {code}"
    if code == "Successful" or not message:
        return None
    return f"waiting for an instance: {message}"


def launch_trouble(account: Account, group: str) -> str | None:
    """Why ``group`` has not launched, from its latest activity; None when nothing is wrong
    or AWS could not be asked."""
    import botocore.exceptions

    try:
        client = account.client("autoscaling", attempts=ATTEMPTS)
        found = client.describe_scaling_activities(AutoScalingGroupName=group, MaxRecords=1)
    except (InfraError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return None
    activities = found.get("Activities") or []
    return reason_from(activities[0]) if activities else None
