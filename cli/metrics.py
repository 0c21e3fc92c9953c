"""An experiment's scalar metrics, read from its artifacts for the web view's charts.

Three sources, at any depth below the artifacts folder (SPEC §12): TensorBoard event files
(a name containing ``tfevents``), ``metrics.csv`` (a header row, as Lightning's CSVLogger
writes) and ``metrics.jsonl`` (one JSON object per line). A file that cannot be read leaves
a note and the others still count.

Names: a metric keeps its own name unless files in different folders both have it (a gang's
``node-1/`` copy of rank 0's logs, TensorBoard's ``train/`` and ``val/`` runs); then each is
named ``FOLDER/NAME``, FOLDER relative to the artifacts folder and empty (no prefix) for the
folder itself. Files in one folder share names: a resumed TensorBoard run writes a new event
file beside the old one, and its points continue the same series. Each series holds one
value per step, the one written last (files taken in key order: event files are named by
their start time).

Parsing every file of a 100-experiment sweep on each page load is too slow (issue 16), so
with a ``cache_dir`` each file's parsed series are kept under the tag the store lists for
it, and only new or changed files are read again: one JSON file per experiment in
``cache_dir/metrics/``, named by the prefix alone, so each store wants a cache_dir of its
own (another store's tags never match: its experiments would be read again each time).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridctl.agent.core.store import Store

Point = tuple[float, float]
"""(step, value); the step is an int when integral."""

Series = dict[str, list[Point]]

CACHE_FOLDER = "metrics"
_CACHE_VERSION = 1
NO_TENSORBOARD = (
    "TensorBoard event files found but the tensorboard package is not installed: "
    "pip install 'gridctl[ui]'"
)


@dataclass(frozen=True)
class Metrics:
    series: dict[str, list[Point]]
    """Metric name -> points sorted by step."""
    notes: tuple[str, ...] = ()
    """Why something could not be read, one line each."""

    def last(self) -> dict[str, float]:
        """Each metric's value at its last step (a sweep's table compares these)."""
        return {name: points[-1][1] for name, points in self.series.items() if points}


class _NoTensorBoard(Exception):
    """The tensorboard package is not importable."""


@dataclass(frozen=True)
class _Parsed:
    """One source file's series under the tag it was read at."""

    tag: str
    series: Series


def _is_source(key: str) -> bool:
    name = posixpath.basename(key)
    return "tfevents" in name or name in ("metrics.csv", "metrics.jsonl")


def read_metrics(store: Store, prefix: str, cache_dir: Path | None = None) -> Metrics:
    """The metrics of the files below ``prefix`` (an artifacts folder, with its trailing
    '/'). With ``cache_dir``, one listing of the store and a read of only the files whose
    tag changed since the last call (see the module docstring)."""
    listed = {k: v for k, v in store.listing(prefix).items() if _is_source(k)}
    cache = _cache_file(cache_dir, prefix) if cache_dir else None
    cached, intact = _load_cache(cache, prefix) if cache else ({}, True)
    parsed = {k: p for k, p in cached.items() if k in listed and p.tag == listed[k].tag}
    changed = not intact or parsed.keys() != cached.keys()
    notes: list[str] = []
    for key in sorted(k for k in listed if k not in parsed):
        try:
            series = _parse_key(store, key)
        except _NoTensorBoard:
            if NO_TENSORBOARD not in notes:
                notes.append(NO_TENSORBOARD)
            continue
        except FileNotFoundError:
            continue  # deleted since the listing
        except (OSError, ValueError, csv.Error) as exc:
            notes.append(f"{key[len(prefix) :]}: cannot be read ({_one_line(exc)})")
            continue
        parsed[key] = _Parsed(listed[key].tag, series)
        changed = True
    if cache and changed:
        _save_cache(cache, prefix, parsed)
    return Metrics(_merge(prefix, parsed), tuple(notes))


def _parse_key(store: Store, key: str) -> Series:
    """The key's series, read in place when the store has it on this machine, else from a
    download removed once read (a sweep's files never pile up on disk)."""
    local = store.local_path(key)
    if local is not None:
        return _parse(key, local)
    fd, name = tempfile.mkstemp(prefix="gridctl-metrics-")
    os.close(fd)
    try:
        store.get_file(key, Path(name))
        return _parse(key, Path(name))
    finally:
        Path(name).unlink(missing_ok=True)


def _parse(key: str, path: Path) -> Series:
    name = posixpath.basename(key)
    if name == "metrics.csv":
        return _from_rows(_csv_rows(path))
    if name == "metrics.jsonl":
        return _from_rows(_jsonl_rows(path))
    return _from_rows(_tensorboard_rows(path))


