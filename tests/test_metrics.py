"""Metrics for the web view's charts, read from files the usual loggers really write
(torch's SummaryWriter, tensorboard's own writer, Lightning's CSVLogger) and hand-written
edge cases, from a real LocalStore."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.agent.core.store import LocalStore
from gridctl.cli.metrics import NO_TENSORBOARD, Metrics, read_metrics

ARTIFACTS = "runs/sweep/exp-0/artifacts/"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def put(store: LocalStore, name: str, text: str) -> None:
    store.put_bytes(ARTIFACTS + name, text.encode())


def upload(store: LocalStore, folder: Path, under: str = "") -> None:
    """Every file below ``folder`` into the artifacts, as the agent's sync does."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        store.put_file(ARTIFACTS + under + path.relative_to(folder).as_posix(), path)


def test_summary_writer_scalars_old_and_new_style(store: LocalStore, tmp_path: Path):
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(4):
        writer.add_scalar("train/loss", 1 / 2**step, step)  # simple_value
        writer.add_scalar("lr", 0.25 * step, step * 10, new_style=True)  # a tensor
    writer.add_scalar("train/loss", math.nan, 4)
    writer.add_histogram("weights", np.arange(10.0), 0)
    writer.add_image("sample", np.zeros((3, 4, 4)), 0)
    writer.add_text("note", "hello", 0)
    writer.close()
    upload(store, tmp_path / "tb", "tb/")

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {
        "train/loss": [(0, 1.0), (1, 0.5), (2, 0.25), (3, 0.125)],
        "lr": [(0, 0.0), (10, 0.25), (20, 0.5), (30, 0.75)],
    }
    assert metrics.notes == ()
    assert metrics.last() == {"train/loss": 0.125, "lr": 0.75}


