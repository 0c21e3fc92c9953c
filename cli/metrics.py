"""STAND-IN (to be replaced by wt-metrics)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gridctl.agent.core.store import Store

Point = tuple[float, float]


@dataclass(frozen=True)
class Metrics:
    series: dict[str, list[Point]]
    notes: tuple[str, ...] = ()

    def last(self) -> dict[str, float]:
        return {k: v[-1][1] for k, v in self.series.items() if v}


def read_metrics(store: Store, prefix: str, cache_dir: Path | None = None) -> Metrics:
    series: dict[str, list[Point]] = {}
    for key in store.list(prefix):
        if key.endswith("metrics.jsonl"):
            for i, line in enumerate(store.get_bytes(key).decode().splitlines()):
                obj = json.loads(line)
                step = obj.pop("step", i)
                for k, v in obj.items():
                    series.setdefault(k, []).append((step, v))
    return Metrics(series)
