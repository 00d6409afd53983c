"""The centre: trade-offs by dimension, domain, semantic type and model; filters, metric switch, charts.

Every filter change starts an exclusive worker (the previous one is cancelled); the UI thread only redraws.
"""

from __future__ import annotations

import dataclasses
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Grid, VerticalScroll
from textual.timer import Timer
from textual.widgets import Header, Select, Static, TabbedContent, TabPane

from misalign_tui.core.metrics.profile import BOOTSTRAP_RESAMPLES
from misalign_tui.core.metrics.vocabulary import EXPLORER_METRICS, METRICS
from misalign_tui.core.sessions import GROUPINGS, SessionState
from misalign_tui.core.store import Store
from misalign_tui.core.views.explore import (
    TAB_PARTS,
    Cell,
    ExploreData,
    ExploreOptions,
    ExploreQuery,
    needs_bootstrap,
    read_explore,
    read_options,
)
from misalign_tui.core.views.figures import count, interval, pct
from misalign_tui.tui.messages import ExploreLoaded, OptionsLoaded
from misalign_tui.tui.plain import assemble, line, lines
from misalign_tui.tui.screens.base import AppScreen
from misalign_tui.tui.widgets.charts import BarRow, IntervalBars, TradeOffHeatmap, bar_rows
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col

TABLE_ROWS = 120
GROUP_LABELS = {"dimension": "by dimension", "domain": "by domain", "semantic_type": "by type",
                "language": "by language", "model": "by model"}
TAB_TABLES = {"dims": "table-grouped", "domains": "table-domains", "tradeoffs": "table-tradeoffs",
              "types": "table-types", "reliability": "table-reliability"}
TOP_DOMAINS = 12  # the domain chart shows the worst ones; the table beside it lists them all


