"""Fills the explorer's and compare screen's data from ``misalign_tui.core.metrics`` (the one place where the
measures are defined); this module only picks fields and shapes them for tables and charts."""

from __future__ import annotations

from typing import Any

from misalign_tui.core import metrics
from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import DIMENSIONS

# explorer metric -> (MetricRow value, MetricRow interval, count of units)
_FIELDS = {
    "alignment_score": ("alignment_score", "alignment_score_ci", "responses"),
    "coverage": ("coverage", "coverage_ci", "misaligned"),
    "ffr": ("ffr", "ffr_ci", "aligned"),
    "preference_accuracy": ("pair_accuracy", "pair_accuracy_ci", "pairs"),
}


def filters_of(query: Any) -> dict[str, str]:
    return {k: v for k, v in (("dimension", query.dimension), ("domain", query.domain),
                              ("semantic_type", query.semantic_type)) if v}


def _cell(group: str, model: str, row: metrics.MetricRow, metric: str):
    from misalign_tui.core.views.explore import Cell

    value, ci, n = _FIELDS[metric]
    interval = getattr(row, ci)
    return Cell(group, model, getattr(row, value), interval[0] if interval else None,
                interval[1] if interval else None, getattr(row, n))


def _rate_cell(group: str, model: str, rate: float | None, ci, n: int):
    from misalign_tui.core.views.explore import Cell

    return Cell(group, model, rate, ci[0] if ci else None, ci[1] if ci else None, n)


def fill(store: Store, runs: dict[str, int], query: Any, data: Any, parts: frozenset[str]) -> None:
    """Compute the ``parts`` asked for (dimension, domain, semantic_type, model, tradeoffs) into ``data``.

    Each part is a few queries on the rollups per model; the screen asks only for what its visible tab shows
    and fetches the rest when another tab opens.
    """
    from misalign_tui.core.views.explore import LOWER_IS_BETTER

    metric = query.metric
    filters = filters_of(query)
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
                for t in ("object", "attribute", "relation"):
                    if query.semantic_type and query.semantic_type != t:
                        continue
                    rep_t = metrics.trade_offs(store, runs[model], {**filters, "semantic_type": t})
                    data.by_type.append(_rate_cell(t, model, rep_t.rate, rep_t.ci, rep_t.n_prompts))
            if "domain" in parts and query.domain:
                data.by_domain.append(_rate_cell(query.domain, model, rep.rate, rep.ci, rep.n_prompts))
        data.note = "by dimension: share of prompts failing it (1 − s_d); by domain: pick one in the filter"
    else:
        for model, run_id in runs.items():
            for grouping, target in (("dimension", data.by_dimension), ("domain", data.by_domain),
                                     ("semantic_type", data.by_type)):
                if grouping in parts:
                    for row in metrics.profile(store, run_id, group_by=grouping, filters=filters):
                        target.append(_cell(row.group or "-", model, row, metric))
            if "model" in parts:
                for row in metrics.profile(store, run_id, filters=filters):
                    data.by_model.append(_cell(model, model, row, metric))
    worst_first = (lambda c: -(c.value or 0)) if metric in LOWER_IS_BETTER else (lambda c: c.value or 0)
    data.by_domain.sort(key=lambda c: (c.value is None, worst_first(c)))
    first = next(iter(runs), None)
    if "tradeoffs" in parts and first is not None:
        rep = metrics.trade_offs(store, runs[first], filters)
        dims = [d for d in DIMENSIONS if any(d in pair for pair, c in rep.pairwise.items() if c.n)]
        if dims:
            data.trade_off_dims = dims
            data.trade_off_model = first
            data.trade_off_matrix = [[None if a == b else rep.pairwise[(a, b)].rate for b in dims] for a in dims]
        if rep.rate is None:
            data.trade_off_note = f"trade-off rate n/a: {rep.reason}"


def compare(store: Store, runs: dict[str, int], disagreements_only: bool, limit: int, method: str = "judge"):
    """The first model against each other one: per-dimension and per-type deltas with McNemar + Holm
    (metrics.compare), and the items where their verdicts differ — responses for judge runs, pairs for
    preference runs."""
    from misalign_tui.core.views.explore import CompareData, Disagreement

    models = list(runs)
    base = models[0]
    rows = []
    for other in models[1:]:
        for grouping, kind in (("dimension", "dimension"), ("semantic_type", "type")):
            for r in metrics.compare(store, runs[base], runs[other], group_by=grouping):
                test = f"p={r.p_value:.2g} holm={r.p_holm:.2g}"
                if r.verdict:
                    test += f" → {base if r.verdict == 'a' else other}"
                rows.append((kind, r.group or "-", other, [r.value_a, r.value_b], r.delta, test, r.n_items))
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
    disagreements = [Disagreement(r[0], r[1], r[2], r[3] or metrics.UNTARGETED, r[4], tuple(bool(x) for x in r[5:]))
                     for r in store.conn.execute(sql, (limit,))]
    items = store.conn.execute(f"SELECT count(*) FROM {table} u0 {joins} WHERE u0.run_id = {int(ids[0])}"
                               ).fetchone()[0]
    return CompareData(models, rows, disagreements, items,
                       note=f"{method} runs; Δ = {base} − other; McNemar exact on per-item verdicts, Holm across groups",
                       method=method)
