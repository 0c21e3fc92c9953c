"""The local backend's run registry: runs, experiments and their states in SQLite.

Every CLI call and the local scheduler open their own connection; WAL mode and
``BEGIN IMMEDIATE`` make concurrent submissions and status updates safe. Each change of
state is the state machine's (``agent/core/state.py``), read and written back in one
transaction, and written only while the row is in a state that move may leave.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from gridctl.agent.core import state
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.state import STARTED_STATES, Attempt, History, Move, State

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name        TEXT PRIMARY KEY,
    backend     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    description TEXT,
    strategy    TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    bundle_id   TEXT NOT NULL,
    localdir    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    name           TEXT PRIMARY KEY,
    run            TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    spec           TEXT NOT NULL,
    status         TEXT NOT NULL,
    exit_code      INTEGER,
    resumes        INTEGER NOT NULL DEFAULT 0,
    created_at     REAL NOT NULL,
    started_at     REAL,
    finished_at    REAL,
    pid            INTEGER,
    pid_started    REAL,
    gpu_ids        TEXT,
    reason         TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    attempts       TEXT NOT NULL DEFAULT '[]',
    interrupt_window REAL,
    pids           TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS experiments_by_run ON experiments(run, idx);
-- The scheduler's every look at the queue reads this index alone: in the table, a row's
-- columns after its spec lie in the spec's overflow pages. It serves every look by status,
-- so the status index of registries made before it goes: each change of state wrote both.
CREATE INDEX IF NOT EXISTS experiments_queue
    ON experiments(status, created_at, run, idx, name, reason);
DROP INDEX IF EXISTS experiments_by_status;
"""
ADDED_COLUMNS = {
    "attempts": "TEXT NOT NULL DEFAULT '[]'",
    "interrupt_window": "REAL",
    "pids": "TEXT NOT NULL DEFAULT '[]'",
}
"""Columns newer than the first schema, added to registries made before them."""


class DuplicateRunError(Exception):
    """The run name is taken (another CLI call may have just used it)."""


@dataclass(frozen=True)
class RunRecord:
    name: str
    backend: str
    created_at: float
    description: str | None
    strategy: str
    seed: int
    bundle_id: str
    localdir: str


@dataclass(frozen=True, kw_only=True)
class ExperimentRecord(History):
    name: str
    run: str
    index: int
    spec: ExperimentSpec
    created_at: float
    pid: int | None
    pid_started: float | None
    gpu_ids: tuple[int, ...]
    stop_requested: bool
    interrupt_window: float | None = None
    """Seconds ``gridctl interrupt`` gave it to save, while that is pending."""
    processes: tuple[tuple[int, float], ...] = ()
    """The current attempt's scripts (pid, start time), every rank's of a gang: ``pid`` is
    rank 0's alone, and an orphaned gang's ranks must all be ended."""


