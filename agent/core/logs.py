"""Experiment logs: every line of stdout+stderr stamped with the time it was read."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def stamp(now: float | None = None) -> bytes:
    """UTC ISO-8601 with milliseconds: sortable and unambiguous across machines."""
    now = time.time() if now is None else now
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{whole}.{int(now % 1 * 1000):03d}Z ".encode()


def note(log: BinaryIO, message: str) -> None:
    """A line of gridctl's own in an experiment's log, told apart from the script's."""
    log.write(stamp() + f"gridctl: {message}\n".encode())


def pump(source: BinaryIO, sink: BinaryIO) -> None:
    """Copy lines from the script's pipe to the log until the pipe closes."""
    for line in iter(source.readline, b""):
        if not line.endswith(b"\n"):
            line += b"\n"
        sink.write(stamp() + line)
        sink.flush()


def tail(path: Path, lines: int) -> list[str]:
    if not path.exists():
        return []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        return list(deque(f, maxlen=lines))


def follow(
    path: Path, ended: Callable[[], bool], *, start: int = 0, poll: float = 0.2
) -> Iterator[str]:
    """Yield complete lines as they are written until ``ended()`` and the file is drained."""
    position, pending = start, ""
    while True:
        finished = ended()
        if path.exists():
            with path.open("r", encoding="utf-8", errors="replace") as f:
                f.seek(position)
                chunk = f.read()
                position = f.tell()
            pending += chunk
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line + "\n"
        if finished:
            if pending:
                yield pending + "\n"
            return
        time.sleep(poll)
