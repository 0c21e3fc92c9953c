"""The venv module on its own: the key, dependency files, layering, and the store protocol
(a LocalStore standing for the bucket, a machine per root), with pip installing wheels made
on the spot so that no index is needed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wheels import make_wheel

from gridctl.agent.core.contract import VenvFailure, VenvKeys
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.store import LocalStore
from gridctl.agent.core.venvkey import (
    BasePython,
    DependencyFileError,
    dependency_files,
    venv_key,
)
from gridctl.agent.runner.venv import BUILDING, LAYER, VenvError, Venvs, create, probe

BASE = BasePython(
    Path("/usr/bin/python3"), "cpython-3.11.7", ("/s",), "/usr/bin/python3", "ami-1", "x86_64"
)
PYTHON = getattr(sys, "_base_executable", sys.executable)

paths = st.text("abcdefghij/._-", min_size=1, max_size=12)
file_sets = st.dictionaries(paths, st.binary(max_size=40), min_size=1, max_size=4)


@given(file_sets, st.randoms())
def test_the_key_is_stable_under_file_order(files, random):
    pairs = list(files.items())
    shuffled = pairs[:]
    random.shuffle(shuffled)
    assert venv_key(pairs, BASE) == venv_key(shuffled, BASE)


@given(file_sets, st.data())
def test_the_key_changes_when_any_input_changes(files, data):
    pairs = list(files.items())
    key = venv_key(pairs, BASE)
    index = data.draw(st.integers(0, len(pairs) - 1))
    path, content = pairs[index]
    other = data.draw(st.binary(max_size=40).filter(lambda b: b != content))
    changed = [*pairs[:index], (path, other), *pairs[index + 1 :]]
    assert venv_key(changed, BASE) != key
    renamed = data.draw(paths.filter(lambda p: p not in files))
    moved = [*pairs[:index], (renamed, content), *pairs[index + 1 :]]
    assert venv_key(moved, BASE) != key
    assert venv_key([*pairs, (renamed, content)], BASE) != key
    field = data.draw(st.sampled_from(["version", "identity", "image", "arch"]))
    value = data.draw(
        st.text("abcxyz0123.-", min_size=1, max_size=8).filter(lambda v: v != getattr(BASE, field))
    )
    assert venv_key(pairs, dataclasses.replace(BASE, **{field: value})) != key


def test_dependency_files_are_found_in_grids_order(tmp_path):
    assert dependency_files(tmp_path, None) == ()
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    assert dependency_files(tmp_path, None) == (Path("pyproject.toml"),)
    (tmp_path / "uv.lock").write_text("")
    assert dependency_files(tmp_path, None) == (Path("pyproject.toml"), Path("uv.lock"))
    (tmp_path / "requirements.txt").write_text("six\n")
    assert dependency_files(tmp_path, None) == (Path("requirements.txt"),)
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "gpu.txt").write_text("six\n")
    assert dependency_files(tmp_path, "env/gpu.txt") == (Path("env/gpu.txt"),)
    for bad in ("missing.txt", "../requirements.txt", "/etc/passwd"):
        with pytest.raises(DependencyFileError):
            dependency_files(tmp_path, bad)


def _site(python: Path) -> Path:
    found = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


def _run(python: Path, code: str) -> str:
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_venv_sees_its_bases_packages_and_its_own_win(tmp_path):
    """The base is itself a venv (as locally, a user's): what it has stays importable, and
    the layered venv's own copy of a module comes first."""
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(tmp_path / "user")], check=True)
    user = tmp_path / "user" / "bin" / "python"
    site = _site(user)
    (site / "only_in_base.py").write_text("WHERE = 'base'\n")
    (site / "in_both.py").write_text("WHERE = 'base'\n")
    base = probe(user)
    assert str(site) in base.site_packages
    assert base.identity == str(user)
    venv = tmp_path / "layered"
    create(venv, base)
    python = venv / "bin" / "python"
    (_site(python) / "in_both.py").write_text("WHERE = 'venv'\n")
    assert _run(python, "import only_in_base; print(only_in_base.WHERE)") == "base"
    assert _run(python, "import in_both; print(in_both.WHERE)") == "venv"
    assert _run(python, "import sys; print(sys.prefix)") == str(venv)
    assert (_site(python) / LAYER).is_file()


