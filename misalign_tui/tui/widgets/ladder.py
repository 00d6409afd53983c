"""The Compare screen's ladder mode: one model's quantization variants (core/views/ladder.py) as a table of
variants, a chart of the headline metric against bits per weight, and a per-dimension table.

Data arrives from a worker message (``LadderLoaded``); nothing here queries the store.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from misalign_tui.core import metrics
from misalign_tui.core.text import printable
from misalign_tui.core.views.ladder import Ladder, LadderVariant


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _p(p: float | None) -> str:
    return "" if p is None else f"{p:.2g}"


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


class LadderPanel(Vertical):
    """Status line, variants table, chart, per-dimension table; ``show(ladder)`` fills them."""

    DEFAULT_CSS = """
    LadderPanel { display: none; height: 1fr; }
    LadderPanel.-shown { display: block; }
    LadderPanel #ladder-status { height: auto; padding: 0 1; color: $text-muted; }
    LadderPanel #ladder-variants { height: auto; max-height: 9; }
    LadderPanel #ladder-chart { height: 2fr; min-height: 8; }
    LadderPanel #ladder-dims { height: 1fr; min-height: 4; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Ladder: highlight a model on the left (L leaves the ladder)", id="ladder-status", markup=False)
        yield DataTable(id="ladder-variants", cursor_type="row", zebra_stripes=True)
        yield LadderChart(id="ladder-chart")
        yield DataTable(id="ladder-dims", cursor_type="row", zebra_stripes=True)

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
        table = self.query_one("#ladder-variants", DataTable)
        table.clear(columns=True)
        for label in ("rung", f"{key.label} % [CI]", "n", "Δ", "flips % [CI]", "p (Holm)", "vs ref.", "bits/w",
                      "size", ladder.speed_unit, "model"):
            table.add_column(label)
        for v in ladder.variants:
            m = v.model
            table.add_row(rungs[v.name], "no run" if v.run is None else _pct(v.value) + _ci(v.ci),
                          f"{v.n:,}" if v.run else "", _delta(v.delta),
                          "" if v.is_reference or v.flip_rate is None else _pct(v.flip_rate) + _ci(v.flip_rate_ci),
                          "" if v.is_reference or v.mcnemar_p is None else f"{_p(v.mcnemar_p)} ({_p(v.mcnemar_p_holm)})",
                          verdict(v), "-" if m.bits_per_weight is None else f"{m.bits_per_weight:.2f}", _size(m.size),
                          "-" if v.items_per_s is None else f"{v.items_per_s:.2f}", Text(printable(m.name)), key=v.name)
        self.query_one(LadderChart).replot(ladder)
        dims = self.query_one("#ladder-dims", DataTable)
        dims.clear(columns=True)
        for label in ("rung", "dimension", f"{key.label} % [CI]", "n", "Δ", "flips", "p (Holm)", "change"):
            dims.add_column(label)
        for v in ladder.variants:
            for d in v.dimensions:
                change = "reference" if v.is_reference else (d.change or "n.s.") + (
                    " (first)" if d.dimension in v.first_changes else "")
                dims.add_row(rungs[v.name], d.dimension, _pct(d.value) + _ci(d.ci), f"{d.n:,}", _delta(d.delta),
                             "" if v.is_reference else f"{d.flips}/{d.shared}",
                             "" if v.is_reference or d.mcnemar_p is None else
                             f"{_p(d.mcnemar_p)} ({_p(d.mcnemar_p_holm)})", change)

    def failed(self, text: str) -> None:
        self.query_one("#ladder-status", Static).update(printable(text))
        self.query_one("#ladder-variants", DataTable).clear(columns=True)
        self.query_one("#ladder-dims", DataTable).clear(columns=True)
        self.query_one(LadderChart).replot(None)
