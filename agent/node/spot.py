"""Spot notices as a node learns them from the instance metadata service: the two-minute
interruption warning and the earlier rebalance hint, each turned into a runner ``Notice``."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime

from gridctl.agent.core.logs import stamp
from gridctl.agent.node.imds import IMDSClient, IMDSError
from gridctl.agent.runner.notice import INTERRUPTION, REBALANCE, WINDOW, Notice

INTERRUPTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_instance_action(body: str, seen_at: float) -> Notice:
    """``{"action": "terminate", "time": "2026-11-22T04:20:00Z"}``; the announced time is
    the deadline, or two minutes from first sight when it cannot be read."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    deadline = _epoch(data.get("time")) or seen_at + WINDOW
    action = data.get("action") or "terminate"
    when = time.strftime("%H:%M:%SZ", time.gmtime(deadline))
    return Notice(INTERRUPTION, seen_at, deadline, f"spot interruption notice ({action} at {when})")


def parse_rebalance(body: str, seen_at: float) -> Notice:
    return Notice(REBALANCE, seen_at, None, f"spot rebalance recommendation: {body.strip()}")


class SpotWatcher:
    """Polls both notice paths every ``interval`` seconds and hands each new notice to
    ``deliver``: the interruption once (its deadline fixed at first sight), and each
    rebalance recommendation once."""

    def __init__(
        self, imds: IMDSClient, deliver: Callable[[Notice], None], interval: float = 1.0
    ) -> None:
        self.imds = imds
        self.deliver = deliver
        self.interval = interval
        self.interruption: Notice | None = None
        self._rebalance_seen: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spot-watcher", daemon=True)

    def start(self) -> SpotWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def poll(self) -> None:
        if self.interruption is None:
            body = self.imds.get(INTERRUPTION_PATH)
            if body:
                self.interruption = parse_instance_action(body, time.time())
                self.deliver(self.interruption)
        body = self.imds.get(REBALANCE_PATH)
        if body and body != self._rebalance_seen:
            self._rebalance_seen = body
            self.deliver(parse_rebalance(body, time.time()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except IMDSError as exc:  # the next poll tries again
                sys.stderr.write(f"{stamp().decode()}gridctl agent: spot watcher: {exc}\n")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