def tf2_event_file(folder: Path, tag: str, points: list[tuple[int, float]]) -> None:
    """What TF2's ``tf.summary.scalar`` writes (a rank-0 tensor, its plugin named in the
    tag's first value only), beside a histogram and a text tensor, with tensorboard's own
    writer and protos: TensorFlow is not needed for either."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.histogram import metadata as histogram_metadata
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.plugins.text import metadata as text_metadata
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    Value = summary_pb2.Summary.Value
    writer = EventFileWriter(str(folder))
    for index, (step, number) in enumerate(points):
        first = index == 0
        values = [
            Value(
                tag=tag,
                tensor=tensor_util.make_tensor_proto(np.float32(number)),
                metadata=scalar_metadata.create_summary_metadata("", "") if first else None,
            ),
            Value(
                tag="weights",
                tensor=tensor_util.make_tensor_proto(np.ones((2, 3), np.float64)),
                metadata=histogram_metadata.create_summary_metadata("", "") if first else None,
            ),
            Value(
                tag="count",  # a rank-0 number, but of the text plugin
                tensor=tensor_util.make_tensor_proto(np.int64(7)),
                metadata=text_metadata.create_summary_metadata("", "") if first else None,
            ),
        ]
        summary = summary_pb2.Summary(value=values)
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0 + step, summary=summary))
    writer.close()


def test_tf2_tensor_scalars(store: LocalStore, tmp_path: Path):
    tf2_event_file(tmp_path / "logs", "accuracy", [(0, 0.5), (100, 0.75), (200, 0.875)])
    upload(store, tmp_path / "logs")

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {"accuracy": [(0, 0.5), (100, 0.75), (200, 0.875)]}


def test_lightning_csv_logger(store: LocalStore, tmp_path: Path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path / "out"))
    logger.log_metrics({"train_loss": 0.5, "epoch": 0}, step=0)
    logger.log_metrics({"train_loss": 0.25, "epoch": 0}, step=1)
    logger.log_metrics({"val_acc": 0.75, "epoch": 0}, step=1)
    logger.log_metrics({"train_loss": 0.125, "epoch": 1}, step=2)
    logger.save()
    upload(store, tmp_path / "out")
    assert store.exists(ARTIFACTS + "lightning_logs/version_0/metrics.csv")

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {
        "epoch": [(0, 0.0), (1, 0.0), (2, 1.0)],
        "train_loss": [(0, 0.5), (1, 0.25), (2, 0.125)],
        "val_acc": [(1, 0.75)],
    }


def test_csv_edge_cases(store: LocalStore):
    put(store, "a/metrics.csv", "loss,acc\n1.5,\n,0.5\nnan,inf\nx,2\n")
    put(store, "b/metrics.csv", "")
    put(store, "c/metrics.csv", "step,score\n")
    put(store, "d/metrics.csv", "step,score\n0.5,1\n,2\nlater,3\n7,4\n")

    metrics = read_metrics(store, ARTIFACTS)

    # No step column: the row's index. Blank, non-numeric and non-finite cells are no points.
    assert metrics.series == {
        "loss": [(0, 1.5)],
        "acc": [(1, 0.5), (3, 2.0)],
        "score": [(0.5, 1.0), (7, 4.0)],
    }
    assert metrics.notes == ()


def test_jsonl_edge_cases(store: LocalStore):
    lines = [
        {"step": 30, "loss": 1, "acc": 0.5, "done": True, "name": "x", "nested": {"a": 1}},
        "not json {",
        [1, 2],
        {"loss": 2.5},  # no step: its line's index
        {"step": "7", "loss": 0.5},  # a step that is not a number: the line's index too
        {"step": 5, "loss": 10**400, "acc": None},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    put(store, "metrics.jsonl", text + '\n{"step": 6, "loss": NaN, "acc": Infinity}\n')

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {"loss": [(3, 2.5), (4, 0.5), (30, 1.0)], "acc": [(30, 0.5)]}


def test_unreadable_file_leaves_a_note(store: LocalStore):
    store.put_bytes(ARTIFACTS + "bad/metrics.csv", b"loss\n\xff\xfe\n")
    put(store, "metrics.jsonl", '{"step": 1, "loss": 0.5}\n')

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {"loss": [(1, 0.5)]}
    (note,) = metrics.notes
    assert note.startswith("bad/metrics.csv: cannot be read")


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
numbers = st.floats(allow_nan=True, allow_infinity=True)
steps = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False))
tables = st.dictionaries(
    names.filter(lambda n: n != "step"), st.dictionaries(steps, numbers, max_size=8), max_size=5
)


def expected(table: dict[str, dict[float, float]]) -> dict[str, list[tuple[float, float]]]:
    """What reading back gives: finite values only, each metric sorted by step."""
    kept = {
        n: sorted((s, v) for s, v in pts.items() if math.isfinite(v)) for n, pts in table.items()
    }
    return {n: pts for n, pts in kept.items() if pts}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables)
def test_jsonl_round_trip(tmp_path: Path, table: dict[str, dict[float, float]]):
    store = LocalStore(tmp_path / "jsonl")
    store.delete_prefix(ARTIFACTS)
    rows = [{"step": s, n: v} for n, points in table.items() for s, v in points.items()]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    put(store, "metrics.jsonl", text)

    assert read_metrics(store, ARTIFACTS).series == expected(table)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables)
def test_csv_round_trip(tmp_path: Path, table: dict[str, dict[float, float]]):
    import csv
    import io

    store = LocalStore(tmp_path / "csv")
    store.delete_prefix(ARTIFACTS)
    header = ["step", *table]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for name, points in table.items():
        for step, value in points.items():
            writer.writerow([repr(step), *(repr(value) if n == name else "" for n in table)])
    put(store, "metrics.csv", out.getvalue())

    assert read_metrics(store, ARTIFACTS).series == expected(table)


def test_a_name_in_two_folders_is_prefixed_by_each(store: LocalStore):
    """A gang's rank 1 logs under node-1/ what rank 0 logs at the top; TensorBoard's runs
    are folders. Files in one folder (a resumed run's second event file) share names."""
    put(store, "lightning_logs/version_0/metrics.csv", "step,loss,acc\n0,1.0,0.5\n")
    put(store, "node-1/lightning_logs/version_0/metrics.csv", "step,loss\n0,2.0\n")
    put(store, "metrics.jsonl", '{"step": 0, "loss": 3.0, "lr": 0.1}\n')
    put(store, "node-1/lightning_logs/version_0/metrics.jsonl", '{"step": 1, "loss": 4.0}\n')

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {
        "lightning_logs/version_0/loss": [(0, 1.0)],
        "node-1/lightning_logs/version_0/loss": [(0, 2.0), (1, 4.0)],
        "loss": [(0, 3.0)],
        "acc": [(0, 0.5)],
        "lr": [(0, 0.1)],
    }


def test_a_resumed_tensorboard_run_continues_its_series(store: LocalStore, tmp_path: Path):
    """The resumed writer's file sorts after the first (its name holds its start time) and
    its value wins at a step both wrote."""
    tf2_event_file(tmp_path / "first", "loss", [(0, 4.0), (1, 3.0), (2, 2.0)])
    tf2_event_file(tmp_path / "second", "loss", [(2, 1.5), (3, 1.0)])
    (first,) = (tmp_path / "first").iterdir()
    (second,) = (tmp_path / "second").iterdir()
    store.put_file(ARTIFACTS + "tb/events.out.tfevents.1700000000.host.1.0", first)
    store.put_file(ARTIFACTS + "tb/events.out.tfevents.1700000500.host.2.0", second)

    metrics = read_metrics(store, ARTIFACTS)

    assert metrics.series == {"loss": [(0, 4.0), (1, 3.0), (2, 1.5), (3, 1.0)]}


def test_without_tensorboard_a_note_and_the_other_sources(
    store: LocalStore, tmp_path: Path, monkeypatch
):
    tf2_event_file(tmp_path / "tb", "accuracy", [(0, 0.5)])
    upload(store, tmp_path / "tb", "tb/")
    put(store, "metrics.jsonl", '{"step": 1, "loss": 0.5}\n')
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)

    metrics = read_metrics(store, ARTIFACTS, tmp_path / "cache")

    assert metrics == Metrics({"loss": [(1, 0.5)]}, (NO_TENSORBOARD,))
    monkeypatch.undo()  # installed now: the event file is read, not remembered as unreadable
    again = read_metrics(store, ARTIFACTS, tmp_path / "cache")
    assert again == Metrics({"loss": [(1, 0.5)], "accuracy": [(0, 0.5)]})


