"""Tables people read in a terminal, 80 columns wide included (rich, imported only when one is printed).

Identifiers (names, states, request ids) are never broken across lines — at most shortened with an
ellipsis — and only the one free-text column (an error message, a description) wraps, so a narrow
terminal costs that column's width rather than chopping every cell into pieces. Output that is not a
terminal is laid out for ``COLUMNS`` when it is set, else 160 columns: scripts should use ``--json``.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    wrap: bool = False  # the free-text column: wraps instead of being cut
    max_width: int | None = None


def width() -> int | None:
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if sys.stdout.isatty() else 160


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, caption: str | None = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # With a free-text column the table takes the whole width, and that column the room left over.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  caption=Text(caption) if caption else None, caption_justify="left",
                  highlight=False, expand=any(c.wrap for c in columns))
    for column in columns:
        table.add_column(
            Text(column.header), justify=column.justify,  # type: ignore[arg-type]
            no_wrap=not column.wrap, overflow="fold" if column.wrap else "ellipsis",
            max_width=column.max_width, ratio=1 if column.wrap else None,
            min_width=12 if column.wrap else None,
        )
    # Cells are text, never markup: a server's description may hold "[bold]" or "[held: new]".
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    # Rendered to text first so that padding a free-text column adds is not left at the ends of lines.
    buffer = io.StringIO()
    Console(file=buffer, width=width() or shutil.get_terminal_size().columns, highlight=False,
            soft_wrap=False).print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
