"""`gridctl run`'s options are declared once: each makes a flag, a Grid YAML key and a
setting, and an option declared only in ``RunSettings`` gets all three."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import typer.main

from gridctl.cli.main import app
from gridctl.cli.options import RUN_OPTIONS, settle

COMMAND_ONLY = {"dry_run", "wait", "follow", "output", "help"}
"""Options of `run` that are about the command, not the run: no config key, no setting."""


def test_every_option_is_a_flag_of_run_with_its_help(gridctl):
    result = gridctl("run", "--help", env={**gridctl.env, "COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    for entry in RUN_OPTIONS:
        for flag in entry.flags:
            assert flag in result.stdout, (entry.name, flag)
        if entry.help is not None:
            assert entry.help in " ".join(result.stdout.split()), entry.name


def test_run_has_no_option_beside_the_table():
    command = typer.main.get_command(app).commands["run"]
    options = {p.name: p for p in command.params if p.param_type_name == "option"}
    assert set(options) - COMMAND_ONLY == {entry.name for entry in RUN_OPTIONS}
    for entry in RUN_OPTIONS:
        assert set(options[entry.name].opts) == set(entry.flags)


@pytest.mark.parametrize("entry", RUN_OPTIONS, ids=lambda entry: entry.name)
def test_a_flag_beats_the_config_file_which_beats_the_default(entry):
    flag, configured = object(), object()
    assert getattr(settle({entry.name: flag}, {entry.name: configured}), entry.name) is flag
    assert getattr(settle({entry.name: None}, {entry.name: configured}), entry.name) is configured
    assert getattr(settle({entry.name: None}, {}), entry.name) == entry.default


DECLARE_ONE_MORE = """
import dataclasses, json, sys, tempfile
from pathlib import Path
from gridctl.cli import checks, options

@dataclasses.dataclass(frozen=True)
class Extended(options.RunSettings):
    max_hours: float | None = options.option(
        help="stop each experiment after this many hours",
        config="compute.train.max_hours",
        check=checks.positive_number,
    )

options.RunSettings = Extended
options.RUN_OPTIONS = options._table()

import typer.main
from gridctl.cli import config
from gridctl.cli.main import app

command = typer.main.get_command(app).commands["run"]
flags = [opt for p in command.params for opt in p.opts]
path = Path(tempfile.mkdtemp()) / "grid.yml"
path.write_text("compute: {train: {max_hours: 2.5}}\\n")
configured = config.load_config(path).values
json.dump({
    "flags": flags,
    "configured": configured,
    "from_config": options.settle({}, configured).max_hours,
    "from_flag": options.settle({"max_hours": 1.0}, configured).max_hours,
}, sys.stdout)
"""


def test_an_option_declared_once_is_a_flag_a_config_key_and_a_setting():
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DECLARE_ONE_MORE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert {"--max_hours", "--max-hours"} <= set(found["flags"])
    assert found["configured"] == {"max_hours": 2.5}
    assert (found["from_config"], found["from_flag"]) == (2.5, 1.0)
