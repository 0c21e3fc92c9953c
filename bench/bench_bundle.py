"""Code bundles on a synthetic 50,000-file project with nested .gitignore files.

Selection is timed against ``git ls-files --others --exclude-standard`` on a ``git init``-ed
copy (target: at most 2x git); re-scanning the unchanged tree with a warm hash cache plus the
no-op upload is timed on its own, in-process, so beyond CLI start-up (target <= 0.25 s). The
pure-Python engine is shown for information. Medians over repeated runs.
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

from gridctl.agent.core.store import LocalStore
from gridctl.cli.bundle import RACY_NS, scan, upload
from gridctl.cli.ignore import select_files

FILES = 50_000
REPEATS = 7
RATIO_TARGET = 2.0
RESCAN_TARGET = 0.25

ROOT_GITIGNORE = "__pycache__/\n*.log\n!important.log\n/build/\n"
PACKAGE_GITIGNORE = "*.tmp\n/out/\n!out/\n"


def build_tree(root: Path, files: int) -> int:
    """Packages of modules plus caches, logs and outputs the .gitignore files drop."""
    count = 0

    def put(rel: str, text: str) -> None:
        nonlocal count
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        count += 1

    put(".gitignore", ROOT_GITIGNORE)
    put("important.log", "kept\n")
    package = 0
    while count < files:
        base = f"pkg{package:03d}"
        put(f"{base}/.gitignore", PACKAGE_GITIGNORE)
        put(f"{base}/out/result.bin", "x" * 64)
        for module in range(10):
            folder = f"{base}/mod{module}"
            for i in range(15):
                put(f"{folder}/file{i}.py", f"VALUE = {package * 1000 + module * 100 + i}\n" * 8)
            put(f"{folder}/scratch.tmp", "tmp\n")
            put(f"{folder}/run.log", "log\n")
            put(f"{folder}/data.json", '{"a": 1}\n')
            for i in range(3):
                put(f"{folder}/__pycache__/file{i}.cpython-311.pyc", "pyc")
        package += 1
    return count


def median_time(action: Callable[[], object]) -> float:
    action()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-") as tmp:
        work = Path(tmp)
        root, copy = work / "project", work / "git-copy"
        total = build_tree(root, FILES)
        shutil.copytree(root, copy, copy_function=os.link)
        env = git_env(work)
        subprocess.run(["git", "init", "-q", str(copy)], env=env, check=True)
        baseline = ["git", "ls-files", "--others", "--exclude-standard", "-z"]
        by_git = subprocess.run(baseline, cwd=copy, env=env, capture_output=True, check=True)
        selected = select_files(root, use_git=True)
        assert selected.engine == "git"
        assert len(selected.paths) == by_git.stdout.count(b"\0")

        git_s = median_time(
            lambda: subprocess.run(baseline, cwd=copy, env=env, capture_output=True, check=True)
        )
        ours_s = median_time(lambda: select_files(root, use_git=True))
        python_s = median_time(lambda: select_files(root, use_git=False))
        ratio = ours_s / git_s
        print(
            f"bundle selection: gridctl {ours_s:.3f} s / git {git_s:.3f} s = ratio {ratio:.2f}"
            f" {verdict(ratio, RATIO_TARGET)}; {total} files,"
            f" {len(selected.paths)} selected"
        )
        print(f"bundle selection, pure-Python engine: {python_s:.3f} s (information)")

        cache, store = work / "cache", LocalStore(work / "store")
        start = time.perf_counter()
        upload(scan(root, cache_dir=cache), store)
        cold_s = time.perf_counter() - start
        time.sleep(RACY_NS / 1e9)  # newest files now count as settled, as in any idle tree
        scan(root, cache_dir=cache)
        rescan_s = median_time(lambda: upload(scan(root, cache_dir=cache), store))
        print(
            f"bundle re-scan unchanged: {rescan_s:.3f} s"
            f" {verdict(rescan_s, RESCAN_TARGET, ' s')};"
            f" cold scan + upload {cold_s:.2f} s"
        )
    return 0 if ratio <= RATIO_TARGET and rescan_s <= RESCAN_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
