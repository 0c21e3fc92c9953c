"""What a group's latest scaling activity says about an experiment that waits for it
(activities in DescribeScalingActivities' shape; the AWS path runs end to end in
tests/aws/test_aws_waiting.py)."""

from __future__ import annotations

import pytest

from gridctl.infra.activities import reason_from

CAPACITY = (
    "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you"
    " requested (us-east-1a). Launching EC2 instance failed."
)


@pytest.mark.parametrize(
    ("activity", "reason"),
    [
        (
            {"StatusCode": "Failed", "StatusMessage": CAPACITY},
            f"waiting for an instance: {CAPACITY}",
        ),
        (
            {"StatusCode": "Cancelled", "Description": "Launching a new EC2 instance"},
            "waiting for an instance: Launching a new EC2 instance",
        ),
        ({"StatusCode": "Failed"}, "waiting for an instance: launch Failed"),
        (
            {"StatusCode": "WaitingForSpotInstanceId", "StatusMessage": "capacity-not-available"},
            "waiting for an instance: capacity-not-available",
        ),
        ({"StatusCode": "WaitingForSpotInstanceId", "StatusMessage": " "}, None),
        ({"StatusCode": "InProgress"}, None),
        ({"StatusCode": "Successful", "StatusMessage": "ignored once it succeeded"}, None),
    ],
)
def test_only_an_activity_that_did_not_succeed_explains_a_wait(activity, reason):
    assert reason_from({"Description": "", **activity}) == reason
