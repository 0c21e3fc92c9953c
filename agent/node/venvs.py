"""The node's part before each script starts: its venv, shared through the bucket.

One ``Venvs`` per node (``runner.venv``) over the bucket, under the node's root; the base
is the node's (``node.python``). A script without a dependency file runs on that base as
it is: the agent's PATH already has the base's ``bin`` first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.store import Store
from gridctl.agent.runner.experiment import BeforeLaunch
from gridctl.agent.runner.venv import Venvs


class NodeVenvs:
    """Made once the node knows its bucket; every experiment of the node shares it."""

    def __init__(self, root: Path, base: Path, image: str, builder: str) -> None:
        self.root = root
        self.base = base
        self.image = image
        self.builder = builder
        self._lock = threading.Lock()
        self._venvs: Venvs | None = None

    def venvs(self, store: Store) -> Venvs:
        with self._lock:
            if self._venvs is None:
                self._venvs = Venvs(
                    store,
                    self.root / "opt" / "gridctl" / "venvs",
                    image=self.image,
                    machine_root=self.root,
                    builder=self.builder,
                )
            return self._venvs

    def hook(self, store: Store, spec: ExperimentSpec) -> BeforeLaunch:
        venvs = self.venvs(store)

        def prepare(exec_dir: Path, log: BinaryIO, phase: Callable[[str], None]) -> dict[str, str]:
            return venvs.prepare(exec_dir, spec, self.base, log, phase)

        return prepare
