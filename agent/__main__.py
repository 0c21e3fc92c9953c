"""``python -m gridctl.agent``: the agent's entry points (no CLI dependencies)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gridctl.agent.daemon import Home, serve
from gridctl.agent.runner import RunnerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gridctl.agent")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="run queued experiments on this machine")
    local.add_argument("--home", type=Path, required=True, help="the GRIDCTL_HOME to serve")
    local.add_argument(
        "--grace-period",
        type=float,
        default=float(os.environ.get("GRIDCTL_GRACE_PERIOD", RunnerSettings.grace_period)),
        help="seconds between SIGTERM and SIGKILL on stop (env GRIDCTL_GRACE_PERIOD)",
    )
    local.add_argument(
        "--sync-interval",
        type=float,
        default=float(os.environ.get("GRIDCTL_SYNC_INTERVAL", RunnerSettings.sync_interval)),
        help="seconds between artifact syncs during a run (env GRIDCTL_SYNC_INTERVAL)",
    )
    args = parser.parse_args(argv)
    settings = RunnerSettings(grace_period=args.grace_period, sync_interval=args.sync_interval)
    return serve(Home(args.home), settings)


if __name__ == "__main__":
    sys.exit(main())
