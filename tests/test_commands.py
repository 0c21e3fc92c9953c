"""The logic of ``cli/commands.py`` (finding names, waiting, choosing what to stop or
interrupt, validating flags) against an in-memory backend: unit tests of pure logic, the
real backends being driven end to end elsewhere."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gridctl.agent.core.spec import DatastoreMount
from gridctl.agent.core.store import LocalStore
from gridctl.cli import commands
from gridctl.cli.backends.base import ExperimentStatus, RunStatus
from gridctl.cli.bundle import DOWNLOADS_MARKER
from gridctl.cli.errors import GridctlError

UNKNOWN = "no run or experiment named 'nope' (see gridctl status)"


class MemoryBackend:
    """The Backend protocol over a dict of runs, recording what commands ask of it."""

    def __init__(self, name: str, store: LocalStore) -> None:
        self.name = name
        self.store = store
        self.known: dict[str, RunStatus] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.looks = 0
        self.upcoming: list[str] = []
        """States every experiment of a run takes at the next looks (``run``), in order."""

    def add(
        self,
        run: str,
        *states: str,
        created_at: float = 0.0,
        datastore: DatastoreMount | None = None,
        nodes: int = 1,
    ) -> None:
        experiments = tuple(
            ExperimentStatus(
                f"{run}-exp{i}", run, state, {}, ("train.py",), datastore=datastore, nodes=nodes
            )
            for i, state in enumerate(states)
        )
        self.known[run] = RunStatus(run, self.name, created_at, None, 0, "grid_search", experiments)

    def _set(self, run: str, state: str) -> None:
        old = self.known[run]
        experiments = tuple(
            ExperimentStatus(e.name, run, state, {}, e.argv) for e in old.experiments
        )
        self.known[run] = RunStatus(
            run, self.name, old.created_at, None, 0, old.strategy, experiments
        )

    def check_plan(self, plan) -> list[str]:
        return []

    def run_exists(self, name: str) -> bool:
        return name in self.known

    def submit(self, plan, *, bundle_key: str, bundle_id: str, progress=None) -> None:
        self.calls.append(("submit", (bundle_key,)))

    def runs(self) -> list[RunStatus]:
        return list(self.known.values())

    def run(self, name: str) -> RunStatus:
        if name not in self.known:
            raise GridctlError(f"no run named {name!r}")
        self.looks += 1
        if self.upcoming:
            self._set(name, self.upcoming.pop(0))
        return self.known[name]

    def experiments(self, names: Sequence[str]) -> list[ExperimentStatus]:
        found: dict[str, ExperimentStatus] = {}
        every = {e.name: e for run in self.known.values() for e in run.experiments}
        for name in names:
            if name in self.known:
                found.update((e.name, e) for e in self.known[name].experiments)
            elif name in every:
                found[name] = every[name]
            else:
                raise GridctlError(f"no run or experiment named {name!r}")
        return list(found.values())

    def explain_waits(self, experiments: Sequence[ExperimentStatus]) -> list[ExperimentStatus]:
        """Each queued experiment waits "for room", and the call is counted."""
        self.calls.append(("explain_waits", tuple(e.name for e in experiments)))
        return [
            dataclasses.replace(e, reason="for room") if e.status == "queued" else e
            for e in experiments
        ]

    def logs(
        self, experiment: str, *, follow: bool, tail: int | None, node: int = 0
    ) -> Iterator[str]:
        shown = (experiment, str(follow), str(tail)) + ((f"node {node}",) if node else ())
        self.calls.append(("logs", shown))
        return iter([f"{experiment} says hello"])

    def artifacts(self, names: Sequence[str], dest: Path, match: str | None) -> list[Path]:
        self.calls.append(("artifacts", (*names, str(match))))
        return [dest / name for name in names]

    def stop(self, names: Sequence[str]) -> list[ExperimentStatus]:
        self.calls.append(("stop", tuple(names)))
        return self.experiments(names)

    def interrupt(
        self, names: Sequence[str], window: float, node: int | None = None
    ) -> list[ExperimentStatus]:
        shown = (*names, str(window)) + ((f"node {node}",) if node is not None else ())
        self.calls.append(("interrupt", shown))
        return self.experiments(names)

    def delete(self, names: Sequence[str]) -> list[str]:
        self.calls.append(("delete", tuple(names)))
        return [e.name for e in self.experiments(names)]

    def delete_datastore(self, name: str, version: int | None) -> list[int]:
        self.calls.append(("delete_datastore", (name, str(version))))
        return [version or 1]


class World:
    """A GRIDCTL_HOME whose backends (``local`` and a second default one) live in memory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.local = MemoryBackend("local", LocalStore(home / "local"))
        self.other = MemoryBackend("other", LocalStore(home / "other"))

    def get_backend(self, name: str, home: Path) -> MemoryBackend:
        assert home == self.home
        return {"local": self.local, "other": self.other}[name]

    def calls(self) -> list[tuple[str, tuple[str, ...]]]:
        return self.local.calls + self.other.calls


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> World:
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.json").write_text(json.dumps({"default_cloud": "other"}))
    found = World(home)
    monkeypatch.setattr(commands, "get_backend", found.get_backend)
    monkeypatch.setattr(commands, "POLL", 0)
    return found


