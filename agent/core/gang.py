"""A gang: the K nodes of one multi-node experiment (SPEC section 9) finding each other
through the store, with no server.

Each attempt of the experiment forms its gang anew under ``gang/<attempt>/``: every node
claims a rank with a write-if-absent (so each rank has one holder), waits until all K are
claimed (the barrier: the scripts start together or not at all), and from then on the
nodes watch the same folder for each other's ends, beats and the attempt's alarm. Ranks
are stable: a node that stays for the next attempt keeps its rank, and a replacement takes
the rank of the machine that went away. Whoever sees the K ends first writes the
experiment's outcome (``combine``); two writers compute the same one.

The same code runs locally (K threads of the local agent, over its directory store) and
on AWS (one node agent per instance, over the bucket). Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gridctl.agent.core.contract import ExperimentKeys, InterruptRequest, Member, RankEnd
from gridctl.agent.core.state import STOPPED_BY_USER, State
from gridctl.agent.core.store import Store

GANG_TIMEOUT = 900.0
"""Seconds a gang's nodes wait for each other before the attempt fails
(``GRIDCTL_GANG_TIMEOUT``): long enough for a spot replacement to boot and install."""
MASTER_PORT = 29500
"""torch.distributed's usual port, rank 0's on AWS unless ``GRIDCTL_MASTER_PORT``."""
LAUNCHER_VARIABLES = (
    "GRIDCTL_NODE_RANK",
    "GRIDCTL_NUM_NODES",
    "GRIDCTL_NODE_IPS",
    "GRIDCTL_GPUS_PER_NODE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "PL_TRAINER_NUM_NODES",
    # Set by torchrun, SLURM or LSF: left over from the submitter's shell they would make
    # Lightning or torch.distributed believe another launcher started the script.
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "TORCHELASTIC_RUN_ID",
    "SLURM_NTASKS",
    "LSB_JOBID",
)
"""Set by gridctl alone in a gang's environment: the submitter's values never reach it."""
TORCHRUN = ("-m", "torch.distributed.run")
LOST_PEER_REASON = "node {rank} stopped reporting (its machine was lost)"


def node_name(experiment: str, rank: int) -> str:
    """What a rank's own things are named where a gang's ranks share a machine (exec dir,
    scratch dir, its hold on a datastore): the experiment's name for rank 0."""
    return experiment if rank == 0 else f"{experiment}-node-{rank}"


class GangTimeout(Exception):
    """Not every node of the attempt registered in time."""

    def __init__(self, came_up: int, nodes: int) -> None:
        super().__init__(f"{came_up} of {nodes} nodes came up")
        self.came_up = came_up
        self.nodes = nodes


class GangCancelled(Exception):
    """The attempt was interrupted or stopped while its nodes were still gathering."""


@dataclass(frozen=True)
class Roster:
    """The attempt's nodes in rank order, once all are there."""

    members: tuple[Member, ...]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(m.address for m in self.members)

    @property
    def master_addr(self) -> str:
        return self.members[0].address

    @property
    def master_port(self) -> int:
        return self.members[0].port or MASTER_PORT


