"""The ``gridctl`` command: parses, calls one function in ``commands``, shows the result.

Errors are caught once, in ``main``: a GridctlError or a usage error prints one line and
exits 2 (1 when the work itself failed); nothing else reaches the user as a traceback.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gridctl.agent.core.s3store import BucketMissing
from gridctl.agent.core.state import ACTIVE_STATES, State
from gridctl.cli.errors import EXIT_FAILED, GridctlError
from gridctl.infra.errors import InfraError

if TYPE_CHECKING:
    from gridctl.cli.tables import Table

app = typer.Typer(
    name="gridctl",
    help="Grid.ai-style runs and hyperparameter sweeps on this machine or in your AWS account.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Output(str, Enum):
    table = "table"
    json = "json"


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """Bare ``gridctl`` shows the help rather than an error."""
    if ctx.invoked_subcommand is None:
        sys.stdout.write(ctx.get_help() + "\n")


OUTPUT = typer.Option(Output.table, "--output", "-o", help="table for people, json for programs")


PIPED_WIDTH = 200
"""Piped output is read by programs and people alike: never cut names at 80 columns."""


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPED_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)


def _show(table: Table) -> None:
    """A table on stdout: piped, written as the text rich would write, without rich (which
    takes seconds over a 1000-row table)."""
    lines = None if _styled(sys.stdout) else table.lines(PIPED_WIDTH)
    if lines is None:
        _console().print(table)
    else:
        sys.stdout.write("".join(line + "\n" for line in lines))


def _styled(stream: Any) -> bool:
    """Whether rich treats ``stream`` as a terminal (colour, the terminal's width): a TTY, or
    one the environment says to treat so."""
    forced = os.environ.get("TTY_COMPATIBLE") == "1" or bool(os.environ.get("FORCE_COLOR"))
    return forced or stream.isatty()


def _warn(message: str) -> None:
    # One line each, however long: a log reader greps for it.
    _console(stderr=True).print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def _notices(home: Path) -> None:
    """Said by every command that looks at runs or datastores (e.g. a destroyed environment)."""
    from gridctl.cli import commands

    for message in commands.notices(home):
        _warn(message)


def _home() -> Path:
    from gridctl.cli.settings import gridctl_home

    return gridctl_home()


def _confirm(count: int) -> bool:
    if not sys.stdin.isatty():
        return False
    return typer.confirm(f"This sweep starts {count} experiments. Continue?", default=False)


RUN_HELP = """Run SCRIPT once per combination of the sweeps in its arguments.

Everything after SCRIPT goes to the script verbatim; a flag value such as "[0.1, 0.01]",
"range(0, 5, 2)", "uniform(1e-5, 1e-1, 8)", "loguniform(1e-5, 1e-1, 4)",
"linspace(0, 1, 5)" or "choice(['a', 'b'], 3)" is a sweep. A misspelt sweep function
("unifrom(0, 1, 3)") is refused; to pass such a value as is, make it a one-element list,
"['unifrom(0, 1, 3)']", or pass --strategy none to sweep nothing.

Multi-node: --nodes K runs each experiment on K machines that start the script together
(--gpus is their total, --cpus and --memory each node's); --gpus above what --instance_type
has spreads over nodes of it (--gpus 8 --instance_type 4_v100_16gb: 2 nodes of 4 GPUs).

Code from a repository: --git URL@REF runs SCRIPT as it is in that branch, tag or commit
(fetched here with your own git and credentials; the machines get only the files), and a
GitHub file link https://github.com/OWNER/REPO/blob/REF/PATH as SCRIPT means the same.

With --dry-run --output json prints {"run", "source", "price_per_hour", "price_source",
"experiments": [{"name", "params", "argv", "nodes", "price_per_hour"}]}: USD per hour while
every experiment runs (0 locally, null where unknown; an experiment on a shared machine
pays its GPUs' part of it; spot: the region's highest current zone price);
with --wait --output json, the final status as `gridctl status RUN --output json` does.
Exit codes: 0 ok, 1 an experiment did not succeed (--wait/--follow), 2 bad input.
"""


def _with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with one option per entry of ``RUN_OPTIONS`` in place of its ``flags``
    parameter (Typer reads options from a real signature), which gets them as a mapping of
    name to value, None for those not given."""
    from gridctl.cli.options import RUN_OPTIONS

    generated = [
        inspect.Parameter(
            entry.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=entry.type | None,
            default=typer.Option(
                None, *entry.flags, help=entry.help, envvar=entry.envvar, show_default=False
            ),
        )
        for entry in RUN_OPTIONS
    ]
    signature = inspect.signature(command)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("flags")
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[at + 1 :]]

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> None:
        flags = {entry.name: kwargs.pop(entry.name) for entry in RUN_OPTIONS}
        command(**kwargs, flags=flags)

    with_options.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*params[:at], *generated, *keyword]
    )
    return with_options


