"""How long work says how far it has got: one callback type for all of it.

Packing and uploading a code bundle, hashing and uploading a datastore, and Terraform
creating or destroying resources all report through ``Progress``; the CLI shows it as a
bar, a spinner or plain lines. A store's transfer reports only the bytes it just moved
(boto3's ``Callback``); ``counter`` turns those into ``Progress`` for one phase.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[str, int, int | None], None]
"""Called with the phase ("uploading", "aws_s3_bucket.this created"), the units done so far
(bytes, resources) and the units in all, None when nobody knows beforehand."""


def counter(phase: str, total: int, progress: Progress | None) -> Callable[[int], None] | None:
    """A thread-safe byte counter for one phase that reports each step to ``progress``;
    announces the phase at once."""
    if progress is None:
        return None
    lock = threading.Lock()
    done = 0
    progress(phase, 0, total)

    def advance(count: int) -> None:
        nonlocal done
        with lock:
            done += count
            progress(phase, done, total)

    return advance
