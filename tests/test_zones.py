"""Where a run may launch: the subnets of zones that offer its types."""

from __future__ import annotations

from gridctl.infra.zones import launchable


def test_launchable_subnets_keep_their_order():
    subnets = {"subnet-1": "us-east-1e", "subnet-2": "us-east-1a", "subnet-3": "us-east-1b"}
    assert launchable(subnets, {"us-east-1a", "us-east-1b"}) == ("subnet-2", "subnet-3")
    assert launchable(subnets, []) == ()
