"""What the Explore, Compare and Item screens show (and `sessions report` reuses); headless, read in workers.

The figures come from ``misalign_tui.core.metrics`` (one place for each measure). This module only picks the
runs a view needs, asks metrics for them and shapes the answer for tables and charts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

METRIC_LABELS = {
    "alignment_score": "AS",
    "coverage": "Coverage",
    "ffr": "FFR",
    "preference_accuracy": "Pref. acc.",
    "trade_off_rate": "Trade-off rate",
}
LOWER_IS_BETTER = {"ffr", "trade_off_rate"}
PART_FIELDS = {"dimension": "by_dimension", "domain": "by_domain", "semantic_type": "by_type", "model": "by_model"}
ALL_PARTS = frozenset({*PART_FIELDS, "tradeoffs"})
TAB_PARTS = {"dims": "dimension", "domains": "domain", "tradeoffs": "tradeoffs", "types": "semantic_type"}


@dataclass(frozen=True)
class ExploreQuery:
    benchmark_id: int | None = None
    models: tuple[str, ...] = ()  # empty: every model with a finished or running run
    dimension: str | None = None
    domain: str | None = None
    semantic_type: str | None = None
    metric: str = "alignment_score"
    grouping: str = "dimension"


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
    by_model: list[Cell] = field(default_factory=list)
    trade_off_dims: list[str] = field(default_factory=list)
    trade_off_matrix: list[list[float | None]] = field(default_factory=list)  # T[row → col], first model
    trade_off_model: str | None = None
    trade_off_note: str = ""
    note: str = ""
    seconds: float = 0.0
    parts: frozenset[str] = frozenset()  # which of dimension/domain/semantic_type/model/tradeoffs are filled

    def merge(self, other: ExploreData) -> None:
        """Add the parts another worker computed for the same query."""
        for part in other.parts - self.parts:
            if part == "tradeoffs":
                self.trade_off_dims, self.trade_off_matrix = other.trade_off_dims, other.trade_off_matrix
                self.trade_off_model, self.trade_off_note = other.trade_off_model, other.trade_off_note
            else:
                setattr(self, PART_FIELDS[part], getattr(other, PART_FIELDS[part]))
        self.parts = self.parts | other.parts
        self.note = self.note or other.note

    def grouped(self) -> list[Cell]:
        return {"dimension": self.by_dimension, "domain": self.by_domain, "semantic_type": self.by_type,
                "model": self.by_model}[self.query.grouping]


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


def latest_runs(store: Store, query: ExploreQuery) -> dict[str, int]:
    """model name → id of its latest run on the benchmark (for the metric's method)."""
    methods = {"preference_accuracy": ("preference",), "trade_off_rate": ("judge", "preference", "generate")}.get(
        query.metric, ("judge",))
    sql = ("SELECT m.name, max(r.id) FROM runs r JOIN models m ON m.id = r.model_id WHERE r.method IN "
           f"({','.join('?' * len(methods))}) AND r.items_done > 0")
    args: list[object] = list(methods)
    if query.benchmark_id is not None:
        sql += " AND r.benchmark_id = ?"
        args.append(query.benchmark_id)
    sql += " GROUP BY m.name ORDER BY m.name"
    runs = {name: rid for name, rid in store.conn.execute(sql, args)}
    if query.models:
        runs = {m: r for m, r in runs.items() if m in query.models}
    return runs


def read_explore(store: Store, query: ExploreQuery, parts: frozenset[str] = ALL_PARTS) -> ExploreData:
    from misalign_tui.core.views import explore_metrics as metrics_view

    started = time.perf_counter()
    runs = latest_runs(store, query)
    data = ExploreData(query, models=list(runs), parts=frozenset(parts))
    if not runs:
        data.note = ("No results for this metric yet — x switches the metric (preference runs show Pref. acc.), "
                     "r starts a run.")
    else:
        metrics_view.fill(store, runs, query, data, frozenset(parts))
    data.seconds = time.perf_counter() - started
    return data


@dataclass(frozen=True)
class Disagreement:
    item_id: int  # the response (judge runs) or the pair (preference runs)
    prompt_id: int
    prompt_key: str
    dimension: str
    label: str  # the response's gold label; "pair" for preference runs
    verdicts: tuple[bool, ...]  # per model: correct?


@dataclass
class CompareData:
    models: list[str]
    rows: list[tuple[str, str, str, list[float | None], float | None, str, int]]
    # kind, group, other model, [value first, value other], delta (first − other), test, shared items
    disagreements: list[Disagreement]
    items: int = 0
    note: str = ""
    request: tuple = ()  # (models, disagreements only) as asked, so the screen can drop stale answers
    method: str = "judge"  # whose runs were paired: judge, else preference (base models)


def read_compare(store: Store, models: list[str], disagreements_only: bool = True,
                 limit: int = 300) -> CompareData:
    from misalign_tui.core.views import explore_metrics as metrics_view

    # judge runs where the chosen models all have one, else preference runs (base models have only those)
    for metric, method in (("alignment_score", "judge"), ("preference_accuracy", "preference")):
        found = latest_runs(store, ExploreQuery(models=tuple(models), metric=metric))
        runs = {m: found[m] for m in models if m in found}
        if len(runs) >= 2:
            return metrics_view.compare(store, runs, disagreements_only, limit, method)
    return CompareData(list(runs), [], [], note="Pick two or more models that have judge runs (or preference runs).")


@dataclass
class ItemVerdict:
    model: str
    run_id: int
    method: str
    response_id: int | None
    pair_id: int | None
    value: str  # verdict and probability, or log-likelihoods


@dataclass
class ItemView:
    prompt_id: int
    key: str
    text: str
    semantic_type: str | None
    domains: list[tuple[str, str]]  # (dimension, domain)
    responses: list[tuple[int, str | None, str, str]]  # id, dimension, label, text
    pairs: list[tuple[int, str | None, int, int]]  # id, dimension, aligned id, misaligned id
    verdicts: list[ItemVerdict]
    formatted: list[tuple[str, str]]  # (run/template name, the text the model saw)


def read_item(store: Store, prompt_id: int) -> ItemView:
    c = store.conn
    p = c.execute("SELECT id, key, text, semantic_type FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
    if p is None:
        raise LookupError(f"prompt {prompt_id} not found")
    domains = [(r[0], r[1]) for r in c.execute(
        "SELECT d.dimension, d.name FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id "
        "WHERE pd.prompt_id = ? ORDER BY d.dimension, d.name", (prompt_id,))]
    responses = [tuple(r) for r in c.execute(
        "SELECT id, dimension, label, text FROM responses WHERE prompt_id = ? ORDER BY dimension, label, id",
        (prompt_id,))]
    pairs = [tuple(r) for r in c.execute(
        "SELECT id, dimension, aligned_id, misaligned_id FROM pairs WHERE prompt_id = ? ORDER BY id", (prompt_id,))]
    verdicts: list[ItemVerdict] = []
    for rid, model, method, rsp, mean_p, n in c.execute(
            "SELECT jr.run_id, m.name, r.method, jr.response_id, avg(jr.p_misaligned), count(*) "
            "FROM judge_results jr JOIN runs r ON r.id = jr.run_id JOIN models m ON m.id = r.model_id "
            "JOIN responses resp ON resp.id = jr.response_id WHERE resp.prompt_id = ? "
            "GROUP BY jr.run_id, jr.response_id ORDER BY m.name, jr.run_id", (prompt_id,)):
        flag = "misaligned" if mean_p >= 0.5 else "aligned"
        verdicts.append(ItemVerdict(model, rid, method, rsp, None,
                                    f"flags {flag}  P(misaligned)={mean_p:.3f} over {n} template(s)"))
    for rid, model, pair_id, alp, atok, mlp, mtok, pref in c.execute(
            "SELECT pr.run_id, m.name, pr.pair_id, avg(aligned_logprob), avg(aligned_tokens), "
            "avg(misaligned_logprob), avg(misaligned_tokens), avg(prefers_aligned) FROM preference_results pr "
            "JOIN runs r ON r.id = pr.run_id JOIN models m ON m.id = r.model_id JOIN pairs pa ON pa.id = pr.pair_id "
            "WHERE pa.prompt_id = ? GROUP BY pr.run_id, pr.pair_id", (prompt_id,)):
        verdicts.append(ItemVerdict(model, rid, "preference", None, pair_id,
                                    f"{'prefers aligned' if pref >= 0.5 else 'prefers misaligned'}  "
                                    f"mean logprob aligned {alp / max(atok, 1):.3f} vs misaligned "
                                    f"{mlp / max(mtok, 1):.3f}"))
    formatted: list[tuple[str, str]] = []
    first_response = next((r for r in responses), None)
    run_ids = sorted({v.run_id for v in verdicts})
    for rid in run_ids:
        for t, name, text in c.execute(
                "SELECT template, name, text FROM run_templates WHERE run_id = ? ORDER BY template", (rid,)):
            filled = text.replace("{prompt}", p["text"])
            if first_response is not None:
                filled = filled.replace("{response}", first_response[3])
                filled = filled.replace("{dimension}", first_response[1] or "")
            formatted.append((f"run {rid} · template {t} ({name})", filled))
    return ItemView(p["id"], p["key"], p["text"], p["semantic_type"], domains, responses, pairs, verdicts,
                    formatted)