def _spec(**changes: object) -> ExperimentSpec:
    return dataclasses.replace(ExperimentSpec("r", "e", 0, ("python", "t.py"), "b"), **changes)


def _project(root: Path, name: str = "gridctl_tiny", source: str = "VALUE = 1\n") -> Path:
    wheel = make_wheel(root / "wheels", name, source)
    (root / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    return root


def _prepare(venvs: Venvs, exec_dir: Path, log: Path, spec: ExperimentSpec | None = None):
    phases: list[str] = []
    with log.open("ab") as handle:
        additions = venvs.prepare(exec_dir, spec or _spec(), PYTHON, handle, phases.append)
    return additions, phases


def test_a_machine_restores_what_another_built_without_installing(tmp_path):
    store = LocalStore(tmp_path / "store")
    exec_dir = _project(tmp_path / "exec")
    first = Venvs(store, tmp_path / "one", builder="one")
    built, phases = _prepare(first, exec_dir, tmp_path / "one.log")
    assert phases == [BUILDING]
    assert "pip install" in (tmp_path / "one.log").read_text()
    second = Venvs(store, tmp_path / "two", builder="two")
    restored, _ = _prepare(second, exec_dir, tmp_path / "two.log")
    log = (tmp_path / "two.log").read_text()
    assert "restored" in log and "pip install" not in log
    assert restored["VIRTUAL_ENV"] == str(next((tmp_path / "two").glob("[0-9a-f]*")))
    python = Path(restored["PATH"]) / "python"
    assert _run(python, "import gridctl_tiny, sys; print(gridctl_tiny.VALUE, sys.prefix)") == (
        f"1 {restored['VIRTUAL_ENV']}"
    )
    again, _ = _prepare(second, exec_dir, tmp_path / "again.log")
    assert again == restored
    assert "reused" in (tmp_path / "again.log").read_text()


def test_a_changed_file_or_no_env_or_no_file(tmp_path):
    venvs = Venvs(None, tmp_path / "venvs")
    exec_dir = _project(tmp_path / "exec")
    one, _ = _prepare(venvs, exec_dir, tmp_path / "log")
    _project(exec_dir, source="VALUE = 2\n")
    (exec_dir / "requirements.txt").write_text(
        "# another\n./wheels/gridctl_tiny-1.0-py3-none-any.whl\n"
    )
    two, _ = _prepare(venvs, exec_dir, tmp_path / "log")
    assert one["VIRTUAL_ENV"] != two["VIRTUAL_ENV"]
    assert _prepare(venvs, exec_dir, tmp_path / "log", _spec(venv=False)) == ({}, [])
    (exec_dir / "requirements.txt").unlink()
    assert _prepare(venvs, exec_dir, tmp_path / "log") == ({}, [])


def test_machines_racing_for_a_key_build_it_once(tmp_path):
    store = LocalStore(tmp_path / "store")
    exec_dir = _project(tmp_path / "exec")
    results: dict[int, dict[str, str]] = {}

    def machine(n: int) -> None:
        results[n], _ = _prepare(
            Venvs(store, tmp_path / f"m{n}", builder=f"m{n}"), exec_dir, tmp_path / f"{n}.log"
        )

    threads = [threading.Thread(target=machine, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logs = [(tmp_path / f"{n}.log").read_text() for n in range(3)]
    assert sum("pip install" in log for log in logs) == 1
    assert len(results) == 3
    key = Path(results[0]["VIRTUAL_ENV"]).name
    assert store.exists(VenvKeys(key).manifest)


def test_a_failed_install_is_recorded_and_fails_its_waiters_at_once(tmp_path):
    store = LocalStore(tmp_path / "store")
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    (exec_dir / "requirements.txt").write_text("./wheels/gridctl_nothing-1.0-py3-none-any.whl\n")
    with pytest.raises(VenvError) as built:
        _prepare(Venvs(store, tmp_path / "builder", builder="b"), exec_dir, tmp_path / "b.log")
    reason = str(built.value)
    assert reason.startswith("installing requirements.txt failed: ")
    assert "\n" not in reason and "gridctl_nothing" in reason
    key = venv_key(
        [("requirements.txt", (exec_dir / "requirements.txt").read_bytes())], probe(PYTHON)
    )
    keys = VenvKeys(key)
    assert VenvFailure.decode(store.get_bytes(keys.failed)).reason == reason
    assert not (tmp_path / "builder" / key).exists()

    # A later machine tries again (the failure may have been the index's), and a machine
    # waiting for that one hears of its failure at once, not after GRIDCTL_VENV_WAIT.
    store.delete_prefix(keys.failed)
    failures: list[str] = []
    waiting = threading.Event()

    class Log:
        """The waiter's log: tells the test when the waiter has started waiting."""

        def __init__(self) -> None:
            self.lines: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.lines.append(data)
            if b"waiting for it" in data:
                waiting.set()
            return len(data)

        def flush(self) -> None:
            pass

    def waiter() -> None:
        venvs = Venvs(store, tmp_path / "waiter", builder="w", wait=600)
        try:
            venvs.prepare(exec_dir, _spec(), PYTHON, Log(), lambda _: None)  # type: ignore[arg-type]
        except VenvError as exc:
            failures.append(str(exc))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(60)
    store.put_bytes(
        keys.failed, VenvFailure("installing requirements.txt failed: boom", 1e12).encode()
    )
    thread.join(60)
    assert failures == ["installing requirements.txt failed: boom"]
    again, _ = _prepare_fails(store, exec_dir, tmp_path)
    assert "pip install" in again


def _prepare_fails(store: LocalStore, exec_dir: Path, tmp_path: Path) -> tuple[str, str]:
    with pytest.raises(VenvError) as caught:
        _prepare(Venvs(store, tmp_path / "later", builder="l"), exec_dir, tmp_path / "l.log")
    return (tmp_path / "l.log").read_text(), str(caught.value)


def test_a_pyproject_installs_its_dependencies_not_the_project(tmp_path):
    """The project's code runs from the bundle: only what it depends on goes in the venv,
    and a uv.lock beside it is part of the key."""
    exec_dir = tmp_path / "exec"
    wheel = make_wheel(tmp_path / "wheels", "gridctl_dep", "VALUE = 'dep'\n")
    (exec_dir / "src").mkdir(parents=True)
    dependency = f"gridctl_dep @ {wheel.as_uri()}"
    (exec_dir / "pyproject.toml").write_text(
        f'[project]\nname = "mine"\nversion = "1"\ndependencies = ["{dependency}"]\n'
    )
    venvs = Venvs(None, tmp_path / "venvs")
    plain, phases = _prepare(venvs, exec_dir, tmp_path / "log")
    assert phases == [BUILDING]
    python = Path(plain["PATH"]) / "python"
    assert _run(python, "import gridctl_dep; print(gridctl_dep.VALUE)") == "dep"
    assert "mine" not in _run(
        python, "import importlib.metadata as m; print(m.version('gridctl_dep'))"
    )
    missing = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; m.version('mine')"]
    )
    assert missing.returncode != 0
    (exec_dir / "uv.lock").write_text("version = 1\n")
    locked, _ = _prepare(venvs, exec_dir, tmp_path / "log")
    assert locked["VIRTUAL_ENV"] != plain["VIRTUAL_ENV"]


def test_a_requirement_the_base_has_is_not_installed_again(tmp_path):
    """Why pip and not uv: through the layering pip sees the base's packages (a framework
    AMI's torch) and skips what they satisfy."""
    framework = tmp_path / "pytorch"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(framework)], check=True)
    python = framework / "bin" / "python"
    wheel = make_wheel(tmp_path / "wheels", "gridctl_torch", "VALUE = 'framework'\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)],
        check=True,
    )
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    (exec_dir / "requirements.txt").write_text("gridctl_torch\n")
    with (tmp_path / "log").open("ab") as log:
        additions = Venvs(None, tmp_path / "venvs").prepare(
            exec_dir, _spec(), python, log, lambda _: None
        )
    assert "Requirement already satisfied: gridctl_torch" in (tmp_path / "log").read_text()
    venv_python = Path(additions["PATH"]) / "python"
    assert not list(_site(venv_python).glob("gridctl_torch*"))
    assert _run(venv_python, "import gridctl_torch; print(gridctl_torch.VALUE)") == "framework"
