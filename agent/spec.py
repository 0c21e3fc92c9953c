"""What one experiment is: the plain record a backend hands to the agent."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

STATES = ("queued", "starting", "running", "interrupted", "succeeded", "failed", "stopped")
ACTIVE_STATES = ("queued", "starting", "running")
ENDED_STATES = ("interrupted", "succeeded", "failed", "stopped")


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything the agent needs to run one experiment, serialisable as JSON.

    ``argv`` is the exact vector that executes (``python``, the script path relative to
    the project root, then its arguments); ``python`` and ``bash`` are looked up on the
    PATH of ``env`` (locally the submitter's, so the interpreter the user's PATH chose).
    """

    run: str
    name: str
    index: int
    argv: tuple[str, ...]
    bundle_key: str
    params: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cpus: float = 1.0
    gpus: int = 0
    memory: int = 0
    auto_resume: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        data = json.loads(text)
        data["argv"] = tuple(data["argv"])
        return cls(**data)
