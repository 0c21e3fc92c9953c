"""Packaging promises: one distribution under gridctl., an agent free of the CLI, lazy imports."""

from __future__ import annotations

import re
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


def test_the_agent_never_imports_the_cli():
    agent_modules = [p.stem for p in (REPO / "agent").glob("*.py") if p.stem != "__main__"]
    loaded = _modules_after("\n".join(f"import gridctl.agent.{m}" for m in agent_modules))
    assert {f"gridctl.agent.{m}" for m in agent_modules if m != "__init__"} <= loaded
    assert not [m for m in loaded if m.startswith("gridctl.cli")]


def test_help_loads_no_heavy_module():
    loaded = _modules_after(
        "import sys\nsys.argv = ['gridctl', '--help']\nfrom gridctl.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert "gridctl.cli.main" in loaded
    assert not loaded & {"numpy", "boto3", "python_terraform", "psutil", "sqlite3", "yaml"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The wheel as a user's pip builds it (isolated, with [build-system].requires) and what
    the build printed."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("gridctl-*.whl")
    return wheel, result.stdout + result.stderr


def test_the_build_prints_no_warning_about_our_metadata(built):
    _, printed = built
    # pip's own notes about this machine's index configuration are not ours.
    ours = [line for line in printed.splitlines() if "Location 'file:" not in line]
    assert not [line for line in ours if "Warning" in line or "deprecat" in line.lower()], printed


def test_the_wheel_holds_only_gridctl_packages(built):
    wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("gridctl-")}
    assert tops == {"gridctl"}
    assert {
        "gridctl/cli/main.py",
        "gridctl/cli/backends/local.py",
        "gridctl/agent/__main__.py",
        "gridctl/infra/__init__.py",
        "gridctl/modules/environment/main.tf",
        "gridctl/modules/experiment/main.tf",
        "gridctl/modules/experiment/user-data.sh.tftpl",
        "gridctl/modules/experiment/README.md",
    } <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gridctl = gridctl.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_one_progress_callback_type():
    """Long work reports through agent/progress.py's Progress; no module declares its own."""
    declared = [
        str(path.relative_to(REPO))
        for folder in ("cli", "agent", "infra")
        for path in sorted((REPO / folder).rglob("*.py"))
        for line in path.read_text().splitlines()
        if re.match(r"(Progress\s*[:=]|class Progress\b)", line)
    ]
    assert declared == ["agent/progress.py"]
