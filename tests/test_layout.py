"""Packaging promises: one distribution under gridctl., an agent free of the CLI, lazy imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def _agent_modules(role: str = "") -> list[str]:
    """Every module of ``agent/`` (or of one role's subpackage), as a dotted name."""
    root = REPO / "agent"
    names = []
    for path in sorted((root / role).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts[-1] != "__main__":
            names.append(".".join(("gridctl", "agent", *parts)))
    return names


def _loaded_by(modules: list[str]) -> set[str]:
    return _modules_after("\n".join(f"import {m}" for m in modules))


ROLES = ("core", "runner", "service", "node")

# Which roles a role may import, besides itself: cli -> infra -> agent, and inside the agent
# the shared core below the runner, the runner below the local service and the node agent,
# which never import each other.
ALLOWED = {
    "core": set(),
    "runner": {"core"},
    "service": {"core", "runner"},
    "node": {"core", "runner"},
}


def test_the_agent_never_imports_the_cli_or_infra():
    modules = _agent_modules()
    loaded = _loaded_by(modules)
    assert set(modules) <= loaded
    assert not [m for m in loaded if m.startswith(("gridctl.cli", "gridctl.infra"))]


@pytest.mark.parametrize("role", ROLES)
def test_each_agent_role_imports_only_the_roles_below_it(role):
    loaded = _loaded_by(_agent_modules(role))
    reached = {m.split(".")[2] for m in loaded if m.startswith("gridctl.agent.")}
    assert reached & set(ROLES) <= ALLOWED[role] | {role}, sorted(reached)


def test_infra_never_imports_the_cli():
    modules = [f"gridctl.infra.{p.stem}" for p in sorted((REPO / "infra").glob("*.py"))]
    assert not [m for m in _loaded_by(modules) if m.startswith("gridctl.cli")]


def test_help_loads_no_heavy_module():
    loaded = _modules_after(
        "import sys\nsys.argv = ['gridctl', '--help']\nfrom gridctl.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert "gridctl.cli.main" in loaded
    assert not loaded & {"numpy", "boto3", "python_terraform", "psutil", "sqlite3", "yaml"}
    # Nor what only a run needs: the option table checks values with them when it runs.
    assert not loaded & {"gridctl.cli.sweep", "gridctl.cli.machines"}
    assert not loaded & {"http.server", "gridctl.cli.ui.server", "tensorboard"}


SCRATCH = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    ".terraform",
    ".gridctl-demo",
)
"""What a checkout may hold besides its sources: not copied into a build."""


def _build_output() -> dict[Path, int]:
    """What setuptools writes into the tree it builds (build/, *.egg-info/), by mtime."""
    roots = [r for r in (REPO / "build", *REPO.glob("*.egg-info")) if r.exists()]
    return {p: p.stat().st_mtime_ns for root in roots for p in [root, *root.rglob("*")]}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str, bool]:
    """The wheel as a user's pip builds it (isolated, with [build-system].requires), what the
    build printed, and whether the checkout was left as it was. setuptools writes build/ and
    the egg-info into the tree it builds, so the build runs on a copy."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "gridctl"
    shutil.copytree(REPO, source, ignore=SCRATCH)
    before = _build_output()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("gridctl-*.whl")
    return wheel, result.stdout + result.stderr, _build_output() == before


def test_building_the_wheel_leaves_the_checkout_as_it_was(built):
    _, _, untouched = built
    assert untouched


def test_the_build_prints_no_warning_about_our_metadata(built):
    _, printed, _ = built
    # pip's own notes about this machine's index configuration are not ours.
    ours = [line for line in printed.splitlines() if "Location 'file:" not in line]
    assert not [line for line in ours if "Warning" in line or "deprecat" in line.lower()], printed


def test_the_wheel_holds_only_gridctl_packages(built):
    wheel, _, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("gridctl-")}
    assert tops == {"gridctl"}
    assert {
        "gridctl/cli/main.py",
        "gridctl/cli/backends/local.py",
        "gridctl/agent/__main__.py",
        "gridctl/infra/__init__.py",
        "gridctl/modules/environment/main.tf",
        "gridctl/modules/machine/main.tf",
        "gridctl/modules/machine/user-data.sh.tftpl",
        "gridctl/modules/machine/README.md",
        "gridctl/cli/ui/static/ui.css",  # gridctl ui fetches nothing from elsewhere
        "gridctl/cli/ui/static/ui.js",
    } <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gridctl = gridctl.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_one_progress_callback_type():
    """Long work reports through agent/core/progress.py's Progress; no module declares its own."""
    declared = [
        str(path.relative_to(REPO))
        for folder in ("cli", "agent", "infra")
        for path in sorted((REPO / folder).rglob("*.py"))
        for line in path.read_text().splitlines()
        if re.match(r"(Progress\s*[:=]|class Progress\b)", line)
    ]
    assert declared == ["agent/core/progress.py"]


def test_every_benchmark_imports():
    """``make bench`` is not part of ``make test``: a benchmark broken by a move shows here."""
    names = sorted(p.stem for p in (REPO / "bench").glob("*.py"))
    code = f"import sys\nsys.path[:0] = [{str(REPO / 'bench')!r}, {str(REPO)!r}]\n" + "\n".join(
        f"import {name}" for name in names
    )
    loaded = _modules_after(code)
    assert set(names) <= loaded