class CountingStore(LocalStore):
    """A LocalStore that counts the files read (metrics reads a LocalStore's in place)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: list[str] = []

    def local_path(self, key: str) -> Path:
        self.read.append(key.removeprefix(ARTIFACTS))
        return super().local_path(key)


def test_the_cache_reads_only_new_and_changed_files(tmp_path: Path):
    store = CountingStore(tmp_path / "store")
    cache = tmp_path / "cache"
    put(store, "a/metrics.jsonl", '{"step": 0, "loss": 1.0}\n')
    put(store, "b/metrics.csv", "step,acc\n0,0.5\n")
    put(store, "notes.txt", "not a metrics file\n")

    first = read_metrics(store, ARTIFACTS, cache)
    assert first.series == {"loss": [(0, 1.0)], "acc": [(0, 0.5)]}
    assert sorted(store.read) == ["a/metrics.jsonl", "b/metrics.csv"]
    (cache_file,) = (cache / "metrics").iterdir()
    written = cache_file.stat().st_mtime_ns

    store.read.clear()
    assert read_metrics(store, ARTIFACTS, cache) == first
    assert store.read == []
    assert cache_file.stat().st_mtime_ns == written  # nothing changed, nothing rewritten

    put(store, "a/metrics.jsonl", '{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.5}\n')
    put(store, "c/metrics.jsonl", '{"step": 0, "lr": 0.1}\n')
    store.delete_prefix(ARTIFACTS + "b")
    changed = read_metrics(store, ARTIFACTS, cache)
    assert changed.series == {"loss": [(0, 1.0), (1, 0.5)], "lr": [(0, 0.1)]}
    assert sorted(store.read) == ["a/metrics.jsonl", "c/metrics.jsonl"]

    store.read.clear()
    cache_file.write_text('{"version": 1, "files": [')
    assert read_metrics(store, ARTIFACTS, cache) == changed
    assert sorted(store.read) == ["a/metrics.jsonl", "c/metrics.jsonl"]
    store.read.clear()
    assert read_metrics(store, ARTIFACTS, cache) == changed
    assert store.read == []

    wrong = json.loads(cache_file.read_text())  # sound JSON, not sound points
    wrong["files"][ARTIFACTS + "c/metrics.jsonl"]["series"]["lr"] = [[0, "0.1"]]
    cache_file.write_text(json.dumps(wrong))
    assert read_metrics(store, ARTIFACTS, cache) == changed
    assert sorted(store.read) == ["a/metrics.jsonl", "c/metrics.jsonl"]


def test_each_experiment_has_its_own_cache(tmp_path: Path):
    store = CountingStore(tmp_path / "store")
    other = "runs/sweep/exp-1/artifacts/"
    put(store, "metrics.jsonl", '{"step": 0, "loss": 1.0}\n')
    store.put_bytes(other + "metrics.jsonl", b'{"step": 0, "loss": 2.0}\n')

    for _ in range(2):
        assert read_metrics(store, ARTIFACTS, tmp_path).last() == {"loss": 1.0}
        assert read_metrics(store, other, tmp_path).last() == {"loss": 2.0}
    assert len(store.read) == 2
    assert len(list((tmp_path / "metrics").iterdir())) == 2
