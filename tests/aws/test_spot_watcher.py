"""The spot watcher against the IMDSv2 stand-in: what it delivers, once, and when."""

from __future__ import annotations

import time
from datetime import timedelta

from gridctl.agent.node.imds import IMDSClient
from gridctl.agent.node.spot import INTERRUPTION_PATH, SpotWatcher, parse_instance_action
from gridctl.agent.runner.notice import INTERRUPTION, REBALANCE


def watcher_for(service, delivered: list) -> SpotWatcher:
    return SpotWatcher(IMDSClient(service.url), delivered.append, interval=0.05)


def test_an_interruption_is_delivered_once_with_the_announced_deadline(metadata_service):
    delivered: list = []
    watcher = watcher_for(metadata_service, delivered)
    watcher.poll()
    assert delivered == []
    announced = metadata_service.notify_spot_interruption(seconds_ahead=90)
    watcher.poll()
    (notice,) = delivered
    assert notice.kind == INTERRUPTION
    assert notice.deadline == announced.replace(microsecond=0).timestamp()
    assert notice.reason.startswith("spot interruption notice (terminate at ")
    # The deadline is fixed at first sight: a later answer changes nothing.
    metadata_service.spot_action_time = announced + timedelta(seconds=60)
    watcher.poll()
    watcher.poll()
    assert delivered == [notice]


def test_each_rebalance_recommendation_is_delivered_once(metadata_service):
    delivered: list = []
    watcher = watcher_for(metadata_service, delivered)
    first = metadata_service.recommend_rebalance()
    watcher.poll()
    watcher.poll()
    metadata_service.rebalance_time = first + timedelta(minutes=5)
    watcher.poll()
    assert [n.kind for n in delivered] == [REBALANCE, REBALANCE]
    assert all(n.deadline is None for n in delivered)


def test_the_watcher_polls_with_one_cached_token(metadata_service):
    delivered: list = []
    watcher = watcher_for(metadata_service, delivered).start()
    try:
        metadata_service.notify_spot_interruption()
        give_up = time.monotonic() + 30
        while not delivered and time.monotonic() < give_up:
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert metadata_service.count("/latest/api/token") == 1
    assert metadata_service.count(INTERRUPTION_PATH, token=False) == 0
    assert metadata_service.count(INTERRUPTION_PATH, token=True) >= 1


def test_an_unreadable_notice_still_leaves_two_minutes():
    notice = parse_instance_action("not json", seen_at=1000.0)
    assert (notice.kind, notice.deadline) == (INTERRUPTION, 1120.0)
    notice = parse_instance_action('{"action": "stop"}', seen_at=1000.0)
    assert notice.deadline == 1120.0 and "stop at" in notice.reason
