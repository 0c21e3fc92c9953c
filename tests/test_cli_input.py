"""What a hurried user types into `gridctl run`, through the real command: misspelt options,
misspelt sweep functions, AWS-only options on a local run, and GPUs without an instance type."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer.main

from gridctl.cli.main import app, main

ECHO = """\
import json, os, sys
os.makedirs("out", exist_ok=True)
with open("out/argv.json", "w") as f:
    json.dump(sys.argv[1:], f)
"""


@pytest.fixture
def script(project: Path) -> str:
    (project / "train.py").write_text(textwrap.dedent(ECHO))
    return "train.py"


def one_line_usage_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gridctl: error: ")
    return lines[0].removeprefix("gridctl: error: ")


def dry_run(gridctl, *args: str) -> dict:
    result = gridctl("run", "--dry-run", "--output", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------
# An unknown option where SCRIPT is expected


@pytest.mark.parametrize(
    ("args", "typed", "meant"),
    [
        (["--nmae", "foo"], "--nmae", "--name"),
        (["--nmae=foo"], "--nmae", "--name"),
        (["--use-spto"], "--use-spto", "--use-spot"),
        (["--use_spto"], "--use_spto", "--use_spot"),
        (["--datastore-nmae", "imagenet"], "--datastore-nmae", "--datastore-name"),
        (["--datastore_nmae=imagenet"], "--datastore_nmae", "--datastore_name"),
        (["--cpu", "2"], "--cpu", "--cpus"),
        (["--dry-rn"], "--dry-rn", "--dry-run"),
    ],
)
def test_a_misspelt_option_is_named_with_the_closest_real_one(gridctl, script, args, typed, meant):
    message = one_line_usage_error(gridctl("run", *args, script, "--lr", "[1, 2]"))
    assert message == (
        f"unknown option {typed} for gridctl run; did you mean {meant}? (see gridctl run --help)"
    )
    assert gridctl.json("status") == []


@pytest.mark.parametrize("typed", ["--frobnicate", "-x", "--zzz=1"])
def test_an_unknown_option_close_to_none_is_still_an_unknown_option(gridctl, script, typed):
    message = one_line_usage_error(gridctl("run", typed, script))
    name = typed.partition("=")[0]
    assert message == f"unknown option {name} for gridctl run (see gridctl run --help)"
    assert gridctl.json("status") == []


def test_every_spelling_of_every_run_option_is_suggested_for_its_typos(
    gridctl, script, monkeypatch, capsys
):
    """The suggestions come from the command itself: a new option is suggested too. Asked
    through the command's own entry point in this process (a process per spelling took
    minutes); the tests above go through the installed command."""
    command = typer.main.get_command(app).commands["run"]
    options = [p for p in command.params if p.param_type_name == "option"]
    spellings = {s: p for p in options for s in (*p.opts, *p.secondary_opts) if len(s) > 5}
    assert {"--instance_type", "--instance-type", "--dry_run", "--no-wait"} <= set(spellings)
    monkeypatch.chdir(gridctl.cwd)
    monkeypatch.setenv("GRIDCTL_HOME", str(gridctl.home))
    for spelling, param in spellings.items():
        typo = spelling[:3] + spelling[4:]  # the second letter dropped
        monkeypatch.setattr(sys, "argv", ["gridctl", "run", typo, script])
        with pytest.raises(SystemExit) as exited:
            main()
        printed = capsys.readouterr()
        result = subprocess.CompletedProcess([], exited.value.code, printed.out, printed.err)
        message = one_line_usage_error(result)
        suggested = message.partition("did you mean ")[2].partition("?")[0]
        assert suggested in (*param.opts, *param.secondary_opts), (typo, message)


def test_options_after_the_script_still_go_to_the_script(gridctl, script, project):
    result = gridctl("run", "--wait", "--name", "verbatim", script, "--nmae", "-x", "--cpus=2")
    assert result.returncode == 0, result.stderr
    copy = gridctl.json("artifacts", "verbatim", "--dest", str(project.parent / "got"))
    (argv_file,) = [f for f in copy["files"] if f.endswith("argv.json")]
    assert json.loads(Path(argv_file).read_text()) == ["--nmae", "-x", "--cpus=2"]


# ---------------------------------------------------------------------------------------------
# Misspelt sweep functions and the way to pass such a value on purpose


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--lr", "unifrom(0,1,3)"],
            '--lr: "unifrom(0,1,3)": unifrom is not a sweep function; did you mean uniform?',
        ),
        (["--lr=linespace(0, 1, 5)"], "did you mean linspace?"),
        (["--seed", "randit(1, 10, 2)"], "did you mean randint?"),
        (["--lr", "Uniform(0, 1, 3)"], "did you mean uniform?"),
    ],
)
def test_a_misspelt_sweep_function_is_refused_and_starts_nothing(gridctl, script, args, fragment):
    message = one_line_usage_error(gridctl("run", script, *args))
    assert fragment in message
    assert "one-element list" in message and "--strategy none" in message
    assert gridctl.json("status") == []


def test_the_one_element_list_escape_reaches_the_script_as_is(gridctl, script, project):
    args = ("--lr", "['unifrom(0,1,3)']", "--opt=['Adam(lr)']")
    planned = dry_run(gridctl, "--name", "escaped", script, *args)
    assert planned["experiments"] == [
        {
            "name": "escaped-exp0",
            "params": {"lr": "unifrom(0,1,3)", "opt": "Adam(lr)"},
            "argv": ["python", "train.py", "--lr", "unifrom(0,1,3)", "--opt=Adam(lr)"],
            "nodes": 1,
            "price_per_hour": 0.0,
        }
    ]
    result = gridctl("run", "--wait", "--name", "escaped", script, *args)
    assert result.returncode == 0, result.stderr
    copy = gridctl.json("artifacts", "escaped", "--dest", str(project.parent / "got"))
    (argv_file,) = [f for f in copy["files"] if f.endswith("argv.json")]
    assert json.loads(Path(argv_file).read_text()) == ["--lr", "unifrom(0,1,3)", "--opt=Adam(lr)"]


def test_strategy_none_passes_a_misspelt_call_as_is(gridctl, script):
    planned = dry_run(gridctl, "--strategy", "none", script, "--lr", "unifrom(0,1,3)")
    (experiment,) = planned["experiments"]
    assert experiment["params"] == {}
    assert experiment["argv"] == ["python", "train.py", "--lr", "unifrom(0,1,3)"]


def test_run_help_documents_the_literal_escape(gridctl):
    result = gridctl("run", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "\"['unifrom(0, 1, 3)']\"" in text and "--strategy none" in text


# ---------------------------------------------------------------------------------------------
# AWS-only options on a local run


@pytest.mark.parametrize(
    ("options", "warning"),
    [
        (["--use_spot"], "--use_spot only applies to AWS runs; local runs ignore it"),
        (
            ["--use-spot", "--credential", "research"],
            "--use_spot, --credential only apply to AWS runs; local runs ignore them",
        ),
        (["--disk_size", "200"], "--disk_size only applies to AWS runs; local runs ignore it"),
        (
            ["--instance_type", "g4dn.xlarge", "--use_spot", "--credential", "research"],
            "--instance_type, --use_spot, --credential only apply to AWS runs;"
            " local runs ignore them",
        ),
    ],
)
def test_aws_only_options_on_a_local_run_draw_one_warning(gridctl, script, options, warning):
    result = gridctl("run", "--cloud", "local", "--wait", "--name", "here", *options, script)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        f"warning: {warning}"
    ]
    assert gridctl.status("here")["status"] == "succeeded"


def test_a_local_run_without_aws_options_does_not_warn(gridctl, script):
    result = gridctl("run", "--cloud", "local", "--wait", "--auto_resume", script)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_aws_only_options_on_an_aws_plan_do_not_warn(gridctl, script):
    result = gridctl(
        "run",
        "--cloud",
        "aws",
        "--dry-run",
        "--output",
        "json",
        "--use_spot",
        "--instance_type",
        "g4dn.xlarge",
        "--credential",
        "research",
        "--gpus",
        "1",
        script,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(json.loads(result.stdout)["experiments"]) == 1


# ---------------------------------------------------------------------------------------------
# GPUs on AWS without an instance type


@pytest.mark.parametrize(
    ("options", "note"),
    [
        (["--gpus", "1"], "g4dn.xlarge (4 vCPUs, 16 GiB, 1 T4 GPU)"),
        (["--gpus", "4"], "g4dn.12xlarge (48 vCPUs, 192 GiB, 4 T4 GPUs)"),
        (["--cpus", "4", "--memory", "8G"], "c5.xlarge (4 vCPUs, 8 GiB)"),
    ],
)
def test_aws_without_a_type_picks_the_smallest_that_fits_and_says_so(
    gridctl, script, options, note
):
    result = gridctl("run", "--cloud", "aws", "--dry-run", "--output", "json", *options, script)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"no --instance_type given; using {note}, the smallest type that fits one experiment"
    ]
    planned = json.loads(result.stdout)
    assert [e["argv"] for e in planned["experiments"]] == [["python", "train.py"]]


def test_aws_default_type_is_not_announced(gridctl, script):
    result = gridctl("run", "--cloud", "aws", "--dry-run", "--output", "json", script)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_aws_request_no_type_fits_names_the_request(gridctl, script):
    message = one_line_usage_error(gridctl("run", "--cloud", "aws", "--gpus", "64", script))
    assert message == (
        "no current-generation instance type fits --gpus 64 per experiment;"
        " ask for less or name a type with --instance_type"
    )


# ---------------------------------------------------------------------------------------------
# The root disk of AWS instances


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], 100),
        (["--disk_size", "8"], 8),
        (["--disk-size", "500"], 500),
        (["--disk_size", "16384"], 16384),
    ],
)
def test_the_root_disk_size_is_in_the_aws_plan(gridctl, script, args, expected):
    planned = dry_run(gridctl, "--cloud", "aws", *args, script)
    assert planned["disk_size"] == expected


def test_a_local_plan_has_no_root_disk_size(gridctl, script):
    assert dry_run(gridctl, "--cloud", "local", script)["disk_size"] is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", "--disk_size must be a whole number of GiB from 8 to 16384, not 7"),
        ("16385", "--disk_size must be a whole number of GiB from 8 to 16384, not 16385"),
        ("0", "--disk_size must be a whole number of GiB from 8 to 16384, not 0"),
        ("-5", "--disk_size must be a whole number of GiB from 8 to 16384, not -5"),
        ("1.5", "Invalid value for '--disk_size' / '--disk-size': '1.5' is not a valid int."),
        ("big", "Invalid value for '--disk_size' / '--disk-size': 'big' is not a valid int."),
    ],
)
def test_a_root_disk_size_out_of_range_is_one_line(gridctl, script, value, expected):
    result = gridctl("run", "--cloud", "aws", "--dry-run", "--disk_size", value, script)
    assert expected in one_line_usage_error(result)


# ---------------------------------------------------------------------------------------------
# Multi-node experiments: the node count, and what is refused before anything starts


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--gpus", "6", "--instance_type", "4_v100_16gb"],
            "--gpus 6 does not divide into nodes of 4 GPUs (4_v100_16gb has 4):"
            " use --gpus 4 or --gpus 8",
        ),
        (
            ["--gpus", "10", "--instance_type", "p3.8xlarge"],
            "--gpus 10 does not divide into nodes of 4 GPUs (p3.8xlarge has 4):"
            " use --gpus 8 or --gpus 12",
        ),
        (["--nodes", "0"], "--nodes 0: an experiment runs on at least 1 node"),
        (["--nodes", "-2"], "--nodes -2: an experiment runs on at least 1 node"),
        (["--nodes", "65"], "--nodes 65: an experiment runs on at most 64 nodes"),
        (
            ["--nodes", "2", "--gpus", "3"],
            "--gpus 3 does not divide over --nodes 2: use --gpus 2 or --gpus 4",
        ),
        (
            ["--nodes", "2", "--gpus", "16", "--instance_type", "4_t4_16gb"],
            "--gpus 16 over --nodes 2 needs 8 GPUs per node, more than 4_t4_16gb has (4):"
            " use --nodes 4",
        ),
        (
            ["--gpus", "1024", "--instance_type", "8_a100_40gb"],
            "--gpus 1024 on 8_a100_40gb (8 GPUs each) needs 128 nodes; an experiment runs on"
            " at most 64: use --gpus 512 or less",
        ),
        (
            ["--framework", "pytorch"],
            "--framework pytorch: use one of lightning, torch, tensorflow, keras, jax, julia,"
            " torchelastic (or leave it out: the script then runs once per node)",
        ),
        (["--nodes", "two"], "Invalid value for '--nodes'"),
    ],
)
@pytest.mark.parametrize("cloud", ["local", "aws"])
def test_a_node_count_that_cannot_work_is_one_line_and_starts_nothing(
    gridctl, script, args, expected, cloud
):
    for dry in ([], ["--dry-run"]):
        message = one_line_usage_error(gridctl("run", "--cloud", cloud, *dry, *args, script))
        assert message.startswith(expected), message
    assert gridctl.json("status") == []


def test_a_config_files_nodes_are_checked_as_the_flags_are(gridctl, script, project):
    (project / "gang.yml").write_text("compute: {train: {nodes: 3, gpus: 4}}\n")
    message = one_line_usage_error(gridctl("run", "--config", "gang.yml", script))
    assert message == "--gpus 4 does not divide over --nodes 3: use --gpus 3 or --gpus 6"
    (project / "wide.yml").write_text("compute: {train: {nodes: 100}}\n")
    message = one_line_usage_error(gridctl("run", "--config", "wide.yml", script))
    assert message == "wide.yml: compute.train.nodes 100: an experiment runs on at most 64 nodes"
    assert gridctl.json("status") == []


@pytest.mark.parametrize(
    ("args", "nodes"),
    [
        ([], 1),
        (["--nodes", "1"], 1),
        (["--nodes", "2"], 2),
        (["--nodes", "3", "--cpus", "0.1"], 3),
        (["--cloud", "aws", "--gpus", "8", "--instance_type", "4_t4_16gb"], 2),
        (["--cloud", "aws", "--gpus", "4", "--instance_type", "4_t4_16gb"], 1),
        (["--cloud", "aws", "--gpus", "4", "--instance_type", "1_t4_16gb"], 4),
        (["--cloud", "aws", "--nodes", "4", "--gpus", "8", "--instance_type", "g4dn.12xlarge"], 4),
        (["--cloud", "aws", "--nodes", "2", "--gpus", "2"], 2),
    ],
)
def test_every_planned_experiment_says_its_nodes(gridctl, script, args, nodes):
    planned = dry_run(gridctl, *args, script, "--lr", "[1, 2]")
    assert [e["nodes"] for e in planned["experiments"]] == [nodes, nodes]


def test_the_config_files_nodes_and_grids_zero(gridctl, script, project):
    (project / "gang.yml").write_text("compute: {train: {nodes: 2}}\n")
    (project / "grid.yml").write_text("compute: {train: {nodes: 0}}\n")
    assert dry_run(gridctl, "--config", "gang.yml", script)["experiments"][0]["nodes"] == 2
    assert dry_run(gridctl, "--config", "grid.yml", script)["experiments"][0]["nodes"] == 1
    overridden = dry_run(gridctl, "--config", "gang.yml", "--nodes", "3", "--cpus", "0.1", script)
    assert overridden["experiments"][0]["nodes"] == 3


def test_aws_without_a_type_picks_the_smallest_that_fits_one_node(gridctl, script):
    result = gridctl("run", "--cloud", "aws", "--dry-run", "--nodes", "2", "--gpus", "8", script)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "no --instance_type given; using g4dn.12xlarge (48 vCPUs, 192 GiB, 4 T4 GPUs), the"
        " smallest type that fits one node"
    ]
    assert "(2 nodes)" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--nodes", "2", "--cpus", "{cpus}"],
            "--nodes 2 with --cpus {cpus} each need {double}: this machine has {cpus} CPUs",
        ),
        (
            ["--nodes", "{more}"],
            "--nodes {more} with --cpus 1 each need {more}: this machine has {cpus} CPUs",
        ),
        (["--nodes", "4", "--gpus", "4"], "--gpus 4: this machine has 0 GPU(s) (use --cloud aws)"),
        (
            ["--gpus", "8", "--instance_type", "4_t4_16gb"],
            "--gpus 8: this machine has 0 GPU(s) (use --cloud aws)",
        ),
    ],
)
def test_a_local_gang_that_can_never_fit_this_machine_is_refused(gridctl, script, args, expected):
    """Its K nodes run here at once: K times a node's request must fit."""
    import os

    cpus = os.cpu_count() or 1
    values = {"cpus": str(cpus), "double": str(2 * cpus), "more": str(cpus + 1)}
    args = [a.format(**values) for a in args]
    message = one_line_usage_error(gridctl("run", "--cloud", "local", *args, script))
    assert message == expected.format(**values)
    single = gridctl("run", "--cloud", "local", "--dry-run", "--cpus", str(cpus), script)
    assert single.returncode == 0, single.stderr
    assert gridctl.json("status") == []


