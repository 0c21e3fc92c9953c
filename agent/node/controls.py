"""What reaches a node's experiments from outside: spot notices and ``gridctl stop`` /
``interrupt`` requests, each heard by every experiment of the machine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from gridctl.agent.core.contract import (
    ExperimentKeys,
    InterruptRequest,
)
from gridctl.agent.core.s3store import S3Store
from gridctl.agent.node.report import say
from gridctl.agent.runner.experiment import ExperimentRunner
from gridctl.agent.runner.notice import INTERRUPTION, REQUESTED_REASON, WINDOW, Notice, interruption


class Listener(Protocol):
    """What hears the machine's notices: an experiment's runner, or a gang rank (which also
    alarms its peers)."""

    def notice(self, notice: Notice) -> object: ...


class Broadcast:
    """The machine's notices: every experiment on it hears each one, also those that start
    after it came; the first interruption is the one that counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runners: list[Listener] = []
        self._seen: list[Notice] = []
        self.interruption: Notice | None = None
        self.requested = False
        """Whether the interruption came from ``gridctl interrupt`` (the node then ends its
        own instance, as AWS would)."""

    def join(self, runner: Listener) -> None:
        with self._lock:
            self._runners.append(runner)
            seen = list(self._seen)
        for notice in seen:
            runner.notice(notice)

    def deliver(self, notice: Notice, *, requested: bool = False) -> None:
        with self._lock:
            if notice.kind == INTERRUPTION:
                if self.interruption is not None:
                    return
                self.interruption, self.requested = notice, requested
            self._seen.append(notice)
            runners = list(self._runners)
        say(notice.reason)
        for runner in runners:
            runner.notice(notice)


class Stoppable(Protocol):
    def request_stop(self, reason: str) -> object: ...


class Halt:
    """A stop of every experiment on the machine for one reason (the run's budget): those
    running when it comes, and any that start after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runners: list[Stoppable] = []
        self.reason: str | None = None

    def join(self, runner: Stoppable) -> None:
        with self._lock:
            self._runners.append(runner)
            reason = self.reason
        if reason is not None:
            runner.request_stop(reason)

    def halt(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            runners = list(self._runners)
        say(reason)
        for runner in runners:
            runner.request_stop(reason)


def read_interrupt(store: S3Store, keys: ExperimentKeys) -> InterruptRequest | None:
    """``control/interrupt``, written by ``gridctl interrupt``."""
    try:
        return InterruptRequest.decode(store.get_bytes(keys.interrupt))
    except FileNotFoundError:
        return None


def _every_request(request: InterruptRequest) -> bool:
    return True


def watch_controls(
    runner: ExperimentRunner,
    keys: ExperimentKeys,
    broadcast: Broadcast,
    interval: float,
    done: threading.Event,
    serves: Callable[[InterruptRequest], bool] = _every_request,
) -> None:
    """Turn a stop object in the bucket into a stop request, and an interrupt object into
    an interruption of the whole machine (as a reclaim would be); ``serves`` says which
    interrupt requests are for this machine (a gang's name one node, or an attempt)."""
    store = runner.store
    assert isinstance(store, S3Store)
    while not done.wait(interval):
        try:
            requests = set(store.list(keys.control))  # one request per look, not one per kind
            if keys.stop in requests:
                runner.request_stop()
            request = read_interrupt(store, keys) if keys.interrupt in requests else None
            if request is not None and serves(request):
                notice = interruption(REQUESTED_REASON, request.window or WINDOW)
                broadcast.deliver(notice, requested=True)
        except Exception as exc:  # the next look tries again
            say(f"cannot look for control requests: {exc}")