def _float(value: object) -> float | None:
    """A number (a bool is not one here) as a float; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        return None


def _parsed_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _step(value: float | None) -> float | None:
    """A finite number as a step, an int when integral; None for anything else."""
    if value is None or not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


Row = tuple[float, dict[str, float]]
"""A step and the values written at it (any, finite or not)."""


def _from_rows(rows: Iterable[Row]) -> Series:
    """Rows to series: finite values only, the last value written at a step, by step."""
    by_name: dict[str, dict[float, float]] = {}
    for step, values in rows:
        for name, value in values.items():
            if math.isfinite(value):
                by_name.setdefault(name, {})[step] = value
    return {name: sorted(points.items()) for name, points in by_name.items()}


def _csv_rows(path: Path) -> Iterator[Row]:
    """A header row then values; blank cells where a metric was not logged. The step is
    the ``step`` column when there is one, else the row's index."""
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return
        stepped = "step" in header
        for index, cells in enumerate(reader):
            row = dict(zip(header, cells, strict=False))  # a half-written last row
            step = _step(_parsed_float(row.pop("step", ""))) if stepped else index
            if step is None:
                continue
            values = {
                n: v for n, v in ((n, _parsed_float(c)) for n, c in row.items()) if v is not None
            }
            yield step, values


def _jsonl_rows(path: Path) -> Iterator[Row]:
    """One object per line; the step is its numeric ``step`` else the line's index, and
    every other number (not a bool) a metric. A line that is not an object is skipped."""
    with open(path, encoding="utf-8") as file:
        for index, line in enumerate(file):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            written = _step(_float(record.pop("step", None)))
            values = {n: v for n, v in ((n, _float(v)) for n, v in record.items()) if v is not None}
            yield (index if written is None else written), values


def _tensorboard_rows(path: Path) -> Iterator[Row]:
    """Scalars as TF1 and torch's SummaryWriter write them (``simple_value``) and as TF2
    does (a rank-0 tensor of the scalars plugin). Only a tag's first value names its
    plugin, so images, histograms and text are told by that one. The loader is the one
    without tensorboard's compat layers, which would convert every ``simple_value`` to a
    tensor and back: twice the time, for the same numbers."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import (
            LegacyEventFileLoader,
        )
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise _NoTensorBoard from exc
    plugins: dict[str, str] = {}
    for event in LegacyEventFileLoader(str(path)).Load():
        values = {}
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name:
                plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                values[value.tag] = float(value.simple_value)
            elif kind == "tensor" and plugins.get(value.tag, "scalars") == "scalars":
                if value.tensor.tensor_shape.dim:
                    continue  # not a scalar
                try:
                    array = tensor_util.make_ndarray(value.tensor)
                except TypeError:  # a dtype numpy has no counterpart for
                    continue
                if array.dtype.kind in "iuf":
                    values[value.tag] = float(array)
        if values:
            yield event.step, values


def _merge(prefix: str, parsed: dict[str, _Parsed]) -> Series:
    """All files' series under the names the module docstring describes."""
    folders: dict[str, set[str]] = {}
    for key, file in parsed.items():
        for name in file.series:
            folders.setdefault(name, set()).add(_folder(prefix, key))
    merged: dict[str, dict[float, float]] = {}
    for key in sorted(parsed):
        folder = _folder(prefix, key)
        for name, points in parsed[key].series.items():
            shown = f"{folder}/{name}" if folder and len(folders[name]) > 1 else name
            merged.setdefault(shown, {}).update(points)
    return {name: sorted(points.items()) for name, points in sorted(merged.items())}


def _folder(prefix: str, key: str) -> str:
    return posixpath.dirname(key[len(prefix) :])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _cache_file(cache_dir: Path, prefix: str) -> Path:
    return cache_dir / CACHE_FOLDER / f"{hashlib.sha256(prefix.encode()).hexdigest()[:32]}.json"


def _load_cache(path: Path, prefix: str) -> tuple[dict[str, _Parsed], bool]:
    """The cached files, and whether the cache was sound: a missing one is (nothing to
    rewrite), a corrupt or foreign one is not (it is rebuilt)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, True
    except (OSError, ValueError):
        return {}, False
    try:
        if data["version"] != _CACHE_VERSION or data["prefix"] != prefix:
            return {}, False
        return {key: _parsed_from(entry) for key, entry in data["files"].items()}, True
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}, False


def _parsed_from(entry: Any) -> _Parsed:
    """One cached file's entry, checked (inline: a sweep's page checks many points): a
    wrong shape raises."""
    tag = entry["tag"]
    series = {
        name: [(step, value) for step, value in points] for name, points in entry["series"].items()
    }
    numbers = (int, float)  # JSON's; a bool is not one here
    if type(tag) is not str or not all(
        type(s) in numbers and type(v) in numbers for points in series.values() for s, v in points
    ):
        raise TypeError("not a cache entry")
    return _Parsed(tag, series)


def _save_cache(path: Path, prefix: str, parsed: dict[str, _Parsed]) -> None:
    """Written whole then renamed: a reader never sees half a cache. A cache that cannot be
    written only costs the next call its reads."""
    data = {
        "version": _CACHE_VERSION,
        "prefix": prefix,
        "files": {k: {"tag": p.tag, "series": p.series} for k, p in sorted(parsed.items())},
    }
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                # dumps, not dump: only dumps uses the C encoder (twice as fast).
                out.write(json.dumps(data, allow_nan=False, separators=(",", ":")))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
