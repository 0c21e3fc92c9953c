"""The script's Python environment: a venv per dependency set, built once and reused.

A venv is made from the base interpreter and layered over it: a ``.pth`` file in its
site-packages adds the base's own site-packages after the venv's, so the venv's packages win
and everything the base has (torch on a framework AMI, the user's own packages locally) is
importable with no install. pip installs into it (``pip --python``): pip sees the base's
packages through that layering and skips what they satisfy, where uv would reinstall them
(a multi-gigabyte torch over the AMI's).

Locally the venv under ``GRIDCTL_HOME/venvs/<key>`` is the cache. On a node the store
shares it between machines (``contract.VenvKeys``): the first machine to claim a key builds
it and uploads an archive, the others wait for the archive and unpack it; a waiter whose
builder has not delivered after ``GRIDCTL_VENV_WAIT`` seconds builds the venv itself. Within
one machine (or one GRIDCTL_HOME) a key is prepared once, under a lock, by whichever
experiment needs it first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gridctl.agent.core.contract import VenvClaim, VenvFailure, VenvKeys, VenvManifest
from gridctl.agent.core.logs import note, stamp
from gridctl.agent.core.spec import ExperimentSpec
from gridctl.agent.core.store import Store
from gridctl.agent.core.units import format_bytes
from gridctl.agent.core.venvkey import (
    PYPROJECT,
    UV_LOCK,
    BasePython,
    DependencyFileError,
    dependency_files,
    venv_key,
)
from gridctl.agent.runner.archive import extract
from gridctl.agent.runner.experiment import PreparationError

BUILDING = "building environment"
"""The phase a starting experiment shows while its venv is prepared."""
WAIT_VARIABLE = "GRIDCTL_VENV_WAIT"
DEFAULT_WAIT = 900.0
POLL = 1.0
"""Seconds between a waiter's looks at the store."""
LAYER = "_gridctl_base.pth"
READY = ".gridctl-ready"
"""Written last into a venv's folder: the venv is whole (it holds the manifest)."""
REASON_LINES = 3
REASON_CHARS = 400
_PROBE = """
import json, os, site, sys
paths = list(site.getsitepackages())
if site.ENABLE_USER_SITE:
    paths.append(site.getusersitepackages())
paths = [p for p in paths if os.path.isdir(p)]
print(json.dumps({
    "executable": sys.executable,
    "base": getattr(sys, "_base_executable", sys.executable),
    "version": "%s-%d.%d.%d" % ((sys.implementation.name,) + tuple(sys.version_info[:3])),
    "site_packages": [os.path.realpath(p) for p in paths],
}))
"""


class VenvError(PreparationError):
    """The venv could not be made; the message is the experiment's reason, one line."""


