"""The run's budget on a node (``--max_cost``): every ``GRIDCTL_BUDGET_INTERVAL`` seconds
the node sums its run's ledger, and once the sum reaches the cap it stops the experiments it
runs and starts no other (a node that boots later sees it before it starts anything). Every
node of the run watches for itself: none is in charge, so a lost node lifts no cap.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator

from gridctl.agent.core.contract import Charge, ledger_prefix
from gridctl.agent.core.guards import budget_reason, spent
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.store import Store
from gridctl.agent.node.controls import Halt
from gridctl.agent.node.report import say


class Ledger:
    """A run's charges as the bucket holds them: one listing a look, and a read of each
    charge still open (an ended charge never changes, so it is read once)."""

    def __init__(self, store: Store, run: str) -> None:
        self.store = store
        self.prefix = ledger_prefix(run)
        self._ended: dict[str, Charge] = {}

    def charges(self) -> list[Charge]:
        found = []
        for key in self.store.list(self.prefix):
            charge = self._ended.get(key)
            if charge is None:
                try:
                    charge = Charge.decode(self.store.get_bytes(key))
                except FileNotFoundError:  # deleted since the listing
                    continue
                if charge.ended_at is not None:
                    self._ended[key] = charge
            found.append(charge)
        return found


class Budget:
    """``cap`` USD for the run whose ledger this is."""

    def __init__(self, cap: float, ledger: Ledger) -> None:
        self.cap = cap
        self.ledger = ledger

    def reached(self, now: float) -> str | None:
        """The reason to stop once the run has cost the cap, else None."""
        total = spent(self.ledger.charges(), now)
        return budget_reason(self.cap, total) if total >= self.cap else None


def budget_of(store: Store, specs: Iterable[ExperimentSpec]) -> Budget | None:
    """The run's budget, as its specs carry it (the same in each); None without one."""
    for spec in specs:
        if spec.max_cost is not None:
            return Budget(spec.max_cost, Ledger(store, spec.run))
    return None


def _look(budget: Budget, halt: Halt) -> bool:
    """One look at the ledger; True once the budget is reached. A failed look is said and
    tried again: the budget must never be what ends a run that is within it."""
    try:
        reason = budget.reached(time.time())
    except Exception as exc:  # the next look tries again
        say(f"cannot sum the run's ledger: {exc}")
        return False
    if reason is not None:
        halt.halt(reason)
    return reason is not None


@contextlib.contextmanager
def watching(budget: Budget | None, halt: Halt, interval: float) -> Iterator[None]:
    """A look now, before anything starts, then one every ``interval`` seconds while the
    block runs."""
    if budget is None or _look(budget, halt):
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(interval):
            if _look(budget, halt):
                return

    watcher = threading.Thread(target=watch, name="budget", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