@dataclass(frozen=True)
class Place:
    """One rank's place in its gang: what its script is told, and how it is started."""

    rank: int
    roster: Roster
    gpus_per_node: int
    framework: str | None = None

    @property
    def nodes(self) -> int:
        return len(self.roster.members)

    def environment(self) -> dict[str, str]:
        """SPEC section 9's variables, and nothing a launcher would take for its own:
        Lightning and torch.distributed derive the rest from these."""
        return {
            "GRIDCTL_NODE_RANK": str(self.rank),
            "GRIDCTL_NUM_NODES": str(self.nodes),
            "GRIDCTL_NODE_IPS": "\n".join(self.roster.addresses),
            "GRIDCTL_GPUS_PER_NODE": str(self.gpus_per_node),
            "MASTER_ADDR": self.roster.master_addr,
            "MASTER_PORT": str(self.roster.master_port),
            "NODE_RANK": str(self.rank),
            "PL_TRAINER_NUM_NODES": str(self.nodes),
        }

    def argv(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        """The script's vector, through torchrun's static rendezvous with ``--framework
        torch``: one process per GPU (or one), each given RANK, WORLD_SIZE and friends."""
        if self.framework != "torch":
            return argv
        head = (
            "python",
            *TORCHRUN,
            f"--nnodes={self.nodes}",
            f"--node-rank={self.rank}",
            f"--nproc-per-node={max(self.gpus_per_node, 1)}",
            f"--master-addr={self.roster.master_addr}",
            f"--master-port={self.roster.master_port}",
        )
        if argv[0] == "python":
            return (*head, *argv[1:])
        return (*head, "--no-python", *argv)


def combine(
    ends: Mapping[int, RankEnd], nodes: int, alarm: InterruptRequest | None = None
) -> tuple[State, int | None, str | None] | None:
    """The experiment's outcome once all ``nodes`` ranks have ended, None before.

    A failure names its rank; the earliest wins, since the others' often follow from it (a
    peer's collective fails when its partner dies). After an alarm, failures that came
    after it are the interruption's doing: the attempt was interrupted.
    """
    if len(ends) < nodes:
        return None
    raised = alarm.requested_at if alarm is not None else None
    failures = sorted(
        (e for e in ends.values() if e.status == State.FAILED),
        key=lambda e: (e.ended_at, e.rank),
    )
    genuine = [e for e in failures if raised is None or e.ended_at < raised]
    if genuine:
        first = genuine[0]
        return State.FAILED, first.exit_code, f"node {first.rank}: {first.reason}"
    interrupted = [e for e in ends.values() if e.status == State.INTERRUPTED]
    if alarm is not None or interrupted:
        heard = next((e.reason for e in sorted(interrupted, key=_order) if e.reason), None)
        return State.INTERRUPTED, None, (alarm.reason if alarm else None) or heard
    stopped = sorted((e for e in ends.values() if e.status == State.STOPPED), key=_order)
    if stopped:
        return State.STOPPED, None, stopped[0].reason or STOPPED_BY_USER
    return State.SUCCEEDED, 0, None


def _order(end: RankEnd) -> tuple[float, int]:
    return end.ended_at, end.rank


@dataclass(frozen=True)
class Look:
    """What one look at the attempt's folder found."""

    ends: dict[int, RankEnd]
    alarm: InterruptRequest | None


class Rendezvous:
    """One node's side of one gang attempt, through the store."""

    def __init__(
        self,
        store: Store,
        keys: ExperimentKeys,
        nodes: int,
        attempt: int,
        instance: str,
        address: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keys = keys
        self.nodes = nodes
        self.attempt = attempt
        self.instance = instance
        self.address = address
        self.clock = clock
        self._members: dict[int, Member] = {}
        self._ends: dict[int, RankEnd] = {}
        self._alarm: InterruptRequest | None = None

    def _earlier(self) -> Rendezvous:
        """This node's side of the attempt before this one."""
        return Rendezvous(
            self.store, self.keys, self.nodes, self.attempt - 1, self.instance, self.address
        )

    def previous_rank(self) -> int | None:
        """The rank this node held in the attempt before, if it stayed for this one."""
        if self.attempt == 0:
            return None
        earlier = self._earlier()
        for rank, member in earlier.members().items():
            if member.instance == self.instance:
                end = earlier.end_of(rank)
                return rank if end is None or end.stays else None
        return None

    def reserved(self) -> set[int]:
        """Ranks kept for the nodes of the attempt before that stay for this one."""
        if self.attempt == 0:
            return set()
        earlier = self._earlier()
        held = earlier.members()
        ends = earlier.look().ends
        return {
            rank
            for rank, member in held.items()
            if member.instance != self.instance and (rank not in ends or ends[rank].stays)
        }

    def register(self, want: int | None = None, port: int | None = None) -> int | None:
        """Claim ``want``, else this node's rank of the attempt before, else the lowest free
        rank no staying node keeps; None when every rank is taken. A node that claimed a
        rank already (its agent restarted) gets it back."""
        if want is None:
            want = self.previous_rank()
        reserved = self.reserved() if want is None else set()
        candidates = [want] if want is not None else []
        candidates += [r for r in range(self.nodes) if r not in reserved and r != want]
        for rank in candidates:
            member = Member(rank, self.instance, self.address, port if rank == 0 else None)
            if self.store.put_if_absent(self.keys.member(self.attempt, rank), member.encode()):
                self._members[rank] = member
                return rank
            if self._member(rank).instance == self.instance:
                return rank
        return None

    def _member(self, rank: int) -> Member:
        if rank not in self._members:
            data = self.store.get_bytes(self.keys.member(self.attempt, rank))
            self._members[rank] = Member.decode(data)
        return self._members[rank]

    def members(self) -> dict[int, Member]:
        prefix = f"{self.keys.gang(self.attempt)}/members"
        for key in self.store.list(prefix):
            rank = _rank_of(key)
            if rank is not None and rank < self.nodes:
                self._member(rank)
        return dict(self._members)

    def mark_ready(self, rank: int) -> None:
        self.store.put_bytes(self.keys.ready(self.attempt, rank), b"")

    def ready(self) -> set[int]:
        """The ranks prepared to start."""
        found = (_rank_of(k) for k in self.store.list(f"{self.keys.gang(self.attempt)}/ready"))
        return {rank for rank in found if rank is not None and rank < self.nodes}

    def wait_for_all(
        self, timeout: float, poll: float, cancelled: Callable[[], bool] = lambda: False
    ) -> Roster:
        """The barrier: the roster once all K ranks are ready. Raises GangTimeout after
        ``timeout`` seconds, GangCancelled as soon as ``cancelled()``."""
        deadline = time.monotonic() + timeout
        while True:
            ready = self.ready()
            if len(ready) == self.nodes:
                members = self.members()
                return Roster(tuple(members[r] for r in range(self.nodes)))
            if cancelled():
                raise GangCancelled()
            if time.monotonic() >= deadline:
                raise GangTimeout(len(ready), self.nodes)
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    def beat(self, rank: int) -> None:
        self.store.put_bytes(self.keys.beat(self.attempt, rank), repr(self.clock()).encode())

    def last_beat(self, rank: int) -> float | None:
        try:
            return float(self.store.get_bytes(self.keys.beat(self.attempt, rank)))
        except (FileNotFoundError, ValueError):
            return None

    def look(self) -> Look:
        """One listing of the attempt's folder, then only what is new in it."""
        base = self.keys.gang(self.attempt)
        for key in self.store.list(base):
            rest = key[len(base) + 1 :]
            if rest.startswith("ended/"):
                rank = _rank_of(key)
                if rank is not None and rank not in self._ends:
                    self._ends[rank] = RankEnd.decode(self.store.get_bytes(key))
            elif rest == "alarm" and self._alarm is None:
                self._alarm = InterruptRequest.decode(self.store.get_bytes(key))
        return Look(dict(self._ends), self._alarm)

    def end_of(self, rank: int) -> RankEnd | None:
        return self.look().ends.get(rank)

    def end(self, end: RankEnd) -> bool:
        """Record a rank's end, unless a peer already recorded it (as lost)."""
        return self.store.put_if_absent(self.keys.ended(self.attempt, end.rank), end.encode())

    def record_lost(self, rank: int) -> None:
        """A silent peer's end, written for it (its machine goes, a resume replaces it), and
        the alarm that stops the rest of the gang."""
        now = self.clock()
        reason = LOST_PEER_REASON.format(rank=rank)
        self.end(RankEnd(rank, State.INTERRUPTED, None, reason, now, stays=False))
        self.raise_alarm(InterruptRequest(None, now, rank, self.attempt, reason))

    def raise_alarm(self, request: InterruptRequest) -> bool:
        """The first alarm of the attempt is the one that counts."""
        return self.store.put_if_absent(self.keys.alarm(self.attempt), request.encode())

    def stale(self, ranks: Iterable[int], after: float) -> list[int]:
        """Those of ``ranks`` whose last beat is older than ``after`` seconds (or missing)."""
        now = self.clock()
        return [r for r in ranks if now - (self.last_beat(r) or 0.0) > after]


def _rank_of(key: str) -> int | None:
    """The rank a ``members/<R>.json`` or ``ended/<R>.json`` key is about."""
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    return int(name) if name.isdigit() else None
