"""What the Explore screen shows (and saved sessions reopen): one metric by dimension, domain, semantic type and
model, and the trade-off table; headless, read in workers.

The figures come from ``misalign_tui.core.metrics`` and the metric vocabulary; the runs from the one rule of
``core.runs.catalog.runs_to_show``. This module only asks for them and shapes the answer for tables and charts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from misalign_tui.core import metrics
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.metrics.judge_quality import ReliabilityBin, judge_quality
from misalign_tui.core.metrics.vocabulary import METRICS, group_order, methods_for
from misalign_tui.core.runs.catalog import RunSelection, runs_to_show
from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

PART_FIELDS = {"dimension": "by_dimension", "domain": "by_domain", "semantic_type": "by_type",
               "language": "by_language", "model": "by_model", "reliability": "reliability"}
ALL_PARTS = frozenset({*PART_FIELDS, "tradeoffs"})
TAB_PARTS = {"dims": "dimension", "domains": "domain", "tradeoffs": "tradeoffs", "types": "semantic_type",
             "reliability": "reliability"}
EXPLORE_BOOTSTRAP = 300  # resamples for judge-quality intervals here (the report uses 1000)


@dataclass(frozen=True)
class ExploreQuery:
    benchmark_id: int | None = None
    models: tuple[str, ...] = ()  # empty: every model with a run that has results
    dimension: str | None = None
    domain: str | None = None
    semantic_type: str | None = None
    metric: str = "alignment_score"
    grouping: str = "dimension"

    @property
    def filters(self) -> Filters:
        return Filters.parse({k: v for k, v in (("dimension", self.dimension), ("domain", self.domain),
                                                ("semantic_type", self.semantic_type)) if v})


@dataclass(frozen=True)
class Cell:
    """One figure: ``group`` (a dimension, domain, type or model) × ``series`` (a model)."""

    group: str
    series: str
    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


@dataclass
class ExploreData:
    query: ExploreQuery
    models: list[str] = field(default_factory=list)
    by_dimension: list[Cell] = field(default_factory=list)
    by_domain: list[Cell] = field(default_factory=list)  # worst first
    by_type: list[Cell] = field(default_factory=list)
    by_language: list[Cell] = field(default_factory=list)  # English first, then the parallel languages
    by_model: list[Cell] = field(default_factory=list)
    trade_off_dims: list[str] = field(default_factory=list)
    # T[row → col] for the first model: each pair's share with its interval and n; None on the diagonal
    trade_off_matrix: list[list[Cell | None]] = field(default_factory=list)
    trade_off_model: str | None = None
    trade_off_note: str = ""
    # judge runs: each model's reliability bins (metrics/judge_quality.py) and its plain-language verdict
    reliability: dict[str, tuple[ReliabilityBin, ...]] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0
    parts: frozenset[str] = frozenset()  # which of dimension/domain/semantic_type/model/tradeoffs are filled
    bootstrap: int = 0  # resamples behind the AS intervals of this answer's parts (0: none)
    with_intervals: frozenset[str] = frozenset()  # the parts whose AS cells carry their bootstrap interval

    def merge(self, other: ExploreData) -> None:
        """Add the parts another worker computed for the same query; a part computed with AS intervals replaces
        the same part without them."""
        for part in other.parts:
            if part in self.parts and not (part in other.with_intervals and part not in self.with_intervals):
                continue
            if part in other.with_intervals:
                self.with_intervals = self.with_intervals | {part}
            if part == "tradeoffs":
                self.trade_off_dims, self.trade_off_matrix = other.trade_off_dims, other.trade_off_matrix
                self.trade_off_model, self.trade_off_note = other.trade_off_model, other.trade_off_note
            elif part == "reliability":
                self.reliability, self.verdicts = other.reliability, other.verdicts
            else:
                setattr(self, PART_FIELDS[part], getattr(other, PART_FIELDS[part]))
        self.parts = self.parts | other.parts
        self.note = self.note or other.note

    def grouped(self) -> list[Cell]:
        return {"dimension": self.by_dimension, "domain": self.by_domain, "semantic_type": self.by_type,
                "language": self.by_language, "model": self.by_model}[self.query.grouping]


@dataclass(frozen=True)
class ExploreOptions:
    """The choices each filter offers."""

    benchmarks: list[tuple[int, str]]
    models: list[str]
    dimensions: list[str]
    domains: list[str]
    semantic_types: list[str]
    methods: list[str] = field(default_factory=list)  # methods with results, to pick a metric that has data


def read_options(store: Store) -> ExploreOptions:
    c = store.conn
    return ExploreOptions(
        benchmarks=[(r[0], f"{r[1]} v{r[2]}") for r in c.execute("SELECT id, name, version FROM benchmarks")],
        models=[r[0] for r in c.execute(
            "SELECT DISTINCT m.name FROM runs r JOIN models m ON m.id = r.model_id ORDER BY m.name")],
        dimensions=list(DIMENSIONS),
        domains=[r[0] for r in c.execute("SELECT name FROM domains ORDER BY dimension, name")],
        semantic_types=list(SEMANTIC_TYPES),
        methods=[r[0] for r in c.execute("SELECT DISTINCT method FROM runs WHERE items_done > 0 ORDER BY method")],
    )


def explore_runs(store: Store, query: ExploreQuery) -> RunSelection:
    """The run to show per model for the query's metric (core.runs.catalog.runs_to_show)."""
    return runs_to_show(store, models=query.models or None, methods=methods_for(query.metric),
                        benchmark_id=query.benchmark_id)


