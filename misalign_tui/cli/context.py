"""What every command shares: the workspace, its store, and output in table or JSON form.

Two rules for everything the commands print, applied here once:

- **Hostile text.** Prompts, responses, model and benchmark names are shown through ``HumanConsole``: no Rich
  markup or emoji codes are read from any string (a lone ``[`` or ``[/x]`` is text), and every control character
  is made visible (``core.text.printable``: ``ESC`` → ``␛``) before it reaches the terminal. Styling is applied
  with ``style=`` or ``Text`` objects built by ``styled``, never by markup inside a string.
- **Pipes and logs.** A stream that is not a terminal (a pipe, a file, a CI log) gets no width limit: tables are
  drawn at their natural width and lines are never wrapped, so identifiers (ids, names, hashes, statuses) stay
  whole and ``grep`` finds them (``COLUMNS`` is ignored there). In a terminal Rich fits tables to the window;
  identifier columns are ``no_wrap`` (see ``id_column``) so other columns give way first, and ``report`` switches
  to a stacked layout when a table would not fit (``print_table``). ``--format json`` is the machine form.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console, JustifyMethod, OverflowMethod, RenderableType
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text

from misalign_tui.core.store import Store
from misalign_tui.core.text import printable
from misalign_tui.core.workspace import Workspace, open_workspace

F = TypeVar("F", bound=Callable[..., Any])

_TRAILING_BLANKS = re.compile(r" +(?=\n)")
# "No width limit" for a stream that is not a terminal: wider than any table this tool draws.
NATURAL_WIDTH = 100_000


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


class HumanConsole(Console):
    """A Rich console for people: strings are never markup, and control characters are shown, not obeyed."""

    def render_str(self, text: str, *, style: str | Style = "", justify: JustifyMethod | None = None,
                   overflow: OverflowMethod | None = None, emoji: bool | None = None, markup: bool | None = None,
                   highlight: bool | None = None, highlighter: Any = None) -> Text:
        return super().render_str(printable(text), style=style, justify=justify, overflow=overflow, emoji=False,
                                  markup=False, highlight=highlight, highlighter=highlighter)

    def _render_buffer(self, buffer: Any) -> str:
        """In a pipe or a file, lines lose the trailing blanks that pad table cells (nothing else changes)."""
        text = super()._render_buffer(buffer)
        return text if self.is_terminal else _TRAILING_BLANKS.sub("", text)


def human_console(stderr: bool = False, stream: TextIO | None = None) -> HumanConsole:
    """The console for stdout (or stderr), following the module's two rules."""
    target = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    if is_terminal(target):
        return HumanConsole(stderr=stderr, file=stream, markup=False, emoji=False)
    return HumanConsole(stderr=stderr, file=stream, markup=False, emoji=False, width=NATURAL_WIDTH,
                        soft_wrap=True)


class _PrintableStream:
    """A text stream whose writes are made printable: for machine formats (CSV, JSON lines) written to a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text))

    def flush(self) -> None:
        self.stream.flush()


def data_stream(stream: TextIO) -> TextIO:
    """Where a machine format (CSV, JSON lines) goes: a file or a pipe gets the exact stored text — it is data for
    programs, and a re-import must read back what was stored — but a terminal gets control characters shown
    (``printable``), never obeyed."""
    return _PrintableStream(stream) if is_terminal(stream) else stream  # type: ignore[return-value]


def styled(text: object, style: str = "") -> Text:
    """User or model text with a style, made printable (a ``Text`` bypasses ``HumanConsole.render_str``)."""
    return Text(printable(str(text)), style=style)


def id_column(table: Table, header: str, **kwargs: Any) -> None:
    """A column of identifiers (ids, names, hashes, statuses): never wrapped or cut inside a table; a table that
    cannot hold them at the console's width is stacked instead (``print_table``)."""
    table.add_column(header, no_wrap=True, **kwargs)


def fits(console: Console, renderable: RenderableType) -> bool:
    """Whether ``renderable`` can be drawn at its natural width on this console (always, in a pipe)."""
    unbounded = console.options.update_width(NATURAL_WIDTH)  # a table measures itself within the width it gets
    return Measurement.get(console, unbounded, renderable).maximum <= console.width


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def print_table(console: Console, table: Table) -> None:
    """``table`` when it fits the console at its natural width; else the same records stacked — each row's first
    column on a line of its own, then every other column as ``header  value`` — so no cell is cut or squeezed
    into a column a few characters wide (a narrow terminal; in a pipe every table fits)."""
    if fits(console, table):
        console.print(table)
        return
    headers = [_plain(c.header) for c in table.columns]
    columns = [[_plain(cell) for cell in c.cells] for c in table.columns]
    if table.title:
        console.print(styled(_plain(table.title), "bold"))
    width = max((len(h) for h in headers[1:]), default=0)
    for i in range(table.row_count):
        first = columns[0][i]
        console.print(styled(f"{headers[0]}: {first}" if headers[0] else first, "bold"))
        for header, cells in zip(headers[1:], columns[1:], strict=True):
            if cells[i]:
                console.print(f"  {header.ljust(width)}  {cells[i]}")
    if table.caption:
        console.print(_plain(table.caption), style="dim")


class Context:
    def __init__(self, home: str | None, debug: bool = False) -> None:
        self.home_arg = home
        self.debug = debug
        self._workspace: Workspace | None = None
        self._store: Store | None = None
        self.console = human_console()
        self.err = human_console(stderr=True)

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = open_workspace(self.home_arg)
        return self._workspace

    @property
    def store(self) -> Store:
        """The workspace database, created (with the taxonomy) on first use."""
        if self._store is None:
            from misalign_tui.core.taxonomy import published_taxonomy

            ws = self.workspace.ensure()
            self._store = Store(ws.db_path)
            if not self._store.conn.execute("SELECT 1 FROM domains LIMIT 1").fetchone():
                self._store.sync_taxonomy(published_taxonomy())
        return self._store


pass_ctx = click.make_pass_decorator(Context)

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="json: stdout carries the JSON document alone, with the "
                             "exact stored text (control characters as JSON escapes).")


_JSON_UNSAFE = re.compile("[\x7f-\x9f]")  # DEL and C1: json.dumps escapes only C0 with ensure_ascii=False


def json_text(data: object) -> str:
    """JSON that keeps the exact text yet holds no control character raw: C0 controls are escaped by json.dumps,
    DEL and C1 here (as ``\\u009b``; the document decodes to the same strings)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def emit_json(data: object) -> None:
    sys.stdout.write(json_text(data) + "\n")
