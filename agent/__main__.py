"""``python -m gridctl.agent``: the agent's entry points (no CLI dependencies)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gridctl.agent.daemon import Home, serve
from gridctl.agent.node import NodeSettings, serve_node
from gridctl.agent.runner import RunnerSettings


def _runner_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace-period",
        type=float,
        default=float(os.environ.get("GRIDCTL_GRACE_PERIOD", RunnerSettings.grace_period)),
        help="seconds between SIGTERM and SIGKILL on stop (env GRIDCTL_GRACE_PERIOD)",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=float(os.environ.get("GRIDCTL_SYNC_INTERVAL", RunnerSettings.sync_interval)),
        help="seconds between artifact syncs during a run (env GRIDCTL_SYNC_INTERVAL)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gridctl.agent")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="run queued experiments on this machine")
    local.add_argument("--home", type=Path, required=True, help="the GRIDCTL_HOME to serve")
    _runner_options(local)
    node = commands.add_parser(
        "node",
        help="run this EC2 instance's experiment",
        description="Run the experiment named by this instance's tags (read over IMDSv2), "
        "then scale its Auto Scaling group to zero. Env: GRIDCTL_NODE_ROOT, "
        "GRIDCTL_HEARTBEAT_INTERVAL, GRIDCTL_LOG_INTERVAL, GRIDCTL_CONTROL_INTERVAL, "
        "AWS_ENDPOINT_URL, AWS_EC2_METADATA_SERVICE_ENDPOINT.",
    )
    _runner_options(node)
    args = parser.parse_args(argv)
    settings = RunnerSettings(grace_period=args.grace_period, sync_interval=args.sync_interval)
    if args.command == "node":
        return serve_node(NodeSettings.from_env(settings))
    return serve(Home(args.home), settings)


if __name__ == "__main__":
    sys.exit(main())
