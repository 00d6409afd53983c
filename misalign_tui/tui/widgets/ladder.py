"""The Compare screen's ladder mode: one model's quantization variants (core/views/ladder.py) as a table of
variants, a chart of the headline metric against bits per weight, and a per-dimension table.

Data arrives from a worker message (``LadderLoaded``); nothing here queries the store.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from misalign_tui.core import metrics
from misalign_tui.core.text import printable
from misalign_tui.core.views.figures import interval, p_short, pct
from misalign_tui.core.views.ladder import Ladder, LadderVariant, judge_auroc_text
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col


def _fig(v: float | None, ci: tuple[float, float] | None) -> str:
    """``90.0 [79.9–95.3]``: the app's spelling of a figure with its interval (core/views/figures.py)."""
    return pct(v) + ("" if ci is None else f" [{interval(ci)}]")


def _delta(v: float | None) -> str:
    return "" if v is None else f"{100 * v + 0.0:+.1f}"


def _size(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def verdict(v: LadderVariant) -> str:
    if v.is_reference:
        return "reference"
    if v.run is None:
        return "no run"
    return v.change or "n.s."


class LadderChart(PlotextPlot):
    """The headline metric (%) against bits per weight: overall with its 95 % interval, and per dimension."""

    def replot(self, ladder: Ladder | None) -> None:
        self.plt.clear_data()
        self.plt.clear_figure()
        key = metrics.METRICS[ladder.metric] if ladder else None
        points = [v for v in (ladder.variants if ladder else ()) if v.value is not None and v.model.bits_per_weight]
        if ladder is None or key is None or len(points) < 1:
            self.plt.title("metric against bits per weight")
            self.plt.text("no variant with a run yet", 0.5, 0.5, alignment="center")
            self.plt.xlim(0, 1)
            self.plt.ylim(0, 1)
            self.plt.xticks([])
            self.plt.yticks([])
            self.refresh()
            return
        self.plt.title(f"{key.label} % against bits per weight")
        xs = [float(v.model.bits_per_weight or 0) for v in points]
        values = [100 * (v.value or 0.0) for v in points]
        lows = [100 * v.ci[0] for v in points if v.ci]
        highs = [100 * v.ci[1] for v in points if v.ci]
        dims = list(dict.fromkeys(d.dimension for v in points for d in v.dimensions))
        for i, dim in enumerate(dims):
            pts = [(x, 100 * d.value) for x, v in zip(xs, points, strict=True) for d in v.dimensions
                   if d.dimension == dim and d.value is not None]
            if pts:
                self.plt.plot([p[0] for p in pts], [p[1] for p in pts], marker="dot", label=dim,
                              color=("cyan", "magenta", "yellow", "green")[i % 4])
        self.plt.plot(xs, values, marker="●", label="all", color="white")
        for x, v in zip(xs, points, strict=True):  # the 95 % interval as a vertical line through each point
            if v.ci:
                self.plt.plot([x, x], [100 * v.ci[0], 100 * v.ci[1]], marker="│", color="white")
        if key.reference is not None:
            self.plt.hline(100 * key.reference, "red")
        span = max(xs) - min(xs)
        ticks: list[float] = []
        for x in sorted(set(xs), reverse=True):  # skip a tick too close to the last one kept (labels would collide)
            if not ticks or span == 0 or ticks[-1] - x >= 0.12 * span:
                ticks.append(x)
        self.plt.xticks(ticks, [f"{x:.2f}" for x in ticks])
        pad = 0.05 * span or 0.5
        self.plt.xlim(min(xs) - pad, max(xs) + pad)
        dim_values = [100 * d.value for v in points for d in v.dimensions if d.value is not None]
        everything = values + lows + highs + dim_values + ([100 * key.reference] if key.reference is not None else [])
        self.plt.ylim(max(0.0, min(everything) - 5), min(100.0, max(everything) + 5))
        self.plt.xlabel("bits per weight")
        self.refresh()


class LadderPanel(VerticalScroll):
    """Status line; each variant against the reference; each variant's file and speed; the chart; the
    per-dimension table — ``show(ladder)`` fills them. Every figure keeps its interval and n at 80 columns: the
    panel scrolls (at 80×24 the chart and the per-dimension table lie below the two tables)."""

    DEFAULT_CSS = """
    LadderPanel { display: none; height: 1fr; scrollbar-size-vertical: 1; }
    LadderPanel.-shown { display: block; }
    LadderPanel #ladder-status { height: auto; padding: 0 1; color: $text-muted; }
    LadderPanel FittedTable { height: auto; }
    LadderPanel #ladder-chart { height: 14; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Ladder: highlight a model on the left (L leaves the ladder)", id="ladder-status", markup=False)
        yield FittedTable(id="ladder-variants")
        yield FittedTable(id="ladder-files")
        yield LadderChart(id="ladder-chart")
        yield FittedTable(id="ladder-dims")

    def show(self, ladder: Ladder) -> None:
        key = metrics.METRICS[ladder.metric]
        rungs = ladder.rung_labels()
        status = (f"Ladder of {ladder.root.name} · {ladder.method} on {ladder.benchmark or 'no benchmark'} · "
                  f"reference {ladder.reference or 'none'}")
        firsts = [f"{d} at {w}" for d, w in ladder.first_significant_change.items() if w]
        status += " · first significant change: " + (", ".join(firsts) if firsts else "none")
        missing = [v.name for v in ladder.variants if v.run is None]
        if len(ladder.variants) < 2:
            status += f" · no variants yet: misalign-tui models quantize {ladder.root.name} --to …"
        elif missing:
            status += f" · no run: {', '.join(missing)}"
        self.query_one("#ladder-status", Static).update(printable(status))
        # against the reference: Δ, flip rate and McNemar on the items both scored, Holm across the variants
        self.query_one("#ladder-variants", FittedTable).show(
            (figure_col("rung", right=False), figure_col(f"{key.label} % [CI]"), figure_col("n"), figure_col("Δ"),
             figure_col("flips % [CI]"), figure_col("Holm p"), figure_col("vs ref.", right=False)),
            [(rungs[v.name], "no run" if v.run is None else _fig(v.value, v.ci), f"{v.n:,}" if v.run else "",
              _delta(v.delta), "" if v.is_reference or v.flip_rate is None else _fig(v.flip_rate, v.flip_rate_ci),
              "" if v.is_reference or v.mcnemar_p_holm is None else p_short(v.mcnemar_p_holm), verdict(v))
             for v in ladder.variants], keys=[v.name for v in ladder.variants])
        judge = ladder.method == "judge"  # a judge AUROC exists only for judge runs
        self.query_one("#ladder-files", FittedTable).show(
            (figure_col("rung", right=False), figure_col("bits/w"), figure_col("size"), figure_col(ladder.speed_unit),
             *((figure_col("judge AUROC [CI]"),) if judge else ()), figure_col("run"), name_col("model")),
            [(rungs[v.name], "-" if v.model.bits_per_weight is None else f"{v.model.bits_per_weight:.2f}",
              _size(v.model.size), "-" if v.items_per_s is None else f"{v.items_per_s:.2f}",
              *((judge_auroc_text(v, "–"),) if judge else ()),
              "-" if v.run is None else str(v.run.id) + ("" if v.run.complete else f" {v.run.status}"),
              v.model.name + ("†" if v.model.requantized else ""))
             for v in ladder.variants], keys=[v.name for v in ladder.variants])
        self.query_one(LadderChart).replot(ladder)
        self.query_one("#ladder-dims", FittedTable).show(
            (figure_col("rung", right=False), name_col("dimension"), figure_col(f"{key.label} % [CI]"), figure_col("n"),
             figure_col("Δ"), figure_col("flips"), figure_col("Holm p"), figure_col("change", right=False)),
            [(rungs[v.name], d.dimension, _fig(d.value, d.ci), f"{d.n:,}", _delta(d.delta),
              "" if v.is_reference else f"{d.flips}/{d.shared}",
              "" if v.is_reference or d.mcnemar_p_holm is None else p_short(d.mcnemar_p_holm),
              "reference" if v.is_reference else (d.change or "n.s.") + (
                  " (first)" if d.dimension in v.first_changes else ""))
             for v in ladder.variants for d in v.dimensions])

    def failed(self, text: str) -> None:
        self.query_one("#ladder-status", Static).update(printable(text))
        for table in self.query(FittedTable):
            table.show((), [])
        self.query_one(LadderChart).replot(None)
