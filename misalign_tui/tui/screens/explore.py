"""The centre: trade-offs by dimension, domain, semantic type and model; filters, metric switch, charts.

Every filter change starts an exclusive worker (the previous one is cancelled); the UI thread only redraws.
"""

from __future__ import annotations

import dataclasses
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Select, Static, TabbedContent, TabPane

from misalign_tui.core.metrics.vocabulary import EXPLORER_METRICS, METRICS
from misalign_tui.core.sessions import GROUPINGS, SessionState
from misalign_tui.core.store import Store
from misalign_tui.core.views.explore import (
    TAB_PARTS,
    ExploreData,
    ExploreOptions,
    ExploreQuery,
    read_explore,
    read_options,
)
from misalign_tui.tui.messages import ExploreLoaded
from misalign_tui.tui.widgets.charts import (
    DimensionModelBars,
    DomainRanking,
    SemanticTypeBars,
    TradeOffHeatmap,
)
from misalign_tui.tui.widgets.reliability import ReliabilityChart

TABLE_ROWS = 120
GROUP_LABELS = {"dimension": "by dimension", "domain": "by domain", "semantic_type": "by type", "model": "by model"}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:5.1f}"


class OptionsLoaded(Message):
    """The filter choices (benchmarks, models, domains) for the Select widgets."""

    def __init__(self, options: ExploreOptions) -> None:
        super().__init__()
        self.data = options


