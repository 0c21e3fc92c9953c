"""A node's Python environment for a requirements set of a few tens of MB (numpy, pandas,
scipy): prepared from a warm cache, timed against what every node did before, a plain
``pip install -r requirements.txt`` of the same file into a fresh venv (target: ratio
<= 0.3).

Warm cache: another node already built the venv for this key and put it in the store (an
S3Store on a moto server over TLS), so a node that prepares it downloads, verifies and
unpacks the archive. Each timed preparation is a node of its own (a fresh node root), and
the venv layers over a bare interpreter, so the archive holds all three packages, as the
baseline installs them. The baseline starts with an empty pip cache, as on a new node; both
sides read the same package index. Medians over repeated runs, both in this process.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from targets import verdict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.aws.emulator import REGION, moto_bucket  # noqa: E402

REQUIREMENTS = "numpy\npandas\nscipy\n"
IMPORTS = "import numpy, pandas, scipy.stats"
BUCKET = "gridctl-bench-venv"
REPEATS = 3
RATIO_TARGET = 0.3


def median_time(action: Callable[[int], object]) -> float:
    """Median seconds of ``action(i)`` over the repeats; each repeat gets its own ``i``."""
    times = []
    for i in range(REPEATS):
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pip_fresh_venv(target: Path, requirements: Path, pip_cache: Path) -> None:
    """The baseline: a new venv and ``pip install -r`` into it, with an empty pip cache."""
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    installed = subprocess.run(
        [str(target / "bin" / "pip"), "install", "--quiet", "-r", str(requirements)],
        env={**os.environ, "PIP_CACHE_DIR": str(pip_cache)},
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"pip install -r {requirements} failed: {installed.stderr.strip()}")


def imports(python: Path | str, env: dict[str, str] | None = None) -> None:
    """The packages import with ``python`` (a prepared venv that does not is no figure)."""
    subprocess.run([str(python), "-c", IMPORTS], env=env, check=True, capture_output=True)


def megabytes(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6


def bare_python(work: Path) -> Path:
    """An interpreter with no packages of its own (a venv without pip), as a plain AMI's system
    Python is: the venv layered over it then holds all three packages."""
    bare = work / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    return bare / "bin" / "python"


def warm_prepare(store, root: Path, python: Path, exec_dir: Path) -> dict[str, str]:
    """One node's preparation through the venv module: the environment additions for the
    script (PATH with the venv's bin first, VIRTUAL_ENV)."""
    from gridctl.agent.core.spec import ExperimentSpec
    from gridctl.agent.runner.venv import Venvs

    spec = ExperimentSpec("bench", "bench-exp0", 0, ("python", "train.py"), "bundles/b.tar.gz")
    root.mkdir(parents=True)
    with (root.parent / f"{root.name}.log").open("wb") as log:
        venvs = Venvs(store, root, image="bench")
        return dict(venvs.prepare(exec_dir, spec, python, log, lambda phase: None))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-venv-") as tmp:
        work = Path(tmp)
        exec_dir = work / "exec"
        exec_dir.mkdir()
        requirements = exec_dir / "requirements.txt"
        requirements.write_text(REQUIREMENTS)
        (exec_dir / "train.py").write_text(f"{IMPORTS}\n")

        def baseline(i: int) -> None:
            pip_fresh_venv(work / f"fresh{i}", requirements, work / f"pip-cache{i}")

        pip_s = median_time(baseline)
        imports(work / "fresh0" / "bin" / "python")
        size = megabytes(work / "fresh0" / "lib")
        from gridctl.agent.core.s3store import S3Store

        with moto_bucket(work, BUCKET):
            store = S3Store(BUCKET, REGION)
            python = bare_python(work)
            start = time.perf_counter()
            warm_prepare(store, work / "builder", python, exec_dir)
            cold_s = time.perf_counter() - start

            def warm(i: int) -> None:
                warm_prepare(store, work / f"node{i}", python, exec_dir)

            warm_s = median_time(warm)
            added = warm_prepare(store, work / "node-check", python, exec_dir)
            prepared = shutil.which("python", path=added["PATH"])
            assert prepared is not None, added
            imports(prepared, {**os.environ, **added})
        ratio = warm_s / pip_s
        print(
            f"venv warm cache: {warm_s:.2f} s / pip into a fresh venv {pip_s:.1f} s"
            f" = ratio {ratio:.2f} {verdict(ratio, RATIO_TARGET)}; {size:.0f} MB installed,"
            f" first build + upload {cold_s:.1f} s"
        )
    return 0 if ratio <= RATIO_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