def needs_bootstrap(metric_key: str) -> bool:
    """AS has no closed-form interval: it comes from a bootstrap over prompts (slower, so the app asks for it in a
    second pass after showing the values)."""
    return metric_key == "alignment_score"


def read_explore(store: Store, query: ExploreQuery, parts: frozenset[str] = ALL_PARTS,
                 bootstrap: int = 0) -> ExploreData:
    """``bootstrap``: resamples for the AS intervals (0 leaves them out; the report's count and seed give the
    report's intervals)."""
    started = time.perf_counter()
    selection = explore_runs(store, query)
    runs = selection.by_model()
    data = ExploreData(query, models=list(runs), parts=frozenset(parts), bootstrap=bootstrap,
                       with_intervals=frozenset(parts) if bootstrap else frozenset())
    if not runs:
        data.note = ("No results for this metric yet — x switches the metric (preference runs show Pref. acc.), "
                     "r starts a run.")
    else:
        _fill(store, runs, query, data, frozenset(parts), bootstrap)
        data.note = "; ".join(n for n in (data.note, selection.skipped_note()) if n)
    data.seconds = time.perf_counter() - started
    return data


def run_languages(store: Store, run_id: int) -> list[str]:
    """The languages of the prompts a run scored, English first."""
    tags = [r[0] for r in store.conn.execute(
        "SELECT DISTINCT p.language FROM runs r JOIN prompts p ON p.benchmark_id = r.benchmark_id WHERE r.id = ?",
        (run_id,))]
    return [t for t in group_order("language", tags) if t is not None]


def _cell(group: str, model: str, row: metrics.MetricRow, metric_key: str) -> Cell:
    m = METRICS[metric_key]
    interval = m.row_ci(row)
    return Cell(group, model, m.row_value(row), interval[0] if interval else None,
                interval[1] if interval else None, m.row_n(row))


def _rate_cell(group: str, model: str, rate: float | None, ci: tuple[float, float] | None, n: int) -> Cell:
    return Cell(group, model, rate, ci[0] if ci else None, ci[1] if ci else None, n)