def test_a_name_is_found_in_whichever_backend_knows_it(world):
    world.local.add("here", "running")
    world.other.add("there", "succeeded", "failed")
    assert commands.run_status(world.home, "there").backend == "other"
    assert commands.run_status(world.home, "here").backend == "local"
    experiment = commands.status(world.home, "there-exp1")
    assert isinstance(experiment, ExperimentStatus)
    assert (experiment.name, experiment.status) == ("there-exp1", "failed")
    run = commands.status(world.home, "there")
    assert isinstance(run, RunStatus)
    assert run.status == "failed"


def test_status_shows_why_experiments_wait_and_lookups_do_not_ask(world):
    world.other.add("mixed", "queued", "running")
    run = commands.status(world.home, "mixed")
    assert isinstance(run, RunStatus)
    assert [e.reason for e in run.experiments] == ["for room", None]
    experiment = commands.status(world.home, "mixed-exp0")
    assert isinstance(experiment, ExperimentStatus) and experiment.reason == "for room"
    assert world.calls() == [
        ("explain_waits", ("mixed-exp0", "mixed-exp1")),
        ("explain_waits", ("mixed-exp0",)),
    ]
    commands.logs(world.home, "mixed-exp0", follow=False, tail=None)
    assert commands.run_status(world.home, "mixed").experiments[0].reason is None
    assert [call for call, _ in world.calls()] == ["explain_waits", "explain_waits", "logs"]


def test_runs_of_every_backend_come_oldest_first(world):
    world.other.add("second", "queued", created_at=2)
    world.local.add("third", "queued", created_at=3)
    world.local.add("first", "queued", created_at=1)
    assert [r.name for r in commands.runs(world.home)] == ["first", "second", "third"]


def test_only_local_runs_are_seen_until_another_backend_is_the_default(world):
    (world.home / "settings.json").unlink()
    world.local.add("here", "queued")
    world.other.add("there", "queued")
    assert commands.clouds(world.home) == ["local"]
    assert [r.name for r in commands.runs(world.home)] == ["here"]
    with pytest.raises(GridctlError, match="no run or experiment named 'there'"):
        commands.status(world.home, "there")


@pytest.mark.parametrize(
    "command",
    [
        lambda home: commands.status(home, "nope"),
        lambda home: commands.wait(home, "nope"),
        lambda home: commands.logs(home, "nope", follow=False, tail=None),
        lambda home: commands.artifacts(home, ["here", "nope"], home / "dest", None),
        lambda home: commands.stop(home, ["here", "nope"]),
        lambda home: commands.delete(home, ["here", "nope"]),
        lambda home: commands.interrupt(home, ["here", "nope"], 30),
    ],
    ids=["status", "wait", "logs", "artifacts", "stop", "delete", "interrupt"],
)
def test_an_unknown_name_is_refused_before_any_backend_acts(world, command):
    world.local.add("here", "running")
    with pytest.raises(GridctlError) as refused:
        command(world.home)
    assert str(refused.value) == UNKNOWN
    assert refused.value.exit_code == 2
    assert world.calls() == []
    assert not (world.home / "dest").exists()


def test_wait_returns_once_the_run_has_ended_and_reports_each_change_once(world):
    world.other.add("slow", "queued")
    world.other.upcoming = ["queued", "queued", "running", "running", "succeeded", "failed"]
    seen: list[str] = []
    final = commands.wait(world.home, "slow", on_change=lambda run: seen.append(run.status))
    assert final.status == "succeeded"
    assert seen == ["queued", "running", "succeeded"]
    assert world.other.looks == 5