@app.command(
    help=RUN_HELP,
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
@_with_run_options
def run(
    ctx: typer.Context,
    script: str = typer.Argument(..., help="the script: .py runs with python, .sh with bash"),
    script_args: list[str] | None = typer.Argument(None, help="passed to the script as is"),
    flags: dict[str, Any] | None = None,
    dry_run: bool = typer.Option(False, "--dry-run", "--dry_run", help="print, start nothing"),
    wait: bool = typer.Option(False, help="block until every experiment ends"),
    follow: bool = typer.Option(False, help="stream all logs until every experiment ends"),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views
    from gridctl.cli.options import RunOptions

    if script.startswith("-"):
        raise _unknown_option(ctx, script)
    home = _home()
    options = RunOptions(script, tuple(script_args or ()), flags or {})
    plan = commands.plan(options, home, _confirm, dry_run=dry_run)
    _notices(home)
    for message in plan.warnings:
        _warn(message)
    for note in plan.notes:
        _console(stderr=True).print(note, markup=False)
    if plan.datastore_name is not None:
        _console(stderr=True).print(
            f"datastore {plan.datastore_name} version {plan.datastore_version}"
            f" mounted read-only at {plan.datastore_mount_dir}"
        )
    if dry_run:
        estimate = commands.estimate(plan, home)
        if output is Output.json:
            views.print_json(views.plan_json(plan, estimate))
        else:
            _show(views.plan_table(plan, estimate))
        return

    backend = commands.backend_for(home, plan.cloud)
    bundle = commands.scan(plan.localdir, home)
    for message in commands.bundle_warnings(bundle, bool(options.flags["ignore_warnings"])):
        _warn(message)
    with _upload_progress(bundle) as progress, _provisioning(plan.cloud) as provisioning:
        submitted = commands.submit(plan, backend, bundle, progress, provisioning)
    if not (wait or follow):
        if output is Output.json:
            views.print_json(views.plan_json(submitted.plan))
        else:
            _console().print(
                f"[bold]{plan.name}[/]: {len(plan.experiments)} experiment(s) submitted"
                f" to {plan.cloud}. Watch with: gridctl status {plan.name}"
            )
            print(plan.name)
        return
    try:
        if follow:
            _follow_run(home, plan.name)
        final = commands.wait(home, plan.name)
    except KeyboardInterrupt:
        sys.stderr.write(
            f"gridctl: stopped waiting; {plan.name} keeps running (gridctl status {plan.name};"
            f" gridctl stop {plan.name} stops it)\n"
        )
        raise typer.Exit(130) from None
    if output is Output.json:
        views.print_json(views.run_json(final, with_experiments=True))
    else:
        _show(views.run_table(final))
    if final.status != State.SUCCEEDED:
        raise typer.Exit(EXIT_FAILED)


def _unknown_option(ctx: typer.Context, token: str) -> GridctlError:
    """Options end at SCRIPT (the rest goes to the script), so click hands an option it does
    not know over as SCRIPT: name it as an option of `run` and suggest the closest real one."""
    import difflib

    typed = token.partition("=")[0]
    known = [
        spelling
        for param in ctx.command.get_params(ctx)
        if param.param_type_name == "option"
        for spelling in (*param.opts, *param.secondary_opts)
    ]
    close = difflib.get_close_matches(typed, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    shown = typed if typed.isprintable() else repr(typed)
    return GridctlError(f"unknown option {shown} for gridctl run{hint} (see gridctl run --help)")


def _upload_progress(bundle):
    """A progress bar on stderr for bundles big enough to take a while."""
    from contextlib import nullcontext

    from gridctl.cli.bundle import SIZE_WARNING_BYTES

    if bundle.total_bytes <= SIZE_WARNING_BYTES:
        return nullcontext(None)
    return _progress_bar("code bundle")


@contextmanager
def _steps(title: str):
    """A spinner naming the current step and how many Terraform resources are done; when
    stderr is no terminal (a CI log, where a spinner shows nothing), plain lines instead."""
    if not sys.stderr.isatty():
        yield _step_lines(title)
        return
    from rich.status import Status

    done = 0
    current = [title]
    with Status(title, console=_console(stderr=True)) as status:

        def step(name: str) -> None:
            current[0] = name
            status.update(name)

        def progress(phase: str, resources: int, total: int | None) -> None:
            # Counted over the whole command: Terraform counts per run of terraform.
            nonlocal done
            done += 1
            status.update(f"{current[0]} ({done} resources done)")

        yield step, progress


def _step_lines(title: str):
    """One line per step and one per finished Terraform resource, written at once."""

    def line(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def progress(phase: str, done: int, total: int | None) -> None:
        line(f"  {phase}")

    line(title)
    return (lambda name: line(f"{title}: {name}")), progress


@contextmanager
def _provisioning(cloud: str):
    if cloud == "local":
        yield None
        return
    with _steps(f"provisioning on {cloud} with Terraform") as (_, progress):
        yield progress


def _follow_run(home: Path, run_name: str) -> None:
    """Interleave every experiment's log, prefixed with its name, until all have ended."""
    import threading

    from gridctl.cli import commands

    experiments = commands.run_status(home, run_name).experiments
    lock = threading.Lock()

    def stream(experiment: str) -> None:
        for line in commands.logs(home, experiment, follow=True, tail=None):
            with lock:
                sys.stdout.write(f"{experiment} | {line}")
                sys.stdout.flush()

    threads = [threading.Thread(target=stream, args=(e.name,), daemon=True) for e in experiments]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@app.command(
    help="Runs (name, status, backend, counts per state, duration, cost), or one run's"
    " experiments, or one experiment. JSON: a list of {run, status, backend, counts,"
    " created_at, duration, cost, seed, strategy, description, source: {git_url, ref, commit,"
    " dirty}}; with RUN one object with those keys plus experiments: [{name, status, params,"
    " nodes, exit_code, resumes, started_at, finished_at, duration, instance, reason, cost,"
    " attempts}]; with EXPERIMENT that experiment's object with its run. cost: USD so far (an"
    " estimate while active), null where a price is unknown (see gridctl cost)."
    " object with its run. On AWS, an experiment whose node has not written its heartbeat"
    " for GRIDCTL_LOST_AFTER seconds (default 600) is recorded failed and its machine's"
    " group scaled to zero (with --auto_resume and the instance gone, its replacement takes"
    " it over instead)."
    " A queued experiment's reason says why it waits: locally which resource is short; on"
    " AWS, while its group cannot launch, AWS's message from the group's latest scaling"
    " activity (e.g. no capacity, a vCPU or spot limit)."
)
def status(
    name: str | None = typer.Argument(None, metavar="[RUN_OR_EXPERIMENT]"),
    watch: bool = typer.Option(False, help="refresh until the run(s) end; Ctrl-C to leave"),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views
    from gridctl.cli.backends.base import ExperimentStatus

    home = _home()
    if watch and output is Output.json:
        raise GridctlError("--watch shows a live table; drop --output json")
    _notices(home)

    def snapshot():
        return commands.status(home, name) if name else commands.runs(home)

    def table(result):
        if isinstance(result, ExperimentStatus):
            return views.experiment_table(result)
        return views.run_table(result) if name else views.runs_table(result)

    result = snapshot()
    if output is Output.json:
        if isinstance(result, ExperimentStatus):
            source = views.source_json(result.source)
            views.print_json({"run": result.run, **views.experiment_json(result), "source": source})
        elif name:
            views.print_json(views.run_json(result, with_experiments=True))
        else:
            views.print_json([views.run_json(r, with_experiments=False) for r in result])
        return
    if not watch:
        _show(table(result))
        return
    import time

    from rich.live import Live

    def active(result) -> bool:
        shown = result if isinstance(result, list) else [result]
        return any(r.status in ACTIVE_STATES for r in shown)

    with Live(table(result), console=_console(), auto_refresh=False) as live:
        while active(result):
            time.sleep(1)
            result = snapshot()
            live.update(table(result), refresh=True)


@app.command(
    help="What runs cost on AWS and how many GPU-hours they used, per experiment and run, with"
    " a total: per-second billing with a minute's minimum per instance, at the price each node"
    " recorded (spot price history, Pricing API or gridctl's price table), summed over every"
    " attempt and node; an estimate that grows while a run is active. Local runs cost 0."
    " JSON: {since, runs: [{run, backend, status, created_at, cost, gpu_hours, estimate,"
    " experiments: [{name, status, cost, gpu_hours, estimate}]}], total: {cost, gpu_hours,"
    " estimate}}; cost in USD, null where a price is unknown (and in every sum that includes"
    " it); since: the --since time in UTC, null without it."
)
def cost(
    name: str | None = typer.Argument(None, metavar="[RUN]"),
    since: str | None = typer.Option(
        None, help="only runs created at or after this ISO date (UTC), e.g. 2026-12-01"
    ),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views

    after = None if since is None else commands.since(since)
    home = _home()
    _notices(home)
    found = commands.costs(home, name, after)
    if output is Output.json:
        views.print_json(views.cost_json(found, after))
    else:
        _show(views.cost_table(found))


@app.command(
    help="An experiment's stdout and stderr, each line time-stamped (UTC); a run name stands"
    " for its experiment when it has only one. A multi-node experiment shows rank 0's log"
    " unless --node names another rank."
)
def logs(
    name: str = typer.Argument(..., metavar="EXPERIMENT"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep streaming until it ends"),
    tail: int | None = typer.Option(None, help="only the last N lines"),
    node: int = typer.Option(0, help="the rank whose log to show, 0 to nodes - 1"),
) -> None:
    from gridctl.cli import commands

    home = _home()
    _notices(home)
    for line in commands.logs(home, name, follow=follow, tail=tail, node=node):
        sys.stdout.write(line)
        sys.stdout.flush()


@app.command(
    help="Download artifacts (files the script created or changed), one folder per"
    " experiment. JSON: {dest, files: [paths]}."
)
def artifacts(
    names: list[str] = typer.Argument(..., metavar="RUN_OR_EXPERIMENT"),
    dest: Path = typer.Option(Path("gridctl_artifacts"), help="where to put them"),
    match: str | None = typer.Option(None, help="only paths matching this regex"),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views

    home = _home()
    _notices(home)
    copied = commands.artifacts(home, names, dest, match)
    if output is Output.json:
        views.print_json({"dest": str(dest), "files": [str(p) for p in copied]})
    else:
        _console().print(f"{len(copied)} file(s) downloaded to {dest}/")


@app.command(
    help="Stop experiments gracefully (SIGTERM, grace period, SIGKILL); artifacts are kept."
    " JSON: [{name, status, ...}] as in status."
)
def stop(
    names: list[str] = typer.Argument(..., metavar="RUN_OR_EXPERIMENT"),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views

    home = _home()
    _notices(home)
    stopped = commands.stop(home, names)
    if output is Output.json:
        views.print_json([views.experiment_json(e) for e in stopped])
    else:
        for e in stopped:
            _console().print(f"{e.name}: {e.status}")


@app.command(
    help="Deliver a simulated spot interruption to running experiments: the same path as a"
    " real notice (SIGTERM, final sync, interrupted; with --auto_resume they resume), so you"
    " can test that a script resumes before paying for spot. On AWS the whole machine is"
    " interrupted and replaced. Every node of a multi-node experiment is interrupted; with"
    " --node R on AWS only rank R's machine goes away and is replaced, the others stay."
    " JSON: [{name, status, ...}] as in status."
)
def interrupt(
    names: list[str] = typer.Argument(..., metavar="EXPERIMENT"),
    window: float = typer.Option(
        120.0,
        "--window",
        help="seconds until the deadline (a real notice: 120); the script gets SIGTERM now and"
        " at least half of them before SIGKILL",
    ),
    node: int | None = typer.Option(
        None, help="the rank whose machine is reclaimed (default: every node's)"
    ),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views

    home = _home()
    _notices(home)
    interrupted = commands.interrupt(home, names, window, node)
    if output is Output.json:
        views.print_json([views.experiment_json(e) for e in interrupted])
    else:
        for e in interrupted:
            _console().print(f"{e.name}: interruption sent ({window:g} s to save)")


@app.command(help="Stop if needed, then remove logs, artifacts and records. JSON: {deleted}.")
def delete(
    names: list[str] = typer.Argument(..., metavar="RUN_OR_EXPERIMENT"),
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views

    home = _home()
    _notices(home)
    deleted = commands.delete(home, names)
    if output is Output.json:
        views.print_json({"deleted": deleted})
    else:
        _console().print(f"deleted {len(deleted)} experiment(s)")


@app.command(
    help="Serve a read-only web view of runs, sweeps, logs, artifacts and metric charts until"
    " Ctrl-C: prints a URL with a random token (requests without it get 401). Metrics come from"
    " each experiment's artifacts: TensorBoard event files, metrics.csv (Lightning's"
    " CSVLogger) and metrics.jsonl. JSON at /api/runs, /api/runs/RUN, /api/experiments/EXP and"
    " /api/experiments/EXP/metrics."
)
def ui(
    port: int = typer.Option(8765, help="port to listen on; 0 picks a free one"),
    host: str = typer.Option(
        "127.0.0.1", help="address to listen on; another than loopback shows your runs to others"
    ),
) -> None:
    from gridctl.cli.ui.server import serve

    if not 0 <= port <= 65535:
        raise GridctlError(f"--port {port}: use 0 to 65535")
    home = _home()
    _notices(home)
    if host not in ("127.0.0.1", "localhost", "::1"):
        _warn(f"listening on {host}: anyone who can reach it and has the URL sees your runs")

    def ready(url: str) -> None:
        sys.stdout.write(f"gridctl ui: {url} (Ctrl-C to stop)\n")
        sys.stdout.flush()

    try:
        serve(home, host, port, ready)
    except KeyboardInterrupt:
        sys.stdout.write("gridctl ui: stopped\n")


@app.command(
    help="What `run` would upload: file count, bytes and bundle id. JSON: {files, bytes,"
    " bundle_id, warnings}; with --list a JSON list of paths."
)
def bundle(
    localdir: Path = typer.Option(Path("."), help="project root"),
    list_: bool = typer.Option(False, "--list", help="print every path"),
    output: Output = OUTPUT,
) -> None:
    from gridctl.agent.core.units import format_bytes
    from gridctl.cli import commands, views

    result = commands.scan(localdir, _home())
    for message in result.warnings:
        _warn(message)
    paths = [e.path for e in result.entries]
    if list_:
        if output is Output.json:
            views.print_json(paths)
        else:
            sys.stdout.write("".join(p + "\n" for p in paths))
        return
    if output is Output.json:
        views.print_json(
            {
                "files": len(paths),
                "bytes": result.total_bytes,
                "bundle_id": result.bundle_id,
                "warnings": list(result.warnings),
            }
        )
    else:
        _console().print(
            f"{len(paths)} files, {format_bytes(result.total_bytes)}, bundle {result.bundle_id}"
        )


@app.command(
    help="Create or update the shared AWS environment with Terraform (idempotent). A teammate"
    " with the same account, region and --name joins it and sees the same runs. Makes AWS"
    " the default cloud for this user."
)
def up(
    cloud: str = typer.Option("aws", help="only aws"),
    region: str | None = typer.Option(None, help="default: AWS_REGION or us-east-1"),
    name: str = typer.Option("default", help="environment name"),
    ami: str | None = typer.Option(
        None, help="AMI for every type (default: the Deep Learning Base AMI for the run's GPUs)"
    ),
    vpc_id: str | None = typer.Option(None, "--vpc-id", "--vpc_id", help="use an existing VPC"),
    subnet_ids: str | None = typer.Option(
        None, "--subnet-ids", "--subnet_ids", help="comma-separated subnets of --vpc-id"
    ),
    credential: str | None = typer.Option(None, help="AWS profile to use"),
) -> None:
    from gridctl.cli import commands

    with _steps("gridctl up") as (step, progress):
        record = commands.up(
            _home(),
            cloud=cloud,
            region=region,
            name=name,
            ami=ami,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            credential=credential,
            step=step,
            progress=progress,
        )
    _console().print(
        f"environment {record.name} is up in {record.region} (bucket {record.bucket});"
        " runs now go to AWS by default"
    )


@app.command(
    help="Destroy the AWS environment and the team's runs, artifacts and datastores: lists"
    " what goes and asks first (--yes for scripts; with no terminal and no --yes it refuses)."
    " Refuses while runs are active unless --force. On a machine whose environment someone"
    " else destroyed, forgets it."
)
def down(
    name: str | None = typer.Option(None, help="environment name (default: this machine's)"),
    force: bool = typer.Option(False, help="stop and delete active runs first"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask: for scripts"),
) -> None:
    from gridctl.cli import commands, views

    home = _home()
    doomed = commands.teardown(home, name=name, force=force)
    if not doomed.destroyed:
        if not (yes or sys.stdin.isatty()):
            raise GridctlError(
                f"gridctl down would delete {views.teardown_summary(doomed)}; pass --yes to"
                " confirm (there is no terminal to ask on)"
            )
        sys.stdout.write(views.teardown_listing(doomed) + "\n")
        if not yes and not typer.confirm(
            f"Destroy environment {doomed.environment} and all of the above?", default=False
        ):
            sys.stderr.write("nothing deleted\n")
            raise typer.Exit(EXIT_FAILED)
    with _steps("gridctl down") as (step, progress):
        commands.down(home, doomed, force=force, step=step, progress=progress)
    if doomed.destroyed:
        _console().print(
            f"environment {doomed.environment} was already destroyed; forgot it on this"
            " machine: runs go to this machine again"
        )
    else:
        _console().print(f"environment {doomed.environment} is gone; runs go to this machine again")


datastore_app = typer.Typer(
    help="Versioned, read-only data sets that runs mount (--datastore_name).",
    rich_markup_mode=None,
)
app.add_typer(datastore_app, name="datastore")
CLOUD = typer.Option(None, help="local or aws (default: local until up)")


@datastore_app.command(
    "create",
    help="Make the next version of NAME from SOURCE_DIR: only files no earlier version has"
    " are uploaded, and a rerun after Ctrl-C finishes what is missing; data identical to the"
    " newest version makes none. JSON: {name, version, files, bytes, uploaded_files,"
    " uploaded_bytes, skipped, unchanged}.",
)
def datastore_create(
    name: str = typer.Argument(..., metavar="NAME"),
    source: Path = typer.Argument(..., metavar="SOURCE_DIR"),
    cloud: str | None = CLOUD,
    output: Output = OUTPUT,
) -> None:
    from contextlib import nullcontext

    from gridctl.cli import commands, views

    home = _home()
    bar = _progress_bar(f"datastore {name}") if sys.stderr.isatty() else nullcontext(None)
    with bar as progress:
        result = commands.datastore_create(home, name, source, cloud, progress)
    _notices(home)
    for path in result.skipped:
        _warn(f"skipped {path}: not a regular file")
    if output is Output.json:
        views.print_json(views.datastore_created_json(result))
    else:
        _console().print(views.datastore_created(result))


@datastore_app.command(
    "list",
    help="Datastores and their versions. JSON: [{name, versions: [{version, files, bytes,"
    " status, created_at}]}].",
)
def datastore_list(cloud: str | None = CLOUD, output: Output = OUTPUT) -> None:
    from gridctl.cli import commands, views

    home = _home()
    found = commands.datastore_list(home, cloud)
    _notices(home)
    if output is Output.json:
        views.print_json(views.datastores_json(found))
    else:
        _show(views.datastores_table(found))


@datastore_app.command(
    "delete",
    help="Delete a datastore, or one version of it; refused while a queued or running"
    " experiment uses it, unless --force. JSON: {name, deleted_versions}.",
)
def datastore_delete(
    name: str = typer.Argument(..., metavar="NAME"),
    version: int | None = typer.Option(None, "--version", help="only this version"),
    force: bool = typer.Option(False, "--force", help="even while experiments use it"),
    cloud: str | None = CLOUD,
    output: Output = OUTPUT,
) -> None:
    from gridctl.cli import commands, views

    home = _home()
    deleted = commands.datastore_delete(home, name, version, force=force, cloud=cloud)
    _notices(home)
    if output is Output.json:
        views.print_json({"name": name, "deleted_versions": deleted})
    else:
        _console().print(f"deleted {name} version(s) {', '.join(map(str, deleted))}")


def _progress_bar(what: str):
    """A progress bar on stderr, one line per phase; yields ``update(phase, done, total)``."""
    from contextlib import contextmanager

    from rich.progress import Progress, TaskID

    @contextmanager
    def bar():
        with Progress(console=_console(stderr=True), transient=True) as progress:
            tasks: dict[str, TaskID] = {}

            def update(phase: str, done: int, total: int | None) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(f"{phase} {what}", total=total)
                progress.update(tasks[phase], completed=done)

            yield update

    return bar()


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except InfraError as exc:
        sys.stderr.write(f"gridctl: error: {exc.message}\n")
        code = exc.exit_code
    except BucketMissing as exc:
        # Destroyed between this command's first look and a later one: the next command
        # says so properly.
        sys.stderr.write(f"gridctl: error: {exc} (its AWS environment was destroyed)\n")
        code = EXIT_FAILED
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        sys.stderr.write("gridctl: aborted\n")
        code = EXIT_FAILED
    except typer.TyperException as exc:
        lines = exc.format_message().strip().splitlines()
        sys.stderr.write(f"gridctl: error: {lines[0] if lines else 'invalid usage'} (see --help)\n")
        code = exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("gridctl: interrupted\n")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:
        if os.environ.get("GRIDCTL_DEBUG"):
            raise
        sys.stderr.write(
            f"gridctl: internal error: {exc!r} (set GRIDCTL_DEBUG=1 for the traceback)\n"
        )
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)