def _fill(store: Store, runs: dict[str, int], query: ExploreQuery, data: ExploreData, parts: frozenset[str],
          bootstrap: int = 0) -> None:
    """Compute the ``parts`` asked for (dimension, domain, semantic_type, model, tradeoffs) into ``data``.

    Each part is a few queries on the rollups per model; the screen asks only for what its visible tab shows
    and fetches the rest when another tab opens.
    """
    metric = query.metric
    filters = query.filters
    if metric == "trade_off_rate":
        reports = {m: metrics.trade_offs(store, rid, filters) for m, rid in runs.items()}
        for model, rep in reports.items():
            if "model" in parts:
                data.by_model.append(_rate_cell(model, model, rep.rate, rep.ci, rep.n_prompts))
            if "dimension" in parts:  # the dimension view: share of prompts failing d (1 − s_d)
                for d, cell in rep.satisfaction.items():
                    data.by_dimension.append(_rate_cell(d, model, 1 - cell.rate if cell.rate is not None else None,
                                                        cell.ci and (1 - cell.ci[1], 1 - cell.ci[0]), cell.n))
            if "semantic_type" in parts:
                for t in SEMANTIC_TYPES:
                    if query.semantic_type and query.semantic_type != t:
                        continue
                    rep_t = metrics.trade_offs(store, runs[model], replace(filters, semantic_type=(t,)))
                    data.by_type.append(_rate_cell(t, model, rep_t.rate, rep_t.ci, rep_t.n_prompts))
            if "domain" in parts and query.domain:
                data.by_domain.append(_rate_cell(query.domain, model, rep.rate, rep.ci, rep.n_prompts))
            if "language" in parts:
                for lang in run_languages(store, runs[model]):
                    rep_l = metrics.trade_offs(store, runs[model], replace(filters, language=(lang,)))
                    data.by_language.append(_rate_cell(lang, model, rep_l.rate, rep_l.ci, rep_l.n_prompts))
        data.note = "by dimension: share of prompts failing it (1 − s_d); by domain: pick one in the filter"
    else:
        def rows(run_id: int, grouping: str | None) -> list:
            if METRICS[metric].source == "judge_quality":
                return judge_quality(store, run_id, group_by=grouping, filters=filters, bootstrap=EXPLORE_BOOTSTRAP,
                                     detail=False)
            return metrics.profile(store, run_id, group_by=grouping, filters=filters, bootstrap=bootstrap)

        for model, run_id in runs.items():
            for grouping, target in (("dimension", data.by_dimension), ("domain", data.by_domain),
                                     ("semantic_type", data.by_type), ("language", data.by_language)):
                if grouping in parts:
                    for row in rows(run_id, grouping):
                        target.append(_cell(row.group or "-", model, row, metric))
            if "model" in parts:
                for row in rows(run_id, None):
                    data.by_model.append(_cell(model, model, row, metric))
    if "reliability" in parts:  # every shown model's judge run, whatever the metric
        judge_runs = runs_to_show(store, models=query.models or None, methods=("judge",),
                                  benchmark_id=query.benchmark_id).by_model()
        for model, run_id in judge_runs.items():
            quality = judge_quality(store, run_id, filters=filters, bootstrap=EXPLORE_BOOTSTRAP, detail=False)
            if quality:
                data.reliability[model] = quality[0].reliability
                data.verdicts[model] = quality[0].verdict
    lower = METRICS[metric].lower_is_better
    data.by_domain.sort(key=lambda c: (c.value is None, -(c.value or 0) if lower else (c.value or 0)))
    first = next(iter(runs), None)
    if "tradeoffs" in parts and first is not None:
        rep = metrics.trade_offs(store, runs[first], filters)
        dims = [d for d in DIMENSIONS if any(d in pair for pair, c in rep.pairwise.items() if c.n)]
        if dims:
            data.trade_off_dims = dims
            data.trade_off_model = first
            data.trade_off_matrix = [[None if a == b else _rate_cell(f"{a} → {b}", first, rep.pairwise[(a, b)].rate,
                                                                     rep.pairwise[(a, b)].ci, rep.pairwise[(a, b)].n)
                                      for b in dims] for a in dims]
        if rep.rate is None:
            data.trade_off_note = f"trade-off rate n/a: {rep.reason}"
