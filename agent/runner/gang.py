"""One rank of a gang at work, the same locally and on a node: the barrier its runner
passes, and the watch that ties its script to its peers' (SPEC section 9).

A gang runs whole or not at all. A peer's failure stops this rank's script at once (no
collective hanging until its own timeout); the attempt's alarm (a spot notice, ``gridctl
interrupt``, a lost peer) interrupts it; a peer that stops beating is recorded lost by
whoever notices first, which raises the alarm. When its script has ended and its final
sync is done the rank records its end, and the rank that completes the set learns the
experiment's outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from gridctl.agent.core.contract import InterruptRequest, RankEnd
from gridctl.agent.core.gang import GANG_TIMEOUT, Place, Rendezvous, combine
from gridctl.agent.core.logs import note
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import State
from gridctl.agent.runner.experiment import ExperimentRunner
from gridctl.agent.runner.notice import WINDOW, Notice, interruption


@dataclass(frozen=True)
class GangSettings:
    timeout: float = GANG_TIMEOUT
    """Seconds the nodes wait for each other (``GRIDCTL_GANG_TIMEOUT``)."""
    interval: float = 1.0
    """Seconds between looks at the attempt's folder (one listing each): how soon a peer's
    failure or the alarm reaches this rank."""
    gather_interval: float = 0.2
    """Seconds between looks while the nodes gather (one listing each): short, since the
    node that came first waits that long more before its script starts."""
    beat_interval: float = 10.0
    stale_beats: int | None = 3
    """Beats a peer may miss before it is taken for lost; None: never (ranks that are
    threads of one process cannot be lost one by one)."""


Outcome = tuple[State, int | None, str | None]


class GangMember:
    """Rank ``rank`` of the experiment's gang in the rendezvous' attempt."""

    def __init__(
        self,
        rendezvous: Rendezvous,
        rank: int,
        spec: ExperimentSpec,
        settings: GangSettings | None = None,
    ) -> None:
        self.rendezvous = rendezvous
        self._rank = rank
        self.spec = spec
        self.settings = settings or GangSettings()
        self.leaving = False
        """This rank's machine goes away after this attempt: a resume replaces it."""
        self._formed = threading.Event()

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def nodes(self) -> int:
        return self.spec.nodes

    @property
    def formed(self) -> bool:
        """Whether every node got here: else no script ran and no peer will end this attempt."""
        return self._formed.is_set()

    def ready(self, log: BinaryIO, cancelled: Callable[[], bool]) -> Place:
        """The barrier: every node has its bundle ready before any script starts."""
        note(log, f"node {self.rank} of {self.nodes}: waiting for the other nodes")
        self.rendezvous.beat(self.rank)
        self.rendezvous.mark_ready(self.rank)
        roster = self.rendezvous.wait_for_all(
            self.settings.timeout, self.settings.gather_interval, cancelled
        )
        self._formed.set()
        note(
            log,
            f"node {self.rank} of {self.nodes}: all {self.nodes} nodes are here"
            f" (master {roster.master_addr}:{roster.master_port})",
        )
        return Place(self.rank, roster, self.spec.gpus, self.spec.framework)

    def alarm(self, notice: Notice, leaving: bool) -> None:
        """Tell the peers of an interruption this rank heard first; ``leaving``: its own
        machine is the one going away."""
        self.leaving = self.leaving or leaving
        now = time.time()
        window = notice.deadline - now if notice.deadline is not None else None
        request = InterruptRequest(
            window if window is not None and window > 0 else None,
            now,
            self.rank if leaving else None,
            self.rendezvous.attempt,
            f"node {self.rank}: {notice.reason}",
        )
        self.rendezvous.raise_alarm(request)

    def watch(self, runner: ExperimentRunner, done: threading.Event) -> None:
        """Until ``done``: beat, and act on what the peers did."""
        alarmed = stopped = False
        next_beat = 0.0
        while not done.wait(self.settings.interval):
            look = self.rendezvous.look()
            if look.alarm is not None and not alarmed:
                alarmed = True
                why = f"the gang was interrupted ({look.alarm.reason or 'by a peer'})"
                runner.notice(interruption(why, look.alarm.window or WINDOW))
            failed = [e for e in look.ends.values() if e.status == State.FAILED]
            if failed and not stopped and look.alarm is None:
                stopped = True
                runner.request_stop()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.settings.beat_interval
                self.rendezvous.beat(self.rank)
                if self._formed.is_set() and self.settings.stale_beats is not None:
                    self._record_lost(set(look.ends), self.settings.stale_beats)

    def _record_lost(self, ended: set[int], stale_beats: int) -> None:
        """Peers silent for ``stale_beats`` beats: their end, written for them, and the
        alarm, so that the whole gang stops and a resume replaces their machines."""
        peers = [r for r in range(self.nodes) if r != self.rank and r not in ended]
        after = stale_beats * self.settings.beat_interval
        for rank in self.rendezvous.stale(peers, after):
            self.rendezvous.record_lost(rank)

    def finish(
        self, status: State, exit_code: int | None, reason: str | None, exited_at: float | None
    ) -> Outcome | None:
        """Record this rank's end (its final sync is done); the experiment's outcome when
        this completes the gang's ends, None while peers are still at it."""
        end = RankEnd(
            self.rank,
            status,
            exit_code,
            reason,
            exited_at or time.time(),
            stays=not self.leaving,
            instance=self.rendezvous.instance,
        )
        self.rendezvous.end(end)
        look = self.rendezvous.look()
        return combine(look.ends, self.nodes, look.alarm)