@pytest.mark.parametrize("state", ["succeeded", "failed", "stopped", "interrupted"])
def test_wait_returns_at_the_first_look_at_an_ended_run(world, state):
    world.local.add("done", state)
    assert commands.wait(world.home, "done").status == state
    assert world.local.looks == 1


def test_logs_of_a_run_of_one_experiment_are_that_experiments(world):
    world.other.add("solo", "running")
    lines = list(commands.logs(world.home, "solo", follow=True, tail=5))
    assert lines == ["solo-exp0 says hello"]
    assert world.other.calls == [("logs", ("solo-exp0", "True", "5"))]


def test_logs_of_a_run_of_several_experiments_ask_for_one_by_name(world):
    world.local.add("few", "running", "running")
    world.local.add("many", *["running"] * 7)
    with pytest.raises(GridctlError) as few:
        commands.logs(world.home, "few", follow=False, tail=None)
    assert str(few.value) == "run few has 2 experiments (few-exp0, few-exp1); name one of them"
    with pytest.raises(GridctlError) as many:
        commands.logs(world.home, "many", follow=False, tail=None)
    shown = "many-exp0, many-exp1, many-exp2, many-exp3, many-exp4, ..."
    assert str(many.value) == f"run many has 7 experiments ({shown}); name one of them"
    assert world.calls() == []


def test_a_negative_tail_is_refused_before_the_name_is_looked_up(world):
    with pytest.raises(GridctlError) as refused:
        commands.logs(world.home, "nope", follow=False, tail=-1)
    assert str(refused.value) == "--tail must be zero or more, got -1"
    world.local.add("solo", "running")
    assert list(commands.logs(world.home, "solo-exp0", follow=False, tail=0))
    assert world.local.calls == [("logs", ("solo-exp0", "False", "0"))]


def test_an_invalid_match_is_refused_before_anything_is_downloaded(world):
    world.local.add("here", "succeeded")
    dest = world.home / "dest"
    with pytest.raises(GridctlError) as refused:
        commands.artifacts(world.home, ["here"], dest, "out/(")
    assert str(refused.value).startswith("--match 'out/(' is not a valid regular expression: ")
    assert refused.value.exit_code == 2
    assert world.calls() == []
    assert not dest.exists()


def test_artifacts_come_from_each_names_backend_into_one_marked_folder(world):
    world.local.add("here", "succeeded")
    world.other.add("there", "succeeded")
    dest = world.home / "dest"
    copied = commands.artifacts(world.home, ["there", "here-exp0"], dest, r"\.json$")
    assert copied == [dest / "there", dest / "here-exp0"]
    assert world.other.calls == [("artifacts", ("there", r"\.json$"))]
    assert world.local.calls == [("artifacts", ("here-exp0", r"\.json$"))]
    assert (dest / DOWNLOADS_MARKER).is_file()


@pytest.mark.parametrize("verb", ["stop", "delete"])
def test_stop_and_delete_hand_each_backend_its_share_at_once(world, verb):
    world.local.add("a", "running", "running", "queued")
    world.other.add("b", "running")
    getattr(commands, verb)(world.home, ["a-exp0", "b", "a-exp2"])
    assert world.local.calls == [(verb, ("a-exp0", "a-exp2"))]
    assert world.other.calls == [(verb, ("b",))]


@pytest.mark.parametrize("window", [0, -1, 3600.5])
def test_interrupt_refuses_a_window_out_of_range(world, window):
    world.local.add("here", "running")
    with pytest.raises(GridctlError) as refused:
        commands.interrupt(world.home, ["here"], window)
    assert str(refused.value) == "--window must be above 0 and at most 3600 seconds"
    assert world.calls() == []


def test_interrupt_takes_the_running_experiments_a_run_name_denotes(world):
    world.local.add("fast", "running", "starting")
    found = commands.interrupt(world.home, ["fast"], 3600)
    assert [e.name for e in found] == ["fast-exp0", "fast-exp1"]
    assert world.local.calls == [("interrupt", ("fast-exp0", "fast-exp1", "3600"))]


def test_interrupt_refuses_experiments_that_are_not_running(world):
    world.local.add("mixed", "running", "queued", "succeeded")
    with pytest.raises(GridctlError) as refused:
        commands.interrupt(world.home, ["mixed"], 30)
    assert str(refused.value) == (
        "only running experiments can be interrupted; not running: mixed-exp1, mixed-exp2"
    )
    assert world.calls() == []


