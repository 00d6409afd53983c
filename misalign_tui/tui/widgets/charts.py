"""The Explore charts: horizontal bars with their 95 % interval, and the trade-off heat map with values in cells.

Each chart is one widget with ``replot(...)`` (data from a worker message; nothing here queries the store) and
draws itself for the width it has, so it stays readable from 80 columns up:

- every bar line ends with its figure — value, interval, n — which is never cut; the bar takes what is left;
- labels (domains, models) go on a line of their own when they would not fit beside the bar, so they are not
  cut either; only a model name beside a bar shrinks, with a middle ellipsis (``core.text.shorten_all``);
- the heat map prints each cell's value, names both axes and has a legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.content import Content
from textual.widget import Widget

from misalign_tui.core.metrics.vocabulary import Metric
from misalign_tui.core.text import cell_width, shorten_all
from misalign_tui.core.views.explore import Cell
from misalign_tui.core.views.figures import interval, pct
from misalign_tui.tui.plain import Part, assemble

SERIES_STYLES = ("cyan", "magenta", "yellow", "green", "blue", "red")
PARTIAL = " ▏▎▍▌▋▊▉"
MIN_BAR = 10  # cells a bar keeps however narrow the chart


def bar_glyphs(value: float, low: float | None, high: float | None, width: int,
               reference: float | None = None) -> list[tuple[str, str]]:
    """The cells of one bar ``width`` wide on a 0–1 scale, each as (glyph, part): ``bar`` up to the interval's
    low end, ``band`` from there to the value, ``whisker`` from the value to the high end (ending in ``┤``),
    ``ref`` for the reference line (chance) where the cell is otherwise empty, ``track`` elsewhere."""
    filled = max(0.0, min(1.0, value)) * width
    full = int(filled)
    frac = int((filled - full) * 8)
    lo = None if low is None else int(round(max(0.0, low) * width))
    hi = None if high is None else min(width, int(round(min(1.0, high) * width)))
    ref = None if reference is None else min(width - 1, int(reference * width))
    out: list[tuple[str, str]] = []
    for i in range(width):
        if i < full:
            out.append(("▓" if lo is not None and i >= lo else "█", "band" if lo is not None and i >= lo else "bar"))
        elif i == full and frac:
            out.append((PARTIAL[frac], "band" if lo is not None else "bar"))
        elif hi is not None and i < hi:
            out.append(("┤" if i == hi - 1 else "─", "whisker"))
        elif ref is not None and i == ref:
            out.append(("┊", "ref"))
        else:
            out.append((" ", "track"))
    return out


@dataclass(frozen=True)
class BarRow:
    label: str        # the group (dimension, domain, type, model)
    series: str       # the model; "" when there is one series
    value: float | None
    low: float | None
    high: float | None
    n: int


def figures(rows: Sequence[BarRow]) -> list[str]:
    """Each bar's value, interval and n, in aligned columns (the part of a bar line that is never cut)."""
    values = [pct(r.value) for r in rows]
    cis = ["" if r.value is None or r.low is None or r.high is None else f"[{interval((r.low, r.high))}]"
           for r in rows]
    ns = ["" if r.value is None else f"n={r.n:,}" for r in rows]
    wv, wc, wn = (max(map(cell_width, col)) for col in (values, cis, ns))
    return [f"{v:>{wv}}" + (f" {c:<{wc}}" if wc else "") + (f" {n:>{wn}}" if wn else "")
            for v, c, n in zip(values, cis, ns, strict=True)]


