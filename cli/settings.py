"""Where gridctl keeps its state, and which cloud is the default for this user."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_CLOUD = "local"


def gridctl_home() -> Path:
    """``GRIDCTL_HOME``, else ``~/.gridctl``; created private to the user."""
    home = Path(os.environ.get("GRIDCTL_HOME") or Path.home() / ".gridctl")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def default_cloud(home: Path) -> str:
    """``local`` until an environment made with ``gridctl up`` says otherwise."""
    try:
        return json.loads((home / "settings.json").read_text())["default_cloud"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CLOUD
