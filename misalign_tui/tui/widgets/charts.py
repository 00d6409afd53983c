"""One PlotextPlot subclass per chart; each has ``replot(data)`` that clears, draws and refreshes.

Data arrives from a worker message (ExploreData); nothing here queries the store.
"""

from __future__ import annotations

from textual_plotext import PlotextPlot

from misalign_tui.core.metrics.vocabulary import METRICS
from misalign_tui.core.views.explore import Cell, ExploreData


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _series(cells: list[Cell], groups: list[str], models: list[str]) -> list[list[float]]:
    by = {(c.group, c.series): c.value for c in cells}
    return [[100 * (by.get((g, m)) or 0.0) for g in groups] for m in models]


class _Chart(PlotextPlot):
    def _start(self, title: str) -> None:
        self.plt.clear_data()
        self.plt.clear_figure()
        self.plt.title(title)

    def _empty(self, title: str, why: str) -> None:
        self._start(title)
        self.plt.text(why, 0.5, 0.5, alignment="center")
        self.plt.xlim(0, 1)
        self.plt.ylim(0, 1)
        self.plt.xticks([])
        self.plt.yticks([])
        self.refresh()


class DimensionModelBars(_Chart):
    """Grouped bars: one group per dimension, one bar per model."""

    def replot(self, data: ExploreData) -> None:
        label = METRICS[data.query.metric].label
        groups = sorted({c.group for c in data.by_dimension})
        if not groups:
            self._empty(f"{label} by dimension", data.note or "no data")
            return
        self._start(f"{label} % by dimension × model")
        models = data.models
        values = _series(data.by_dimension, groups, models)
        if len(models) == 1:
            self.plt.bar(groups, values[0], label=_short(models[0]))
        else:
            self.plt.multiple_bar(groups, values, labels=[_short(m) for m in models])
        self.plt.ylim(0, 100)
        self.refresh()


class DomainRanking(_Chart):
    """Domains worst first (horizontal bars), with the interval where metrics gives one."""

    top = 12

    def replot(self, data: ExploreData) -> None:
        label = METRICS[data.query.metric].label
        cells = [c for c in data.by_domain if c.value is not None][: self.top]
        if not cells:
            self._empty(f"{label} by domain", data.note or "no data")
            return
        self._start(f"{label} % by domain, worst first")
        names = [_short(f"{c.group} ({_short(c.series, 8)})" if len(data.models) > 1 else c.group, 22)
                 for c in cells][::-1]
        values = [100 * c.value for c in cells][::-1]  # type: ignore[operator]
        self.plt.bar(names, values, orientation="horizontal", width=0.4)
        for y, c in enumerate(cells[::-1], start=1):  # the 95 % interval as a line through each bar
            if c.low is not None and c.high is not None:
                self.plt.plot([100 * c.low, 100 * c.high], [y, y], marker="─", color="white")
        self.plt.xlim(0, 100)
        self.refresh()


class TradeOffHeatmap(_Chart):
    """The pairwise trade-off table T[d1 → d2] (satisfies d1, fails d2) as a heat map."""

    def replot(self, data: ExploreData) -> None:
        if not data.trade_off_matrix:
            self._empty("Trade-offs T[d1→d2]", data.trade_off_note or data.note or "needs pairs on two dimensions")
            return
        self._start(f"T[row→col] % — {data.trade_off_model}")
        matrix = [[100 * (v or 0.0) for v in row] for row in data.trade_off_matrix]
        self.plt.matrix_plot(matrix)
        self.plt.xticks(list(range(1, len(data.trade_off_dims) + 1)), data.trade_off_dims)
        self.plt.yticks(list(range(1, len(data.trade_off_dims) + 1)), data.trade_off_dims[::-1])
        self.refresh()


class SemanticTypeBars(_Chart):
    """Bars per semantic type (object, attribute, relation), one per model."""

    def replot(self, data: ExploreData) -> None:
        label = METRICS[data.query.metric].label
        groups = [g for g in ("object", "attribute", "relation", "untyped") if g in {c.group for c in data.by_type}]
        if not groups:
            self._empty(f"{label} by semantic type", data.note or "no data")
            return
        self._start(f"{label} % by semantic type")
        values = _series(data.by_type, groups, data.models)
        if len(data.models) == 1:
            self.plt.bar(groups, values[0], label=_short(data.models[0]))
        else:
            self.plt.multiple_bar(groups, values, labels=[_short(m) for m in data.models])
        self.plt.ylim(0, 100)
        self.refresh()