class ExploreScreen(AppScreen):
    HOME = "#table-grouped"
    INTERVAL_DELAY_S = 0.4
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
        self._interval_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Grid(id="explore-filters"):
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
            for tab, title, chart in (("dims", "1 Dimensions", IntervalBars(id="chart-dims")),
                                      ("domains", "2 Domains", IntervalBars(id="chart-domains")),
                                      ("tradeoffs", "3 Trade-offs", TradeOffHeatmap(id="chart-tradeoffs")),
                                      ("types", "4 Types", IntervalBars(id="chart-types"))):
                with TabPane(title, id=tab), Container(classes="chart-row"):
                    with VerticalScroll(classes="chart-box"):
                        yield chart
                    yield FittedTable(id=TAB_TABLES[tab])
            with TabPane("5 Reliability", id="reliability"):
                yield Static(id="reliability-verdicts", classes="verdicts")
                with Container(classes="chart-row"):
                    with VerticalScroll(classes="chart-box"):
                        yield IntervalBars(id="chart-reliability")
                    yield FittedTable(id=TAB_TABLES["reliability"])
        yield self.footer()

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

    def _read(self, query: ExploreQuery, parts: frozenset[str], bootstrap: int = 0) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            data = read_explore(store, query, parts, bootstrap)
        self.post_message(ExploreLoaded(data))

    # two groups: opening another tab must not cancel the query the visible tab waits for
    @work(thread=True, exclusive=True, group="explore", exit_on_error=False)
    def _load(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        self._read(query, parts)

    @work(thread=True, exclusive=True, group="explore-more", exit_on_error=False)
    def _load_more(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        self._read(query, parts)

    # AS intervals come from a bootstrap (seconds on a large store): asked for once the values are shown and the
    # filters have stayed put for a moment, so browsing stays fast; the table says "…" until they arrive
    @work(thread=True, exclusive=True, group="explore-intervals", exit_on_error=False)
    def _load_intervals(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        self._read(query, parts, BOOTSTRAP_RESAMPLES)

    def _want_intervals(self, tab: str) -> None:
        data = self.data
        if data is None or not needs_bootstrap(data.query.metric) or not data.models:
            return
        parts = self._parts_for(tab, data.query) - data.with_intervals - {"tradeoffs"}
        if not parts or not parts <= data.parts:
            return
        if self._interval_timer is not None:
            self._interval_timer.stop()
        query = data.query
        self._interval_timer = self.set_timer(self.INTERVAL_DELAY_S, lambda: self._start_intervals(query, parts))

    def _start_intervals(self, query: ExploreQuery, parts: frozenset[str]) -> None:
        self._interval_timer = None
        if query == self.query_state:
            self._load_intervals(query, parts)

    @property
    def intervals_pending(self) -> bool:
        """An interval pass is waiting to start (tests and snapshots wait for it, as for workers)."""
        return self._interval_timer is not None

    # -- messages --------------------------------------------------------------------------------------

    def on_options_loaded(self, message: OptionsLoaded) -> None:
        opts = message.options
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
                sel.set_options([(line(v), v) for v in values])
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
        data = message.data
        if data.query != self.query_state:
            return  # a stale answer; a newer worker is on its way
        if self.data is not None and self.data.query == data.query:
            self.data.merge(data)  # another tab's parts for the same query
            data = self.data
            self._painted = {t for t in self._painted if not self._parts_for(t, data.query) & message.data.parts}
        else:
            self.data = data
            self._painted = set()
        label = METRICS[data.query.metric].label
        models = ", ".join(data.models) or "no models"
        self.query_one("#explore-status", Static).update(
            assemble((f"{label} {GROUP_LABELS[data.query.grouping]}", "bold"), " · ", models,
                     *((" · ", (data.note, "dim")) if data.note else ())))
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
        metric = METRICS[data.query.metric]
        one = len(data.models) <= 1
        empty = data.note or "no data"
        if tab == "dims":
            self.query_one("#chart-dims", IntervalBars).replot(
                f"{metric.label} % by dimension", bar_rows(data.by_dimension, one), data.models, metric, empty)
            self._fill_table("#table-grouped", data.grouped(), data.query.grouping, data)
        elif tab == "domains":
            worst = [c for c in data.by_domain if c.value is not None][:TOP_DOMAINS]
            self.query_one("#chart-domains", IntervalBars).replot(
                f"{metric.label} % by domain, worst {len(worst)} first", bar_rows(worst, one), data.models, metric,
                empty)
            self._fill_table("#table-domains", data.by_domain, "domain", data)
        elif tab == "tradeoffs":
            self.query_one("#chart-tradeoffs", TradeOffHeatmap).replot(
                data.trade_off_dims, data.trade_off_matrix, data.trade_off_model, data.trade_off_note or data.note)
            self._fill_tradeoffs(data)
        elif tab == "types":
            self.query_one("#chart-types", IntervalBars).replot(
                f"{metric.label} % by semantic type", bar_rows(data.by_type, one), data.models, metric, empty)
            self._fill_table("#table-types", data.by_type, "semantic_type", data)
        elif tab == "reliability":
            self._fill_reliability(data)
        self._want_intervals(tab)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._paint_tab(event.pane.id)
            focused = self.focused
            if focused is not None and not self.in_field() and event.pane not in focused.ancestors:
                self.set_focus(self.home_widget())  # never leave focus in a hidden tab: it would switch back

    def home_widget(self) -> FittedTable:
        """The visible tab's table (Escape from a filter lands there)."""
        return self.query_one(f"#{TAB_TABLES[self.query_one(TabbedContent).active or 'dims']}", FittedTable)

    def _fill_table(self, selector: str, cells: list[Cell], group_name: str, data: ExploreData) -> None:
        """Group, model, value, interval, n; the model column goes where it would repeat the group (by model)
        or say the same thing on every row (one model: the status line names it)."""
        with_model = group_name != "model" and len(data.models) > 1
        pending = needs_bootstrap(data.query.metric) and group_name not in data.with_intervals
        columns = (name_col(group_name.replace("_", " ")), *((name_col("model"),) if with_model else ()),
                   figure_col(METRICS[data.query.metric].label), figure_col("95% CI"), figure_col("n"))
        rows = [(c.group, *((c.series,) if with_model else ()), pct(c.value),
                 "…" if pending and c.value is not None else
                 interval(None if c.low is None or c.high is None else (c.low, c.high)), count(c.n))
                for c in cells[:TABLE_ROWS]]  # the worst rows first; the filters narrow the rest
        self.query_one(selector, FittedTable).show(columns, rows)

    def _fill_reliability(self, data: ExploreData) -> None:
        """Each judge run's verdict, then its reliability: the share of misaligned responses per bin of
        P(misaligned) with its Wilson interval (chart and table); a calibrated judge's share equals the bin's
        mean P (the table's column)."""
        verdicts = [[(m, "bold"), f": {v}"] for m, v in data.verdicts.items()] or [["no judge run with results yet"]]
        self.query_one("#reliability-verdicts", Static).update(lines(*verdicts))
        several = len(data.reliability) > 1
        bars = [BarRow(f"P {b.lo:.1f}–{b.hi:.1f}", model if several else "", b.observed,
                       *(b.observed_ci or (None, None)), b.n)
                for model, bins in data.reliability.items() for b in bins if b.n]  # empty bins say nothing
        bars.sort(key=lambda r: r.label)
        self.query_one("#chart-reliability", IntervalBars).replot(
            "% misaligned by P(misaligned) bin (calibrated: equal to the bin's mean P)", bars,
            list(data.reliability), METRICS["ece"], "no judge run with results")
        self.query_one("#table-reliability", FittedTable).show(
            (*((name_col("model"),) if several else ()), figure_col("P bin"), figure_col("mean P %"),
             figure_col("misal. %"), figure_col("95% CI"), figure_col("n")),
            [(*((model,) if several else ()), f"{b.lo:.1f}–{b.hi:.1f}", pct(b.mean_p), pct(b.observed),
              interval(b.observed_ci), count(b.n))
             for model, bins in data.reliability.items() for b in bins if b.n])

    def _fill_tradeoffs(self, data: ExploreData) -> None:
        table = self.query_one("#table-tradeoffs", FittedTable)
        pairs = [c for row in data.trade_off_matrix for c in row if c is not None]
        if not pairs:
            table.show((figure_col("trade-offs", right=False),),
                       [(data.trade_off_note or "n/a: no prompts with pairs on two dimensions",)])
            return
        table.show((name_col("satisfies → fails"), figure_col("T %"), figure_col("95% CI"), figure_col("n")),
                   [(c.group, pct(c.value), interval(None if c.low is None or c.high is None else (c.low, c.high)),
                     count(c.n)) for c in pairs])

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
        if not self.in_field():
            self.set_focus(self.query_one(f"#{TAB_TABLES[tab]}", FittedTable))

    def action_focus_filters(self) -> None:
        self.query_one("#f-metric", Select).focus()

    def action_save_session(self) -> None:
        self.app.action_save_session()  # type: ignore[attr-defined]
