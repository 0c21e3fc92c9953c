"""Tables for people, laid out here as rich lays out a borderless table, so that a big one
prints fast: rich's own layout takes seconds for a 1000-experiment run.

A table that fits its width and holds printable ASCII only is laid out here, as the very
characters rich would print (``lines``; written as is when piped, no rich loaded) or as
styled segments in a terminal; any other table goes to rich's ``Table``, which wraps and
measures wide characters. Cells are text with styled parts (``Styled``), never markup, so
no value is ever read as markup or emoji.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions
    from rich.segment import Segment

HEADER_STYLE = "bold"
TITLE_STYLE = "table.title"
"""rich's own title style (italic), as its ``Table`` gives a plain-string title."""
PAD = 1
"""Spaces either side of every cell (rich's default padding, edges included)."""


@dataclass(frozen=True)
class Styled:
    """Text shown in a style (a rich style name such as ``green`` or ``bold``)."""

    text: str
    style: str


Part = str | Styled
Cell = Part | tuple[Part, ...]
"""A cell's text: one part, or parts side by side."""


def _parts(cell: Cell) -> tuple[Part, ...]:
    return cell if isinstance(cell, tuple) else (cell,)


def plain(cell: Cell) -> str:
    if isinstance(cell, str):
        return cell
    if isinstance(cell, Styled):
        return cell.text
    return "".join(p if isinstance(p, str) else p.text for p in cell)


@dataclass(frozen=True)
class _Layout:
    """A table laid out unwrapped: its title, each column's text width, and the text of
    every row (the header first, when shown)."""

    title: str
    widths: list[int]
    texts: list[list[str]]

    @property
    def width(self) -> int:
        return sum(self.widths) + 2 * PAD * len(self.widths)


@dataclass
class Table:
    columns: tuple[str, ...]
    title: Cell | None = None
    show_header: bool = True
    rows: list[tuple[Cell, ...]] = field(default_factory=list)

    def add_row(self, *cells: Cell) -> None:
        self.rows.append(cells)

    def _layout(self, width: int) -> _Layout | None:
        """The table as rich draws it when it fits ``width`` unwrapped and holds printable
        ASCII only (rich measures other characters itself); None otherwise."""
        texts = [list(self.columns)] if self.show_header else []
        texts += [[plain(cell) for cell in row] for row in self.rows]
        title = "" if self.title is None else plain(self.title)
        if not texts or not all(_simple(t) for t in (title, *map("".join, texts))):
            return None
        widths = [max(map(len, column)) for column in zip(*texts, strict=True)]
        found = _Layout(title, widths, texts)
        return found if found.width <= width and len(title) <= found.width else None

    def lines(self, width: int) -> list[str] | None:
        """The table as rich prints it without colour in ``width`` columns, or None when
        rich must lay it out (it would wrap, or holds more than printable ASCII)."""
        layout = self._layout(width)
        if layout is None:
            return None
        pad, gap = " " * PAD, " " * 2 * PAD
        out = [layout.title.ljust(layout.width)] if layout.title else []
        out += [
            pad + gap.join(t.ljust(w) for t, w in zip(row, layout.widths, strict=True)) + pad
            for row in layout.texts
        ]
        return out

    def _segments(self, console: Console, layout: _Layout) -> Iterator[Segment]:
        """What ``lines`` holds, in its styles: for a terminal."""
        from rich.segment import Segment
        from rich.style import Style

        style = console.get_style
        pad = " " * PAD
        new_line = Segment.line()
        if self.title is not None and layout.title:
            base = style(TITLE_STYLE)
            for part in _parts(self.title):
                own = Style.null() if isinstance(part, str) else style(part.style)
                yield Segment(plain(part), base + own)
            yield Segment(" " * (layout.width - len(layout.title)), base)
            yield new_line
        if self.show_header:
            bold = style(HEADER_STYLE)
            for name, w in zip(self.columns, layout.widths, strict=True):
                yield Segment(pad + name.ljust(w) + pad, bold)
            yield new_line
        body = layout.texts[1:] if self.show_header else layout.texts
        for row, texts in zip(self.rows, body, strict=True):
            for cell, text, w in zip(row, texts, layout.widths, strict=True):
                yield Segment(pad)
                for part in _parts(cell):
                    if isinstance(part, str):
                        yield Segment(part)
                    else:
                        yield Segment(part.text, style(part.style))
                yield Segment(" " * (w - len(text)) + pad)
            yield new_line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[object]:
        layout = self._layout(options.max_width)
        if layout is not None:
            yield from self._segments(console, layout)
        else:
            yield self.to_rich()

    def to_rich(self) -> object:
        """rich's ``Table`` of this table, for what it must lay out itself."""
        from rich.table import Table as RichTable
        from rich.text import Text

        def text(cell: Cell) -> Text:
            return Text.assemble(
                *(p if isinstance(p, str) else (p.text, p.style) for p in _parts(cell))
            )

        title = None if self.title is None else text(self.title)
        if title is not None:
            title.style = TITLE_STYLE
        table = RichTable(
            title=title,
            box=None,
            header_style=HEADER_STYLE,
            title_justify="left",
            show_header=self.show_header,
        )
        for column in self.columns:
            table.add_column(column)
        for row in self.rows:
            table.add_row(*(text(c) for c in row))
        return table


def _simple(text: str) -> bool:
    """One cell per character, nothing rich would strip or break the line at."""
    return text.isascii() and text.isprintable()
