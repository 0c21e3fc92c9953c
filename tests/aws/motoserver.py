"""``moto_server`` with the scaling activities AWS records when a group launches.

moto launches a group's instances inside the call that sets its capacity, lets an error of
that launch fail the call, and answers DescribeScalingActivities with none. AWS launches
after the call: a launch that fails (an AMI that does not exist, no capacity, a spot limit)
leaves the group short of its desired capacity and records a ``Failed`` activity whose
``StatusMessage`` says why; each launch that succeeds records a ``Successful`` one. This
launcher patches moto's Auto Scaling in this process to do the same, then serves exactly as
``moto_server`` does (same arguments). moto checks no AMI at launch unless told to, so the
patch checks an ``ami-`` image against moto's registered images (one deregistered is gone;
a ``resolve:ssm:`` one is left to moto, as before). moto never retries a failed launch; AWS
does, with backoff.

It is AWS's boundary that is stood in for here, not gridctl's: gridctl reads the activities
exactly as it reads them from AWS.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# Run as a script, this folder comes first on sys.path, where the test helpers beside this
# file (policy.py, imds.py, ...) would shadow any module of the same name moto imports.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from moto.autoscaling import models, responses
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.exceptions import InvalidAMIIdError
from moto.server import main

_REPLACE = models.FakeAutoScalingGroup.replace_autoscaling_group_instances
_MAX_RECORDS = 100
"""AWS's default and largest page of activities."""


class LaunchActivity(models.Activity):
    """One launch attempt: ``Successful`` with the instance it made, or ``Failed`` with
    AWS's message (``message``: the EC2 error)."""

    def __init__(
        self,
        group: models.FakeAutoScalingGroup,
        before: int,
        *,
        instance: Any = None,
        message: str | None = None,
    ) -> None:
        now = utcnow()
        cause = (
            f"At {now:%Y-%m-%dT%H:%M:%SZ} an instance was started in response to a difference"
            f" between desired and actual capacity, increasing the capacity from {before} to"
            f" {group.desired_capacity}."
        )
        if message is None:
            description, status = f"Launching a new EC2 instance: {instance.id}", "Successful"
        else:
            message = f"{message.rstrip('.')}. Launching EC2 instance failed."
            description = f"Launching a new EC2 instance.  Status Reason: {message}"
            status = "Failed"
        super().__init__(description, cause, group, start_time=now, status_code=status)
        self.status_message = message
        self.progress = 100
        self.details = json.dumps({"Availability Zone": group.availability_zones[0]})


def _recorded(backend: models.AutoScalingBackend) -> list[LaunchActivity]:
    """The backend's activities, oldest first; moto's reset makes a new list (it resets a
    backend by emptying its ``__dict__``)."""
    return vars(backend).setdefault("_launch_activities", [])


def replace_instances(
    self: models.FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]
) -> None:
    """moto's launch, recorded as AWS records it; a launch error no longer fails the call."""
    before = len(self.active_instances())
    known = {state.instance.id for state in self.instance_states}
    try:
        image = self.image_id
        if image.startswith("ami-") and image not in self.autoscaling_backend.ec2_backend.amis:
            raise InvalidAMIIdError(image)
        _REPLACE(self, count_needed, propagated_tags)
    except ServiceException as exc:
        failed = LaunchActivity(self, before, message=exc.message)
        _recorded(self.autoscaling_backend).append(failed)
        return
    for state in self.instance_states:
        if state.instance.id not in known:
            made = LaunchActivity(self, before, instance=state.instance)
            _recorded(self.autoscaling_backend).append(made)


def describe_scaling_activities(self: responses.AutoScalingResponse) -> ActionResult:
    """Newest first, of groups that exist (unless IncludeDeletedGroups), up to MaxRecords."""
    name = self._get_param("AutoScalingGroupName")
    deleted = self._get_bool_param("IncludeDeletedGroups", False)
    limit = self._get_int_param("MaxRecords") or _MAX_RECORDS
    groups = self.autoscaling_backend.autoscaling_groups
    found = [
        activity
        for activity in reversed(_recorded(self.autoscaling_backend))
        if name in (None, activity.auto_scaling_group_name)
        and (deleted or groups.get(activity.auto_scaling_group_name) is activity.auto_scaling_group)
    ]
    return ActionResult({"Activities": found[:limit]})


def patch() -> None:
    models.FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_instances  # type: ignore[method-assign]
    responses.AutoScalingResponse.describe_scaling_activities = describe_scaling_activities  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    sys.exit(main(sys.argv[1:]))