def test_logs_of_another_rank_are_asked_of_the_backend(world):
    world.other.add("gang", "running", nodes=3)
    assert list(commands.logs(world.home, "gang", follow=False, tail=None, node=2))
    assert world.other.calls == [("logs", ("gang-exp0", "False", "None", "node 2"))]


@pytest.mark.parametrize(
    ("nodes", "node", "message"),
    [
        (2, 2, "--node 2: gang-exp0 spans 2 nodes, ranks 0 to 1"),
        (3, 7, "--node 7: gang-exp0 spans 3 nodes, ranks 0 to 2"),
        (1, 1, "--node 1: gang-exp0 runs on one node, rank 0"),
        (2, -1, "--node must be zero or more, got -1"),
    ],
)
def test_logs_of_a_rank_the_experiment_lacks_are_refused(world, nodes, node, message):
    world.local.add("gang", "running", nodes=nodes)
    with pytest.raises(GridctlError) as refused:
        commands.logs(world.home, "gang-exp0", follow=False, tail=None, node=node)
    assert str(refused.value) == message
    assert refused.value.exit_code == 2
    assert world.calls() == []


def test_interrupt_hands_the_backend_the_rank_whose_machine_goes(world):
    world.other.add("gang", "running", "running", nodes=2)
    found = commands.interrupt(world.home, ["gang"], 30, node=1)
    assert [e.name for e in found] == ["gang-exp0", "gang-exp1"]
    assert world.other.calls == [("interrupt", ("gang-exp0", "gang-exp1", "30", "node 1"))]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (2, "--node 2: wide-exp0 spans 2 nodes, ranks 0 to 1"),
        (-1, "--node must be zero or more, got -1"),
    ],
)
def test_interrupt_of_a_rank_an_experiment_lacks_interrupts_nothing(world, node, message):
    """Checked for every named experiment, on every backend, before any is interrupted."""
    world.local.add("tall", "running", nodes=3)
    world.other.add("wide", "running", nodes=2)
    with pytest.raises(GridctlError) as refused:
        commands.interrupt(world.home, ["tall", "wide"], 30, node=node)
    assert str(refused.value) == message
    assert world.calls() == []


def test_interrupt_refuses_idle_experiments_of_any_backend_before_interrupting_any(world):
    world.local.add("busy", "running")
    world.other.add("idle", "queued")
    with pytest.raises(GridctlError, match="not running: idle-exp0"):
        commands.interrupt(world.home, ["busy", "idle"], 30)
    assert world.calls() == []


def test_a_datastore_in_use_is_deleted_only_when_forced(world):
    world.other.add("user", "running", datastore=DatastoreMount("imgs", 2, "/data"))
    world.other.add("ended", "succeeded", datastore=DatastoreMount("imgs", 1, "/data"))
    for version in (None, 2):
        with pytest.raises(GridctlError, match="is in use by user-exp0; stop them or pass"):
            commands.datastore_delete(world.home, "imgs", version, force=False, cloud=None)
    assert world.other.calls == []
    assert commands.datastore_delete(world.home, "imgs", 1, force=False, cloud=None) == [1]
    assert commands.datastore_delete(world.home, "imgs", 2, force=True, cloud=None) == [2]
    assert commands.datastore_delete(world.home, "text", None, force=False, cloud="local") == [1]
    assert world.other.calls == [
        ("delete_datastore", ("imgs", "1")),
        ("delete_datastore", ("imgs", "2")),
    ]
    assert world.local.calls == [("delete_datastore", ("text", "None"))]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cloud": "local"}, "gridctl up makes cloud environments; --cloud local needs none"),
        ({"name": "Team"}, "--name 'Team': use 1-24 lowercase letters, digits and '-'"),
        ({"name": "a" * 25}, "--name 'aaaaaaaaaaaaaaaaaaaaaaaaa': use 1-24 lowercase"),
        ({"vpc_id": "vpc-1"}, "--vpc-id and --subnet-ids go together"),
        ({"subnet_ids": "subnet-1, "}, "--vpc-id and --subnet-ids go together"),
    ],
)
def test_up_refuses_bad_input_before_any_aws_call(world, options, message):
    arguments = {
        "cloud": "aws",
        "region": None,
        "name": "default",
        "ami": None,
        "vpc_id": None,
        "subnet_ids": None,
        "credential": None,
        "step": lambda text: pytest.fail(f"up began: {text}"),
        **options,
    }
    with pytest.raises(GridctlError) as refused:
        commands.up(world.home, **arguments)
    assert str(refused.value).startswith(message)