class TextChart(Widget):
    """A chart drawn as lines of text for the width it has: as tall as its lines (they wrap only past it)."""

    DEFAULT_CSS = """
    TextChart {
        height: auto;
        padding: 0 1;
    }
    """

    def _lines(self, width: int) -> list[Content]:
        raise NotImplementedError

    def render(self) -> Content:
        return Content("\n").join(self._lines(self.content_region.width or self.size.width))

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[no-untyped-def]
        return sum(max(1, -(-cell_width(line.plain) // max(width, 1))) for line in self._lines(width))


class IntervalBars(TextChart):
    """Groups of horizontal bars, one per series (model), with interval, value and n; see the module docstring."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._title = ""
        self._rows: list[BarRow] = []
        self._series: list[str] = []
        self._metric: Metric | None = None
        self._empty = ""

    def replot(self, title: str, rows: Sequence[BarRow], series: Sequence[str], metric: Metric,
               empty: str = "no data") -> None:
        self._title, self._rows, self._series, self._metric, self._empty = title, list(rows), list(series), metric, empty
        self.refresh(layout=True)

    def _lines(self, width: int) -> list[Content]:
        width = max(width, 20)
        out = [assemble((self._title, "bold"))]
        if not self._rows:
            return [*out, assemble((self._empty, "dim"))]
        metric = self._metric
        multi = len(self._series) > 1
        styles = {s: SERIES_STYLES[i % len(SERIES_STYLES)] for i, s in enumerate(self._series)}
        figs = figures(self._rows)
        fig_w = max(cell_width(f) for f in figs)
        label_w = max(cell_width(r.label) for r in self._rows)
        gaps = 3 if multi else 2
        # a model name beside its bar shrinks (middle ellipsis) so that the bar keeps at least MIN_BAR cells
        series_w = min(max((cell_width(s) for s in self._series), default=0), 18,
                       max(6, width - fig_w - gaps - 2 - MIN_BAR)) if multi else 0
        shown_series = dict(zip(self._series, shorten_all(self._series, series_w), strict=True)) if multi else {}
        own_line = label_w + series_w + fig_w + gaps + MIN_BAR > width  # labels whole on a line of their own
        bar_w = width - fig_w - series_w - gaps - (2 if own_line else label_w)
        bar_w = max(bar_w, 4)
        reference = metric.reference if metric is not None else None
        last_label = None
        for row, fig in zip(self._rows, figs, strict=True):
            style = styles.get(row.series, SERIES_STYLES[0])
            parts: list[Part] = []
            if own_line:
                if row.label != last_label:
                    out.append(assemble((row.label, "bold")))
                parts.append("  ")
            else:
                parts.append((row.label if row.label != last_label else "").ljust(label_w) + " ")
            last_label = row.label
            if multi:
                name = shown_series.get(row.series, row.series)
                parts.append((name + " " * (series_w - cell_width(name)) + " ", style))
            if row.value is None:
                parts.append(" " * bar_w)
            else:
                for glyph, part in bar_glyphs(row.value, row.low, row.high, bar_w, reference):
                    parts.append((glyph, {"bar": style, "band": f"{style} dim", "whisker": style,
                                          "ref": "dim", "track": ""}[part]))
            parts.append(" " + fig.rjust(fig_w))
            out.append(assemble(*parts))
        indent = 2 if own_line else label_w + 1
        indent += series_w + 1 if multi else 0
        half = bar_w // 2
        axis = "0".ljust(half) + "50".ljust(bar_w - half - 3) + "100" if bar_w >= 12 else "0".ljust(bar_w - 3) + "100"
        out.append(assemble(" " * indent + axis, ("  %", "dim")))
        legend: list[Part] = [("█ value  ▓ lower part of the 95% interval  ─┤ upper part", "dim")]
        if reference is not None and metric is not None and metric.reference_label:
            legend.append((f"  ┊ {metric.reference_label}", "dim"))
        out.append(assemble(*legend))
        return out


def bar_rows(cells: Sequence[Cell], one_series: bool) -> list[BarRow]:
    """Explore cells as bar rows, grouped by their group in the order given."""
    order: dict[str, list[Cell]] = {}
    for c in cells:
        order.setdefault(c.group, []).append(c)
    return [BarRow(g, "" if one_series else c.series, c.value, c.low, c.high, c.n)
            for g, group in order.items() for c in group]


# -- the trade-off heat map ------------------------------------------------------------------------------------

HEAT = ((0.05, "#3a4a5a", "0–5"), (0.15, "#2e6f95", "5–15"), (0.30, "#c98a2b", "15–30"), (1.01, "#b83a2e", "≥30"))


def heat_style(value: float) -> str:
    for upper, colour, _ in HEAT:
        if value < upper:
            return f"white on {colour}"
    return f"white on {HEAT[-1][1]}"


class TradeOffHeatmap(TextChart):
    """T[d1 → d2]: the share of prompts that satisfy d1 and fail d2, each cell with its value; rows are the
    dimension satisfied, columns the one failed; a legend says what the colours mean."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._dims: list[str] = []
        self._matrix: list[list[Cell | None]] = []
        self._model = ""
        self._empty = ""

    def replot(self, dims: Sequence[str], matrix: Sequence[Sequence[Cell | None]], model: str | None,
               empty: str = "") -> None:
        self._dims, self._matrix, self._model = list(dims), [list(r) for r in matrix], model or ""
        self._empty = empty or "n/a: needs prompts with pairs on two or more dimensions"
        self.refresh(layout=True)

    def _lines(self, width: int = 0) -> list[Content]:
        out = [assemble(("Trade-offs T[row → column] %", "bold"), *((" — ", self._model) if self._model else ()))]
        if not self._matrix:
            return [*out, assemble((self._empty, "dim"))]
        label_w = max(cell_width("satisfies ↓"), *(cell_width(d) for d in self._dims))
        cell_w = max(7, *(cell_width(d) + 2 for d in self._dims))
        out.append(assemble(" " * (label_w + 1), ("fails →", "italic")))
        out.append(assemble(("satisfies ↓".ljust(label_w + 1), "italic"),
                            *[(d.center(cell_w), "bold") for d in self._dims]))
        for d, row in zip(self._dims, self._matrix, strict=True):
            parts: list[Part] = [(d.ljust(label_w + 1), "bold")]
            for c in row:
                if c is None:
                    parts.append(("·".center(cell_w), "dim"))
                elif c.value is None:
                    parts.append(("n/a".center(cell_w), "dim"))
                else:
                    parts.append((pct(c.value).center(cell_w), heat_style(c.value)))
            out.append(assemble(*parts))
        legend: list[Part] = ["legend: "]
        for _, colour, label in HEAT:
            legend += [(f" {label} ", f"white on {colour}"), " "]
        legend.append(("% · ·: same dimension · intervals and n in the table", "dim"))
        out.append(assemble(*legend))
        return out
