"""``python -m gridctl.agent``: the agent's entry points (no CLI dependencies)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gridctl.agent.core.contract import EXPERIMENT_TAG
from gridctl.agent.runner.experiment import RunnerSettings


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
        "GRIDCTL_TAGS_TIMEOUT, GRIDCTL_GANG_TIMEOUT, GRIDCTL_GANG_INTERVAL, GRIDCTL_MASTER_PORT, "
        "AWS_ENDPOINT_URL, AWS_EC2_METADATA_SERVICE_ENDPOINT.",
    )
    _runner_options(node)
    failed = commands.add_parser(
        "failed",
        help="record this node's unended experiments failed (the boot script's last resort)",
        description="Record every experiment of MACHINE that had not ended by --since "
        "failed with REASON and the tail of --log, which becomes its log when it has none. "
        "Standard library and the AWS CLI only, for a node whose agent could not be installed.",
    )
    failed.add_argument("reason", help="why the node failed")
    failed.add_argument("--bucket", required=True)
    failed.add_argument("--run", required=True)
    failed.add_argument("--machine", required=True, help=f"the instance's {EXPERIMENT_TAG} tag")
    failed.add_argument("--instance", required=True, help="this instance's id")
    failed.add_argument("--since", type=float, required=True, help="when the failure came")
    failed.add_argument("--log", type=Path, required=True, help="the log to quote and keep")
    args = parser.parse_args(argv)
    if args.command == "failed":
        from gridctl.agent.node import failsafe

        return failsafe.main(args)
    settings = RunnerSettings(grace_period=args.grace_period, sync_interval=args.sync_interval)
    if args.command == "node":
        from gridctl.agent.node.agent import serve_node
        from gridctl.agent.node.settings import NodeSettings

        return serve_node(NodeSettings.from_env(settings))
    from gridctl.agent.service.daemon import serve
    from gridctl.agent.service.home import Home

    return serve(Home(args.home), settings)


if __name__ == "__main__":
    sys.exit(main())
