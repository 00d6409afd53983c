"""What the Compare screen shows: the first model against each other one, per dimension and semantic type (and
language, on a benchmark with parallel items), with McNemar's exact test and Holm's correction (metrics.compare),
and the items where their verdicts differ; and, in its languages view, one model's English items against their
parallel items (metrics.crosslingual)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from misalign_tui.core import metrics
from misalign_tui.core.metrics.crosslingual import CrossLingual, cross_lingual
from misalign_tui.core.metrics.judge_quality import compare_auroc
from misalign_tui.core.metrics.vocabulary import UNTARGETED
from misalign_tui.core.runs.catalog import runs_to_show
from misalign_tui.core.store import Store
from misalign_tui.core.views.explore import run_languages

COMPARE_BOOTSTRAP = 300  # resamples for the paired AUROC interval here (the report uses 1000)


@dataclass(frozen=True)
class Disagreement:
    item_id: int  # the response (judge runs) or the pair (preference runs)
    prompt_id: int
    prompt_key: str
    dimension: str
    label: str  # the response's gold label; "pair" for preference runs
    verdicts: tuple[bool, ...]  # per model: correct?


@dataclass(frozen=True)
class CompareRow:
    """The first model (A) against one other (B) in one group: both values, the delta, McNemar's exact p and
    Holm's adjusted p on the shared items, and the better model where the adjusted test holds."""

    kind: str                   # dimension | type
    group: str
    other: str                  # B's name
    value_a: float | None
    value_b: float | None
    delta: float | None         # A − B
    p: float | None
    p_holm: float | None        # None: a single test (the AUROC row), nothing to adjust
    better: str | None          # A's or B's name, or None (no significant difference)
    n: int                      # shared items


@dataclass
class CompareData:
    models: list[str]
    rows: list[CompareRow]
    disagreements: list[Disagreement]
    items: int = 0
    note: str = ""
    request: tuple[Any, ...] = ()  # (models, disagreements only) as asked, so the screen can drop stale answers
    method: str = "judge"  # whose runs were paired: judge, else preference (base models)


def compare_choices(store: Store) -> tuple[list[str], list[str]]:
    """(every model with a run that has results, the pair to show first: the first two models with judge runs,
    else the first two with preference runs — two models Compare can pair)."""
    from misalign_tui.core.metrics.vocabulary import METHODS

    models = list(runs_to_show(store, methods=METHODS).by_model())
    for method in ("judge", "preference"):
        found = list(runs_to_show(store, methods=(method,)).by_model())
        if len(found) >= 2:
            return models, found[:2]
    return models, models[:2]


def read_compare(store: Store, models: list[str], disagreements_only: bool = True,
                 limit: int = 300) -> CompareData:
    """The chosen models' judge runs where they all have one, else their preference runs (base models have only
    those): the runs to show are picked by core.runs.catalog.runs_to_show."""
    runs: dict[str, int] = {}
    for method in ("judge", "preference"):
        found = runs_to_show(store, models=models, methods=(method,)).by_model()
        runs = {m: found[m] for m in models if m in found}
        if len(runs) >= 2:
            return _compare(store, runs, disagreements_only, limit, method)
    return CompareData(list(runs), [], [], note="Pick two or more models that have judge runs (or preference runs).")