def probe(
    python: str | Path,
    *,
    image: str = "local",
    root: Path = Path("/"),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> BasePython:
    """What ``python`` (a path, a venv's interpreter or a shim) is, asked of itself.
    ``root``: where the machine's own ``/`` lies (a node's root), for the identity."""
    try:
        done = subprocess.run(
            [str(python), "-E", "-c", _PROBE],
            capture_output=True,
            check=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise VenvError(f"cannot inspect the Python interpreter {python}: {exc}") from None
    executable = Path(found["executable"])
    identity = str(executable)
    with contextlib.suppress(ValueError):
        identity = "/" + executable.relative_to(root).as_posix()
    return BasePython(
        executable=Path(found["base"]),
        version=found["version"],
        site_packages=tuple(found["site_packages"]),
        identity=identity,
        image=image,
        arch=platform.machine(),
    )


def activation(venv: Path) -> dict[str, str]:
    """What the script's environment gains: the venv's ``python`` and tools first on its
    PATH (the runner puts ``PATH`` in front of the script's own)."""
    return {"PATH": str(venv / "bin"), "VIRTUAL_ENV": str(venv)}


def site_packages(venv: Path, base: BasePython) -> Path:
    major, minor = base.version.split("-", 1)[1].split(".")[:2]
    return venv / "lib" / f"python{major}.{minor}" / "site-packages"


def create(venv: Path, base: BasePython) -> None:
    """An empty venv over ``base`` (or, over the files of a restored one, its interpreter
    links and settings for this machine), layered over the base's site-packages."""
    command = [str(base.executable), "-m", "venv", "--without-pip", str(venv)]
    done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        detail = _one_line(done.stderr.decode(errors="replace").splitlines())
        raise VenvError(f"cannot create a Python environment: {detail}")
    layer(venv, base)


def layer(venv: Path, base: BasePython) -> None:
    """The ``.pth`` that appends the base's site-packages (their own ``.pth`` files too:
    editable installs, a framework's paths) after the venv's."""
    lines = [f"import site; site.addsitedir({path!r})\n" for path in base.site_packages]
    target = site_packages(venv, base)
    target.mkdir(parents=True, exist_ok=True)
    (target / LAYER).write_text("".join(lines))


def relocate(venv: Path, old: str) -> None:
    """Scripts pip wrote name the builder's venv in their ``#!`` line: name this one."""
    before = f"#!{old}/bin/".encode()
    after = f"#!{venv}/bin/".encode()
    for script in (venv / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        with script.open("rb") as handle:
            head = handle.read(len(before))
        if head == before:
            data = script.read_bytes()
            script.write_bytes(after + data[len(before) :])


def install(venv: Path, exec_dir: Path, files: tuple[Path, ...], log: BinaryIO) -> None:
    """pip, with its output in the experiment's log; raises VenvError with its last lines."""
    main = files[0]
    target = ["--python", str(venv / "bin" / "python"), "install", "--no-input"]
    if main.name == PYPROJECT:
        requirements = _project_requirements(exec_dir / main)
        if not requirements:
            note(log, f"{main} lists no dependencies")
            return
        command = [sys.executable, "-m", "pip", *target, *requirements]
    else:
        command = [sys.executable, "-m", "pip", *target, "-r", str(main)]
    with tempfile.TemporaryDirectory(prefix="gridctl-pins-") as pins:
        lock = next((exec_dir / f for f in files[1:] if f.name == UV_LOCK), None)
        if lock is not None:
            constraints = Path(pins) / "constraints.txt"
            constraints.write_text("".join(f"{pin}\n" for pin in _locked_versions(lock)))
            command += ["-c", str(constraints)]
            note(log, f"versions held to {lock.relative_to(exec_dir)}")
        note(log, f"pip install -r {main}" if main.name != PYPROJECT else f"pip install ({main})")
        log.flush()
        _pip(command, exec_dir, main, log)


def _pip(command: list[str], exec_dir: Path, main: Path, log: BinaryIO) -> None:
    """Runs ``command``, every line of it into the log; the last ones are the reason it failed."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.Popen(
        command,
        cwd=exec_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    last: deque[str] = deque(maxlen=40)
    with proc.stdout:
        for line in proc.stdout:
            log.write(stamp() + line.rstrip(b"\n") + b"\n")
            log.flush()
            if text := line.decode(errors="replace").strip():
                last.append(text)
    code = proc.wait()
    if code != 0:
        raise VenvError(f"installing {main} failed: {_one_line(list(last))}")


def _project_requirements(pyproject: Path) -> list[str]:
    """``[project] dependencies``: the project's own code runs from the bundle, so only
    what it depends on goes into the venv."""
    deps = _toml(pyproject).get("project", {}).get("dependencies", [])
    return [str(d) for d in deps]


def _locked_versions(lock: Path) -> list[str]:
    """``name==version`` for each package ``uv.lock`` takes from an index, as pip constraints:
    pip then resolves the project's dependencies to exactly the locked versions. A package
    the lock holds in several versions (one per platform or Python) is left to pip, and so is
    anything not from an index (the project itself, paths, git)."""
    packages = [p for p in _toml(lock).get("package", []) if isinstance(p, dict)]
    names = Counter(str(p.get("name")) for p in packages)
    return sorted(
        f"{p['name']}=={p['version']}"
        for p in packages
        if names[str(p.get("name"))] == 1
        and "version" in p
        and "registry" in (p.get("source") or {})
    )


def _toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pip's own copy of tomli
        from pip._vendor import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
        return data
    except (OSError, ValueError) as exc:
        raise VenvError(f"cannot read {path.name}: {exc}") from None


def _one_line(lines: list[str]) -> str:
    """pip's error lines when it printed some, else its last lines, as one line."""
    errors = [line for line in lines if line.startswith("ERROR:")]
    chosen = errors[-REASON_LINES:] if errors else lines[-REASON_LINES:]
    text = " ".join(" ".join(chosen).split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


def pack(venv: Path, archive: Path) -> tuple[str, int, tuple[str, ...]]:
    """An uncompressed tar of the venv (wheels are compressed already, and unpacking must
    be fast): its sha256, size and the top-level names. Links to the base interpreter are
    left out (``create`` makes them on the machine that unpacks it), and so are bytecode
    caches (stale once unpacked elsewhere)."""

    def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(member.name).parts
        if "__pycache__" in parts or member.name in (READY, "pyvenv.cfg"):
            return None
        if member.issym() and os.path.isabs(member.linkname):
            return None
        return member

    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(venv.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return _sha256(archive), archive.stat().st_size, tuple(sorted(p.name for p in venv.iterdir()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Prepared:
    """How a venv came to be ready for an experiment."""

    path: Path
    how: str
    """``reused`` (already on this machine), ``restored`` (from the store) or ``built``."""


class Venvs:
    """Every venv of one machine (a node) or one GRIDCTL_HOME (local)."""

    def __init__(
        self,
        store: Store | None,
        root: Path,
        *,
        image: str = "local",
        machine_root: Path = Path("/"),
        wait: float | None = None,
        builder: str = "local",
    ) -> None:
        """``store`` None: venvs are kept only under ``root``. ``wait``: how long a machine
        waits for another one's build (default: ``GRIDCTL_VENV_WAIT``, else 900 s)."""
        self.store = store
        self.root = Path(root)
        self.image = image
        self.machine_root = machine_root
        self.wait = wait if wait is not None else float(os.environ.get(WAIT_VARIABLE, DEFAULT_WAIT))
        self.builder = builder
        self._lock = threading.Lock()
        self._keys: dict[str, threading.Lock] = {}
        self._failures: dict[str, VenvFailure] = {}

    def prepare(
        self,
        exec_dir: Path,
        spec: ExperimentSpec,
        python: str | Path | None,
        log: BinaryIO,
        phase: Callable[[str], None],
    ) -> dict[str, str]:
        """The venv the spec's dependency file asks for, over ``python`` (the base): the
        environment additions for the script (none without a dependency file, or with
        ``--no_env``). Raises VenvError, its message the experiment's reason."""
        if not spec.venv or spec.image is not None:
            return {}
        try:
            files = dependency_files(exec_dir, spec.dependency_file)
        except DependencyFileError as exc:
            raise VenvError(str(exc)) from None
        if not files:
            return {}
        if python is None:
            raise VenvError(f"no python on the script's PATH to build {files[0]} for")
        phase(BUILDING)
        # Asked each time, as the script would start it: a shim (pyenv) may pick another
        # interpreter for another project or environment.
        env = {**os.environ, **spec.env}
        base = probe(python, image=self.image, root=self.machine_root, cwd=exec_dir, env=env)
        contents = [(f.as_posix(), (exec_dir / f).read_bytes()) for f in files]
        key = venv_key(contents, base)
        started = time.monotonic()
        prepared = self._prepare(key, base, exec_dir, files, log, time.time())
        took = time.monotonic() - started
        note(log, f"Python environment {key[:12]} {prepared.how} in {took:.1f} s: {prepared.path}")
        log.flush()
        return activation(prepared.path)

    def _prepare(
        self,
        key: str,
        base: BasePython,
        exec_dir: Path,
        files: tuple[Path, ...],
        log: BinaryIO,
        arrived: float,
    ) -> Prepared:
        """Under the key's lock. A failure that came while this caller waited for the lock
        is its failure too (the same files fail the same way); a later caller tries again."""
        venv = self.root / key
        with self._held(key):
            failed = self._failures.get(key)
            if failed is not None and failed.at >= arrived:
                raise VenvError(failed.reason)
            if (venv / READY).is_file():
                return Prepared(venv, "reused")
            if venv.exists():  # a preparation that did not finish
                shutil.rmtree(venv)
            try:
                if self.store is not None:
                    return self._shared(VenvKeys(key), venv, base, exec_dir, files, log)
                self._build(venv, base, exec_dir, files, log)
            except VenvError as exc:
                self._failures[key] = VenvFailure(str(exc), time.time())
                raise
            (venv / READY).write_text("{}")
            return Prepared(venv, "built")

    @contextlib.contextmanager
    def _held(self, key: str) -> Iterator[None]:
        """The key to this thread alone among this process's, and to this process alone
        among those sharing the root (several local agents, a gang's ranks)."""
        with self._lock:
            lock = self._keys.setdefault(key, threading.Lock())
        self.root.mkdir(parents=True, exist_ok=True)
        with lock, (self.root / f".{key}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _build(
        self, venv: Path, base: BasePython, exec_dir: Path, files: tuple[Path, ...], log: BinaryIO
    ) -> None:
        note(log, f"building the Python environment from {', '.join(map(str, files))}")
        log.flush()
        create(venv, base)
        try:
            install(venv, exec_dir, files, log)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise

    def _shared(
        self,
        keys: VenvKeys,
        venv: Path,
        base: BasePython,
        exec_dir: Path,
        files: tuple[Path, ...],
        log: BinaryIO,
    ) -> Prepared:
        """The store's copy when there is one; else this machine builds it, when it claims
        the key or finds its builder failed, or when the builder is too slow to wait for."""
        store = self.store
        assert store is not None
        present = _present(store, keys)
        if keys.manifest in present:
            return self._restore(keys, venv, base, log)
        since = time.time()
        deadline = time.monotonic() + self.wait
        claimed = keys.failed in present or store.put_if_absent(
            keys.claim, VenvClaim(self.builder, since).encode()
        )
        if not claimed:
            note(log, "another machine is building this Python environment: waiting for it")
            log.flush()
        while not claimed:
            present = _present(store, keys)
            if keys.manifest in present:
                return self._restore(keys, venv, base, log)
            if keys.failed in present:
                failure = VenvFailure.decode(store.get_bytes(keys.failed))
                if failure.at >= since:
                    raise VenvError(failure.reason)
            if time.monotonic() >= deadline:
                note(log, f"it did not come within {self.wait:.0f} s: building it here")
                break
            time.sleep(POLL)
        if keys.manifest in _present(store, keys):
            return self._restore(keys, venv, base, log)
        try:
            self._build(venv, base, exec_dir, files, log)
        except VenvError as exc:
            store.put_bytes(keys.failed, VenvFailure(str(exc), time.time()).encode())
            raise
        self._upload(keys, venv, base, log)
        (venv / READY).write_text("{}")
        return Prepared(venv, "built")

    def _upload(self, keys: VenvKeys, venv: Path, base: BasePython, log: BinaryIO) -> None:
        """Archive, then manifest: a reader that sees the manifest finds the whole archive.
        A manifest another machine wrote meanwhile is kept (its archive is as good)."""
        store = self.store
        assert store is not None
        archive = self.root / f".{keys.key}.tar"
        try:
            sha256, size, names = pack(venv, archive)
            if keys.manifest in _present(store, keys):
                return
            store.put_file(keys.archive, archive)
            manifest = VenvManifest(sha256, size, base.version, time.time(), names, str(venv))
            store.put_bytes(keys.manifest, manifest.encode())
            note(log, f"Python environment stored ({format_bytes(size)})")
        finally:
            archive.unlink(missing_ok=True)

    def _restore(self, keys: VenvKeys, venv: Path, base: BasePython, log: BinaryIO) -> Prepared:
        """Download (boto3's transfer manager: parallel ranged GETs), check against the
        manifest, unpack with the bundle's safety rules, make it this machine's."""
        store = self.store
        assert store is not None
        manifest = VenvManifest.decode(store.get_bytes(keys.manifest))
        archive = self.root / f".{keys.key}.tar"
        try:
            store.get_file(keys.archive, archive)
            digest = _sha256(archive)
            if digest != manifest.sha256:
                raise VenvError(
                    f"the stored Python environment {keys.key[:12]} is corrupt"
                    f" (sha256 {digest[:12]}, manifest says {manifest.sha256[:12]})"
                )
            extract(archive, venv)
        finally:
            archive.unlink(missing_ok=True)
        create(venv, base)
        relocate(venv, manifest.root)
        (venv / READY).write_text(manifest.encode().decode())
        note(log, f"Python environment restored from the store ({format_bytes(manifest.size)})")
        return Prepared(venv, "restored")


def _present(store: Store, keys: VenvKeys) -> set[str]:
    """Which of the key's objects exist, in one listing: a look at a missing object
    could not tell it from a denied one where the node may not list (S3 answers 403)."""
    return set(store.list(keys.base))