class ExploreScreen(Screen[None]):
    BINDINGS = [
        Binding("x", "next_metric", "Metric"),
        Binding("G", "next_grouping", "Group"),
        Binding("1", "tab('dims')", "Dims", show=False),
        Binding("2", "tab('domains')", "Domains", show=False),
        Binding("3", "tab('tradeoffs')", "Trade-offs", show=False),
        Binding("4", "tab('types')", "Types", show=False),
        Binding("5", "tab('reliability')", "Reliability", show=False),
        Binding("f", "focus_filters", "Filters"),
        Binding("s", "save_session", "Save"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_state = ExploreQuery()
        self.data: ExploreData | None = None
        self._options: ExploreOptions | None = None
        self._applying = False
        self.loads = 0  # repaints with new data; the UI benchmark waits on it
        self.painted_at = 0.0
        self._painted: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="explore-filters"):
            yield Select([(METRICS[m].label, m) for m in EXPLORER_METRICS], value="alignment_score", allow_blank=False,
                         id="f-metric", prompt="metric", compact=True)
            yield Select([(GROUP_LABELS[g], g) for g in GROUPINGS], value="dimension", allow_blank=False,
                         id="f-grouping", compact=True)
            yield Select([], prompt="any model", id="f-model", compact=True)
            yield Select([], prompt="any dimension", id="f-dimension", compact=True)
            yield Select([], prompt="any type", id="f-type", compact=True)
            yield Select([], prompt="any domain", id="f-domain", compact=True)
        yield Static(id="explore-status")
        with TabbedContent(id="explore-tabs"):
            with TabPane("1 Dimensions", id="dims"), Horizontal(classes="chart-row"):
                yield DimensionModelBars(id="chart-dims")
                yield DataTable(id="table-grouped", cursor_type="row", zebra_stripes=True)
            with TabPane("2 Domains", id="domains"), Horizontal(classes="chart-row"):
                yield DomainRanking(id="chart-domains")
                yield DataTable(id="table-domains", cursor_type="row", zebra_stripes=True)
            with TabPane("3 Trade-offs", id="tradeoffs"), Horizontal(classes="chart-row"):
                yield TradeOffHeatmap(id="chart-tradeoffs")
                yield DataTable(id="table-tradeoffs", cursor_type="row", zebra_stripes=True)
            with TabPane("4 Types", id="types"), Horizontal(classes="chart-row"):
                yield SemanticTypeBars(id="chart-types")
                yield DataTable(id="table-types", cursor_type="row", zebra_stripes=True)
            with TabPane("5 Reliability", id="reliability"):
                yield Static(id="reliability-verdicts", classes="verdicts")
                with Horizontal(classes="chart-row"):
                    yield ReliabilityChart(id="chart-reliability")
                    yield DataTable(id="table-reliability", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_screen_resume(self) -> None:
        self.load_options()
        self.action_reload()

    # -- workers ---------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="explore-options", exit_on_error=False)
    def load_options(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            self.post_message(OptionsLoaded(read_options(store)))

    def _parts_for(self, tab: str, query: ExploreQuery) -> frozenset[str]:
        parts = {TAB_PARTS.get(tab, "dimension")}
        if tab == "dims":
            parts.add(query.grouping)  # the table beside the chart follows the grouping
        return frozenset(parts)

    def load_data(self, query: ExploreQuery) -> None:
        """A new query: compute what the visible tab shows; other tabs are computed when opened."""
        self._load(query, self._parts_for(self.query_one(TabbedContent).active or "dims", query))

    def _read(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            data = read_explore(store, query, parts)
        self.post_message(ExploreLoaded(data))

    # two groups: opening another tab must not cancel the query the visible tab waits for
    @work(thread=True, exclusive=True, group="explore", exit_on_error=False)
    def _load(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        self._read(query, parts)

    @work(thread=True, exclusive=True, group="explore-more", exit_on_error=False)
    def _load_more(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        self._read(query, parts)

    # -- messages --------------------------------------------------------------------------------------

    def on_options_loaded(self, message: OptionsLoaded) -> None:
        opts = message.data
        if opts == self._options:
            return
        self._options = opts
        self._applying = True
        try:
            q = self.query_state
            for sel_id, values, current in (("#f-model", opts.models, q.models[0] if q.models else None),
                                            ("#f-dimension", opts.dimensions, q.dimension),
                                            ("#f-type", opts.semantic_types, q.semantic_type),
                                            ("#f-domain", opts.domains, q.domain)):
                sel = self.query_one(sel_id, Select)
                sel.set_options([(v, v) for v in values])
                if current in values:
                    sel.value = current
        finally:
            self.call_after_refresh(self._done_applying)
        if opts.methods and "judge" not in opts.methods and METRICS[self.query_state.metric].methods == ("judge",):
            # only preference (base-model) results so far: show the metric that has data
            self.query_one("#f-metric", Select).value = "preference_accuracy"
            # the Changed event arrives while the options are still being applied and is ignored: query here
            self.apply_query(dataclasses.replace(self.query_state, metric="preference_accuracy"))

    def _done_applying(self) -> None:
        self._applying = False

    def on_explore_loaded(self, message: ExploreLoaded) -> None:
        data: ExploreData = message.data  # type: ignore[assignment]
        if data.query != self.query_state:
            return  # a stale answer; a newer worker is on its way
        if self.data is not None and self.data.query == data.query:
            self.data.merge(data)  # another tab's parts for the same query
            data = self.data
            self._painted = {t for t in self._painted if TAB_PARTS[t] not in message.data.parts}  # type: ignore[attr-defined]
        else:
            self.data = data
            self._painted = set()
        label = METRICS[data.query.metric].label
        models = ", ".join(data.models) or "no models"
        status = f"{label} {GROUP_LABELS[data.query.grouping]} · {models}"
        if data.note:
            status += f" · {data.note}"
        self.query_one("#explore-status", Static).update(status)
        self._paint_tab(self.query_one(TabbedContent).active or "dims")
        self.call_after_refresh(self._painted_now)

    def _painted_now(self) -> None:
        """After the frame that shows the new data: what the UI benchmark times (loads, painted_at)."""
        self.painted_at = time.perf_counter()
        self.loads += 1

    def _paint_tab(self, tab: str) -> None:
        """Draw the chart and table of one tab; the others are drawn when shown (only one is visible)."""
        data = self.data
        if data is None or tab in self._painted:
            return
        missing = self._parts_for(tab, data.query) - data.parts
        if missing:
            self._load_more(data.query, missing)
            return
        self._painted.add(tab)
        if tab == "dims":
            self.query_one("#chart-dims", DimensionModelBars).replot(data)
            self._fill_table("#table-grouped", data.grouped(), data.query.grouping)
        elif tab == "domains":
            self.query_one("#chart-domains", DomainRanking).replot(data)
            self._fill_table("#table-domains", data.by_domain, "domain")
        elif tab == "tradeoffs":
            self.query_one("#chart-tradeoffs", TradeOffHeatmap).replot(data)
            self._fill_tradeoffs(data)
        elif tab == "types":
            self.query_one("#chart-types", SemanticTypeBars).replot(data)
            self._fill_table("#table-types", data.by_type, "semantic_type")
        elif tab == "reliability":
            self.query_one("#chart-reliability", ReliabilityChart).replot(data)
            self._fill_reliability(data)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._paint_tab(event.pane.id)

    def _fill_table(self, selector: str, cells: list, group_name: str) -> None:
        table = self.query_one(selector, DataTable)
        columns = (group_name.replace("_", " "), "model", METRICS[self.query_state.metric].label, "95% CI", "n")
        if tuple(str(c.label) for c in table.columns.values()) != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
        else:
            table.clear()
        for c in cells[:TABLE_ROWS]:  # the worst rows first; the filters narrow the rest
            ci = "-" if c.low is None else f"{_pct(c.low)}–{_pct(c.high)}"
            group = c.group if len(c.group) <= 24 else c.group[:23] + "…"
            table.add_row(group, c.series, _pct(c.value), ci, f"{c.n:,}")

    def _fill_reliability(self, data: ExploreData) -> None:
        table = self.query_one("#table-reliability", DataTable)
        table.clear(columns=True)
        table.add_columns("model", "P bin", "mean P", "% misal.", "95% CI", "n")
        verdicts = "\n".join(f"{m}: {v}" for m, v in data.verdicts.items()) or "no judge run with results yet"
        self.query_one("#reliability-verdicts", Static).update(Text(verdicts))  # model names are not markup
        for model, bins in data.reliability.items():
            for b in (b for b in bins if b.n):  # empty bins say nothing
                ci = "-" if b.observed_ci is None else f"{_pct(b.observed_ci[0])}–{_pct(b.observed_ci[1])}"
                table.add_row(model, f"{100 * b.lo:.0f}–{100 * b.hi:.0f}", _pct(b.mean_p), _pct(b.observed), ci,
                              f"{b.n:,}")

    def _fill_tradeoffs(self, data: ExploreData) -> None:
        table = self.query_one("#table-tradeoffs", DataTable)
        table.clear(columns=True)
        if not data.trade_off_matrix:
            table.add_column("trade-offs")
            table.add_row(data.trade_off_note or "n/a: no prompts with pairs on two dimensions")
            return
        table.add_columns("T[row→col]", *data.trade_off_dims)
        for d, row in zip(data.trade_off_dims, data.trade_off_matrix, strict=True):
            table.add_row(d, *[_pct(v) for v in row])

    # -- filters ---------------------------------------------------------------------------------------

    @on(Select.Changed)
    def _filter_changed(self, event: Select.Changed) -> None:
        if self._applying:
            return
        self.apply_query(self._query_from_widgets())

    def _query_from_widgets(self) -> ExploreQuery:
        def val(sel_id: str) -> str | None:
            v = self.query_one(sel_id, Select).value
            return None if v is Select.NULL or v is None else str(v)

        model = val("#f-model")
        return ExploreQuery(
            benchmark_id=self.query_state.benchmark_id, models=(model,) if model else (),
            dimension=val("#f-dimension"), domain=val("#f-domain"), semantic_type=val("#f-type"),
            metric=val("#f-metric") or "alignment_score", grouping=val("#f-grouping") or "dimension")

    def apply_query(self, query: ExploreQuery) -> None:
        """Show ``query``: the widgets follow it and a worker computes it."""
        self.query_state = query
        self.load_data(query)

    def apply_session(self, state: SessionState) -> None:
        self._applying = True
        try:
            self.query_one("#f-metric", Select).value = state.metric
            self.query_one("#f-grouping", Select).value = state.grouping
            for key, sel_id in (("dimension", "#f-dimension"), ("semantic_type", "#f-type"), ("domain", "#f-domain")):
                sel = self.query_one(sel_id, Select)
                v = state.filters.get(key)
                if v is None:
                    sel.clear()
                else:
                    try:
                        sel.value = v
                    except Exception:  # noqa: BLE001 - an option not offered (yet): the query still filters
                        pass
        finally:
            self.call_after_refresh(self._done_applying)
        self.apply_query(ExploreQuery(
            models=tuple(state.models), dimension=state.filters.get("dimension"),
            domain=state.filters.get("domain"), semantic_type=state.filters.get("semantic_type"),
            metric=state.metric, grouping=state.grouping))

    def session_state(self) -> SessionState:
        q = self.query_state
        filters = {k: v for k, v in (("dimension", q.dimension), ("domain", q.domain),
                                     ("semantic_type", q.semantic_type)) if v}
        return SessionState(models=list(q.models or (self.data.models if self.data else [])), benchmark=None,
                            filters=filters, metric=q.metric, grouping=q.grouping)

    # -- actions ---------------------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.load_data(self.query_state)

    def action_next_metric(self) -> None:
        sel = self.query_one("#f-metric", Select)
        sel.value = EXPLORER_METRICS[(EXPLORER_METRICS.index(str(sel.value)) + 1) % len(EXPLORER_METRICS)]

    def action_next_grouping(self) -> None:
        sel = self.query_one("#f-grouping", Select)
        sel.value = GROUPINGS[(GROUPINGS.index(str(sel.value)) + 1) % len(GROUPINGS)]

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_focus_filters(self) -> None:
        self.query_one("#f-metric", Select).focus()

    def action_save_session(self) -> None:
        self.app.action_save_session()  # type: ignore[attr-defined]