def _experiment(row: sqlite3.Row) -> ExperimentRecord:
    return ExperimentRecord(
        name=row["name"],
        run=row["run"],
        index=row["idx"],
        spec=ExperimentSpec.from_json(row["spec"]),
        status=row["status"],
        exit_code=row["exit_code"],
        resumes=row["resumes"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        pid=row["pid"],
        pid_started=row["pid_started"],
        gpu_ids=tuple(json.loads(row["gpu_ids"] or "[]")),
        reason=row["reason"],
        stop_requested=bool(row["stop_requested"]),
        attempts=tuple(Attempt(**a) for a in json.loads(row["attempts"])),
        interrupt_window=row["interrupt_window"],
        processes=tuple((int(pid), float(at)) for pid, at in json.loads(row["pids"])),
    )


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**{key: row[key] for key in row.keys()})  # noqa: SIM118 - sqlite3.Row


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        with self._write() as db:
            present = [row["name"] for row in db.execute("PRAGMA table_info(experiments)")]
            for name, definition in ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE experiments ADD COLUMN {name} {definition}")
                    present.append(name)
        # Every column, each spec without its env (``experiments(env=False)``).
        self._without_env = ", ".join(
            "json_remove(spec, '$.env') AS spec" if name == "spec" else name for name in present
        )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- runs -------------------------------------------------------------------------

    def create_run(self, run: RunRecord, experiments: Sequence[ExperimentSpec]) -> None:
        now = time.time()
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE name = ?", (run.name,)).fetchone():
                raise DuplicateRunError(run.name)
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.name,
                    run.backend,
                    run.created_at,
                    run.description,
                    run.strategy,
                    run.seed,
                    run.bundle_id,
                    run.localdir,
                ),
            )
            db.executemany(
                "INSERT INTO experiments (name, run, idx, spec, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(e.name, run.name, e.index, e.to_json(), State.QUEUED, now) for e in experiments],
            )

    def run_exists(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone() is not None

    def get_run(self, name: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE name = ?", (name,)).fetchone()
        return _run(row) if row else None

    def runs(self) -> list[RunRecord]:
        return [_run(r) for r in self._db.execute("SELECT * FROM runs ORDER BY created_at")]

    def delete_run(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM experiments WHERE run = ?", (name,))
            db.execute("DELETE FROM runs WHERE name = ?", (name,))

    # -- experiments ------------------------------------------------------------------

    def experiments(
        self, run: str | None = None, statuses: Iterable[str] | None = None, *, env: bool = True
    ) -> list[ExperimentRecord]:
        """``env=False``: each spec's ``env`` is left empty. The submitter's environment is
        most of a spec's bytes, and what only shows experiments never reads it (a
        1000-experiment status spent a third of its lookup parsing it)."""
        columns = "*" if env else self._without_env
        query, args = f"SELECT {columns} FROM experiments WHERE 1=1", []  # noqa: S608 - our column names
        if run is not None:
            query += " AND run = ?"
            args.append(run)
        if statuses is not None:
            wanted = list(statuses)
            query += f" AND status IN ({_marks(wanted)})"
            args.extend(wanted)
        query += " ORDER BY created_at, run, idx"
        return [_experiment(r) for r in self._db.execute(query, args)]

    def queue(self) -> dict[str, str | None]:
        """The queued experiments' names and reasons, in the order they start: what the
        scheduler reads every tick, without the specs, whose JSON (the submitter's whole
        environment) would cost more to read than all else a tick does."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        cursor.execute(
            "SELECT name, reason FROM experiments WHERE status = ? ORDER BY created_at, run, idx",
            (State.QUEUED,),
        )
        return dict(cursor.fetchall())

    def get_experiment(self, name: str) -> ExperimentRecord | None:
        row = self._db.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        return _experiment(row) if row else None

    def delete_experiment(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM experiments WHERE name = ?", (name,))

    def _read(self, db: sqlite3.Connection, name: str) -> ExperimentRecord | None:
        row = db.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        return _experiment(row) if row else None

    def _save(
        self, db: sqlite3.Connection, move: Move, after: History, name: str, **columns: object
    ) -> bool:
        """Write what ``move`` made of the row, if the row is still in a state it leaves."""
        values = {
            "status": after.status,
            "exit_code": after.exit_code,
            "reason": after.reason,
            "started_at": after.started_at,
            "finished_at": after.finished_at,
            "resumes": after.resumes,
            "attempts": json.dumps([asdict(a) for a in after.attempts]),
            **columns,
        }
        leaves = state.sources(move)
        assignments = ", ".join(f"{column} = ?" for column in values)
        cur = db.execute(
            f"UPDATE experiments SET {assignments} WHERE name = ? AND status IN ({_marks(leaves)})",  # noqa: S608 - only our column names and placeholders
            [*values.values(), name, *leaves],
        )
        return cur.rowcount == 1

    def claim(self, name: str, gpu_ids: Sequence[int]) -> bool:
        """Start a queued experiment's new attempt; False if it was stopped meanwhile."""
        now = time.time()
        with self._write() as db:
            record = self._read(db, name)
            if record is None or record.status not in state.sources(Move.START):
                return False
            started = state.start(record, "local", now)
            return self._save(
                db, Move.START, started, name, gpu_ids=json.dumps(list(gpu_ids)), pids="[]"
            )

    def wait(self, reasons: Mapping[str, str | None]) -> None:
        """Say why queued experiments have not started yet (None: they could)."""
        with self._write() as db:
            db.executemany(
                "UPDATE experiments SET reason = ? WHERE name = ? AND status = ?",
                [(reason, name, State.QUEUED) for name, reason in reasons.items()],
            )

    def phase(self, name: str, reason: str) -> None:
        """What a starting experiment is doing; nothing once it is past starting."""
        with self._write() as db:
            record = self._read(db, name)
            if record is not None and record.status == State.STARTING:
                after = state.phase(record, reason)
                db.execute(
                    "UPDATE experiments SET reason = ?, attempts = ? WHERE name = ? AND status = ?",
                    (
                        after.reason,
                        json.dumps([asdict(a) for a in after.attempts]),
                        name,
                        State.STARTING,
                    ),
                )

    def mark_running(self, name: str, pid: int, pid_started: float) -> None:
        """An experiment deleted meanwhile is left deleted."""
        with self._write() as db:
            record = self._read(db, name)
            if record is not None:
                after = state.running(record)
                pids = _with(record.processes, pid, pid_started)
                self._save(
                    db, Move.RUNNING, after, name, pid=pid, pid_started=pid_started, pids=pids
                )

    def add_process(self, name: str, pid: int, pid_started: float) -> None:
        """A gang's rank R > 0 has launched its script: kept for orphan cleanup only."""
        with self._write() as db:
            record = self._read(db, name)
            if record is not None and record.status in STARTED_STATES:
                db.execute(
                    "UPDATE experiments SET pids = ? WHERE name = ?",
                    (_with(record.processes, pid, pid_started), name),
                )

    def finish(self, name: str, status: str, exit_code: int | None, reason: str | None) -> None:
        now = time.time()
        with self._write() as db:
            record = self._read(db, name)
            if record is not None:
                after = state.finish(record, status, exit_code, reason, now)
                self._save(db, Move.FINISH, after, name, interrupt_window=None)

    def requeue(self, name: str, reason: str | None) -> None:
        """End the current attempt ``interrupted`` and queue the next one (a resume)."""
        now = time.time()
        with self._write() as db:
            record = self._read(db, name)
            if record is not None:
                self._save(
                    db, Move.REQUEUE, state.requeue(record, reason, now), name,
                    pid=None, pid_started=None, gpu_ids=None, interrupt_window=None, pids="[]",
                )  # fmt: skip

    def request_interrupt(self, names: Iterable[str], window: float) -> list[str]:
        """Flag started experiments for an interruption; the names it applies to."""
        flagged = []
        with self._write() as db:
            for name in names:
                cur = db.execute(
                    f"UPDATE experiments SET interrupt_window = ? WHERE name = ? AND {_STARTED}",  # noqa: S608 - placeholders only
                    (window, name, *STARTED_STATES),
                )
                if cur.rowcount:
                    flagged.append(name)
        return flagged

    def request_stop(self, names: Iterable[str]) -> None:
        """Queued experiments stop at once; started ones are flagged for the scheduler."""
        now = time.time()
        with self._write() as db:
            for name in names:
                record = self._read(db, name)
                if record is not None and record.status == State.QUEUED:
                    self._save(db, Move.STOP, state.stop(record, now), name)
                db.execute(
                    f"UPDATE experiments SET stop_requested = 1 WHERE name = ? AND {_STARTED}",  # noqa: S608 - placeholders only
                    (name, *STARTED_STATES),
                )


def _with(processes: Sequence[tuple[int, float]], pid: int, started: float) -> str:
    """The ``pids`` column with one more process."""
    return json.dumps([*map(list, processes), [pid, started]])


def _marks(values: Sequence[object]) -> str:
    """SQL placeholders for ``IN (...)``."""
    return ",".join("?" * len(values))


_STARTED = f"status IN ({_marks(STARTED_STATES)})"
"""The guard of what applies to started experiments only (bind STARTED_STATES to it)."""