def test_a_local_multi_node_run_is_recorded_with_its_nodes_and_framework(gridctl, script):
    from gridctl.agent.service.home import Home
    from gridctl.agent.service.registry import Registry

    result = gridctl("run", "--name", "pair", "--nodes", "2", "--framework", "lightning", script)
    assert result.returncode == 0, result.stderr
    (experiment,) = gridctl.status("pair")["experiments"]
    assert experiment["nodes"] == 2
    assert gridctl.json("status", "pair-exp0")["nodes"] == 2
    record = Registry(Home(gridctl.home).registry).get_experiment("pair-exp0")
    assert record is not None
    assert (record.spec.nodes, record.spec.framework) == (2, "lightning")
    table = gridctl("status", "pair")
    assert "pair-exp0 (2 nodes)" in table.stdout
    shown = gridctl("status", "pair-exp0")
    assert [line.split() for line in shown.stdout.splitlines() if "nodes" in line] == [
        ["nodes", "2"]
    ]


def test_a_single_node_experiment_says_one_node(gridctl, script):
    result = gridctl("run", "--name", "one", "--wait", script)
    assert result.returncode == 0, result.stderr
    assert gridctl.status("one")["experiments"][0]["nodes"] == 1
    assert "(1 nodes)" not in gridctl("status", "one").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["logs", "one-exp0", "--node", "1"], "--node 1: one-exp0 runs on one node, rank 0"),
        (["logs", "one", "--node", "-1"], "--node must be zero or more, got -1"),
        (["logs", "nope", "--node", "1"], "no run or experiment named 'nope'"),
    ],
)
def test_logs_of_a_rank_the_experiment_lacks_are_one_line(gridctl, script, args, expected):
    assert gridctl("run", "--name", "one", "--wait", script).returncode == 0
    assert one_line_usage_error(gridctl(*args)).startswith(expected)
    assert gridctl("logs", "one", "--node", "0").returncode == 0
