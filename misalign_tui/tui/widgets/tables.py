"""The one table widget of the app: it fits its columns to the width it has, and only names give way.

Every table on every screen is a ``FittedTable``. A column is a *name* (a model, a domain, a prompt key: it shrinks
with a middle ellipsis, ``core.text.shorten_all``), a *figure* (a value, its interval, its n, a count, a status:
never cut) or *text* (a reason, a list of counts: it wraps onto more lines instead of being cut). The widths come
from ``core.text.fit_widths`` and are worked out again whenever the table's width changes. Cells are always plain
text (``core.text.printable_line``), never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from misalign_tui.core.text import cell_width, fit_widths, printable, printable_line, shorten_all

Cell = str | Text
COMFORTABLE = 16  # a name this long still reads; text wraps before names shrink below it


@dataclass(frozen=True)
class Col:
    """One column: its header, what kind of content it holds, the fewest cells it may shrink to, alignment."""

    label: str
    kind: Literal["name", "figure", "text"] = "figure"
    min: int = 6
    right: bool = False  # figures read best right-aligned


def name_col(label: str, fewest: int = 6) -> Col:
    return Col(label, "name", fewest)


def figure_col(label: str, right: bool = True) -> Col:
    return Col(label, "figure", 0, right)


def text_col(label: str, fewest: int = 16) -> Col:
    return Col(label, "text", fewest)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else printable_line(cell)


class FittedTable(DataTable[Cell]):
    """A ``DataTable`` filled with ``show(columns, rows)``; see the module docstring for what shrinks."""

    DEFAULT_CSS = """
    FittedTable {
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None, cursor: bool = True) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row" if cursor else "none", zebra_stripes=True)
        self._columns: list[Col] = []
        self._rows: list[Sequence[Cell]] = []
        self._keys: list[str] | None = None
        self._fitted_to = -1

    def show(self, columns: Sequence[Col], rows: Sequence[Sequence[Cell]],
             keys: Sequence[str] | None = None) -> None:
        """Replace the table's columns and rows (the cursor stays on the same row number where it can)."""
        self._columns = list(columns)
        self._rows = [list(r) for r in rows]
        self._keys = list(keys) if keys is not None else None
        self._refill()

    @property
    def shown_rows(self) -> list[list[str]]:
        """The rows as given (before shrinking): what tests and the screens read back."""
        return [[_plain(c) for c in row] for row in self._rows]

    def _available(self) -> int:
        """Cells for the columns' content: the width less each column's padding and the vertical scrollbar."""
        width = self.size.width
        if width <= 0:
            return 10_000  # not laid out yet: natural widths, fitted again on the first resize
        return width - int(self.styles.scrollbar_size_vertical) - 2 * self.cell_padding * len(self._columns)

    def _fit(self, natural: list[int], available: int) -> list[int]:
        """Names give way first (down to ``COMFORTABLE`` cells), then text wraps, then names go to their minimum."""
        cols = self._columns
        names = [c.kind == "name" for c in cols]
        texts = [c.kind == "text" for c in cols]
        floor = [max(c.min, 1, cell_width(c.label) if c.kind == "text" else 1) for c in cols]  # headers stay whole
        comfortable = [max(f, min(n, COMFORTABLE)) for f, n in zip(floor, natural, strict=True)]
        widths = fit_widths(natural, names, available, minimum=comfortable)
        widths = fit_widths(widths, texts, available, minimum=floor)
        return fit_widths(widths, names, available, minimum=floor)

    def _refill(self) -> None:
        available = self._available()
        self._fitted_to = self.size.width
        cols = self._columns
        plain_rows = [[_plain(c) for c in row] for row in self._rows]
        natural = []
        for i, col in enumerate(cols):
            cells = [cell_width(line) for row in plain_rows for line in row[i].split("\n")] if plain_rows else []
            natural.append(max([cell_width(col.label), *cells]))
        widths = self._fit(natural, available)
        shrunk: dict[int, list[str]] = {}
        for i, (col, w) in enumerate(zip(cols, widths, strict=True)):
            if col.kind == "name" and w < natural[i]:
                shrunk[i] = shorten_all([row[i] for row in plain_rows], w)
        wraps = any(c.kind == "text" and w < n for c, w, n in zip(cols, widths, natural, strict=True))
        cursor_row = self.cursor_row
        self.clear(columns=True)
        for i, (col, w) in enumerate(zip(cols, widths, strict=True)):
            label = col.label if col.kind != "name" else shorten_all([col.label], w)[0]
            self.add_column(Text(printable_line(label), justify="right" if col.right else "left"), width=w,
                            key=str(i))
        for r, row in enumerate(self._rows):
            cells: list[Cell] = []
            for i, cell in enumerate(row):
                col = cols[i]
                if i in shrunk:
                    style = cell.style if isinstance(cell, Text) else ""
                    cells.append(Text(shrunk[i][r], style=style, no_wrap=True))
                elif isinstance(cell, Text):
                    cells.append(cell)
                else:
                    shown = printable(cell) if col.kind == "text" else printable_line(cell)
                    cells.append(Text(shown, justify="right" if col.right else "left",
                                      no_wrap=col.kind != "text"))
            key = self._keys[r] if self._keys is not None else None
            self.add_row(*cells, key=key, height=None if wraps or any("\n" in _plain(c) for c in row) else 1)
        if self.row_count and cursor_row is not None:
            self.move_cursor(row=min(cursor_row, self.row_count - 1), animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._fitted_to and self._columns:
            self._refill()