def _compare(store: Store, runs: dict[str, int], disagreements_only: bool, limit: int,
             method: str = "judge") -> CompareData:
    """The first model against each other one: per-dimension and per-type deltas with McNemar + Holm
    (metrics.compare), and the items where their verdicts differ — responses for judge runs, pairs for
    preference runs."""
    models = list(runs)
    base = models[0]
    rows: list[CompareRow] = []
    groupings = [("dimension", "dimension"), ("semantic_type", "type")]
    if any(len(run_languages(store, rid)) > 1 for rid in runs.values()):
        groupings.append(("language", "lang"))
    for other in models[1:]:
        for grouping, kind in groupings:
            for r in metrics.compare(store, runs[base], runs[other], group_by=grouping):
                better = None if not r.verdict else base if r.verdict == "a" else other
                rows.append(CompareRow(kind, r.group or "-", other, r.value_a, r.value_b, r.delta, r.p_value,
                                       r.p_holm, better, r.n_items))
        if method == "judge":  # how well each ranks: AUROC, paired bootstrap over the shared prompts
            c = compare_auroc(store, runs[base], runs[other], bootstrap=COMPARE_BOOTSTRAP)
            if c.auroc_a is not None:
                better = None if not c.verdict else base if c.verdict == "a" else other
                rows.append(CompareRow("AUROC", "all", other, c.auroc_a, c.auroc_b, c.delta, c.p_value, None,
                                       better, c.items))
    ids = list(runs.values())
    if method == "preference":
        table, item, label = "rollup_pair_outcomes", "pair_id", "'pair'"
        right = ", ".join(f"u{i}.satisfied" for i in range(len(ids)))
        differ = " OR ".join(f"(u{i}.satisfied != u0.satisfied)" for i in range(1, len(ids)))
    else:
        table, item, label = "rollup_judge_items", "response_id", "u0.label"
        right = ", ".join(f"u{i}.flagged = (u0.label = 'misaligned')" for i in range(len(ids)))
        differ = " OR ".join(f"(u{i}.flagged != u0.flagged)" for i in range(1, len(ids)))
    joins = " ".join(f"JOIN {table} u{i} ON u{i}.run_id = {int(rid)} AND u{i}.{item} = u0.{item}"
                     for i, rid in enumerate(ids) if i)
    sql = (f"SELECT u0.{item}, u0.prompt_id, p.key, u0.dimension, {label}, {right} "
           f"FROM {table} u0 {joins} JOIN prompts p ON p.id = u0.prompt_id WHERE u0.run_id = {int(ids[0])}"
           f"{f' AND ({differ})' if disagreements_only else ''} ORDER BY u0.prompt_id, u0.{item} LIMIT ?")
    disagreements = [Disagreement(r[0], r[1], r[2], r[3] or UNTARGETED, r[4], tuple(bool(x) for x in r[5:]))
                     for r in store.conn.execute(sql, (limit,))]
    items = store.conn.execute(f"SELECT count(*) FROM {table} u0 {joins} WHERE u0.run_id = {int(ids[0])}"
                               ).fetchone()[0]
    return CompareData(models, rows, disagreements, items,
                       note=f"{method} runs · Δ = A − B · p: McNemar's exact test on per-item verdicts, Holm-adjusted "
                            "across groups" + (f"; AUROC ×100: paired bootstrap over the shared prompts "
                                               f"({COMPARE_BOOTSTRAP} resamples)" if method == "judge" else ""),
                       method=method)


@dataclass
class LanguagesData:
    """One model's run with parallel items: the cross-lingual rows and the items whose verdict changes."""

    model: str | None
    run_id: int | None
    benchmark: str = ""
    result: CrossLingual | None = None
    note: str = ""
    request: tuple[Any, ...] = ()


def read_languages(store: Store, models: list[str]) -> LanguagesData:
    """The first of ``models`` with a run on a benchmark that has parallel items: its run to show there (judge
    runs first, then preference, then generate), read by metrics.crosslingual."""
    if not models:
        return LanguagesData(None, None, note="Pick a model (M, space).")
    benchmarks = [r[0] for r in store.conn.execute(
        "SELECT DISTINCT benchmark_id FROM prompts WHERE source_prompt_id IS NOT NULL ORDER BY benchmark_id DESC")]
    for model, method, bid in ((m, x, b) for m in models for x in ("judge", "preference", "generate")
                               for b in benchmarks):
        found = runs_to_show(store, models=[model], methods=(method,), benchmark_id=bid).by_model()
        if model in found:
            run_id = found[model]
            result = cross_lingual(store, run_id)
            bench = store.conn.execute("SELECT b.name || '@' || b.version FROM runs r JOIN benchmarks b "
                                       "ON b.id = r.benchmark_id WHERE r.id = ?", (run_id,)).fetchone()[0]
            return LanguagesData(model, run_id, bench, result, note=result.note)
    names = ", ".join(models)
    return LanguagesData(None, None, note=f"{names}: no run on a benchmark with parallel items; profile one with "
                                          "misalign-tui run --model NAME --benchmark misalign-seed-languages "
                                          "--filter parallel=yes")
