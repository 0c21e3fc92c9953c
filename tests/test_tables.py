"""Tables laid out without rich print the very characters rich prints, and leave to rich
what they cannot lay out the same."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from gridctl.cli.tables import Styled, Table

WIDTH = 200


def _by_rich(table: Table, *, color: bool = False, width: int = WIDTH) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False, force_terminal=color)
    console.print(table.to_rich())
    return out.getvalue()


def _runs() -> Table:
    table = Table(("run", "status", "experiments", "cost"))
    table.add_row("sweep-1", Styled("succeeded", "green"), "3 succeeded", "$0.00")
    table.add_row("a-much-longer-name", Styled("failed", "red"), "1 failed, 2 succeeded", "?")
    table.add_row(Styled("total", "bold"), "", "", "$1,234.50 est.")
    return table


def _run() -> Table:
    table = Table(("experiment", "status", "params"), title=("r (", Styled("queued", "dim"), ")"))
    table.add_row("r-exp0", (Styled("queued", "dim"), " (needs 2 CPUs)"), "lr=0.1 [a] b=[1, 2]")
    table.add_row("r-exp1", Styled("running", "cyan"), "-")
    return table


def _fields() -> Table:
    table = Table(("", ""), title="one (run r)")
    table.add_row("status", Styled("running", "cyan"))
    table.add_row("command", "python train.py --lr '[0.1]' :smile:")
    return table


@pytest.mark.parametrize("make", [_runs, _run, _fields])
def test_a_table_that_fits_is_the_text_rich_prints(make):
    table = make()
    lines = table.lines(WIDTH)
    assert lines is not None
    assert "".join(line + "\n" for line in lines) == _by_rich(table)


@pytest.mark.parametrize("make", [_runs, _run, _fields])
def test_in_a_terminal_it_shows_the_same_text_in_colour(make):
    out = io.StringIO()
    Console(file=out, width=WIDTH, highlight=False, force_terminal=True).print(make())
    coloured = out.getvalue()
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == _by_rich(make())


def test_what_would_wrap_or_is_not_plain_ascii_is_left_to_rich():
    wide = Table(("name", "params"))
    wide.add_row("r-exp0", "x" * WIDTH)
    assert wide.lines(WIDTH) is None
    for text in ("caf\u00e9", "\u5b9f\u9a13", "a\tb", "two\nlines"):
        odd = Table(("name", "params"))
        odd.add_row("r-exp0", text)
        assert odd.lines(WIDTH) is None
    titled = Table(("a",), title="a title wider than the table")
    titled.add_row("1")
    assert titled.lines(WIDTH) is None
    out = io.StringIO()
    Console(file=out, width=40, highlight=False).print(wide)
    assert out.getvalue() == _by_rich(wide, width=40)  # rich wraps it, as it always did
