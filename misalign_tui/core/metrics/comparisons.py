"""Two runs of one method on their shared items (docs/measures.md): the metric of each and the delta,
McNemar's exact test on per-item verdicts (judge: response judged right; preference: pair preferred aligned;
generate: answer judged aligned on d), Holm-adjusted across the groups; ``verdict`` is "a" or "b" only where
the adjusted p < alpha."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.filters import Filters, unit_grouping
from misalign_tui.core.metrics.statistics import harmonic_alignment, holm, mcnemar_exact, ratio
from misalign_tui.core.metrics.vocabulary import GROUPINGS, group_name, group_order
from misalign_tui.core.store import Store, run_info


@dataclass(frozen=True)
class ComparisonRow:
    group: str | None
    metric: str                 # alignment_score | preference_accuracy | satisfaction
    n_items: int                # shared items (responses, pairs or prompt x dimension units)
    value_a: float | None
    value_b: float | None
    delta: float | None         # a − b
    accuracy_a: float | None    # share of items judged right (the McNemar verdicts)
    accuracy_b: float | None
    a_only: int                 # items A gets right and B wrong
    b_only: int
    p_value: float
    p_holm: float
    verdict: str | None         # "a" or "b" where the Holm-adjusted test holds, else None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def compare(store: Store, run_a: int, run_b: int, *, group_by: str | None = None,
            filters: Filters | Mapping[str, Any] | None = None, alpha: float = 0.05) -> list[ComparisonRow]:
    """Two runs on their shared items, per group, with McNemar's exact test and Holm across the groups."""
    if group_by not in (None, *GROUPINGS):
        raise UserError(f"group by {group_by!r}: use one of {', '.join(GROUPINGS)}")
    f = Filters.parse(filters)
    a, b = run_info(store, run_a), run_info(store, run_b)
    if a.method != b.method:
        raise UserError(f"runs {a.id} ({a.method}) and {b.id} ({b.method}) use different methods; "
                        "compare runs of one method")
    table, on, ok, metric = {
        "judge": ("rollup_judge_items", "v.response_id = u.response_id",
                  "(u.flagged = (u.label = 'misaligned'))", "alignment_score"),
        "preference": ("rollup_pair_outcomes", "v.pair_id = u.pair_id", "u.satisfied", "preference_accuracy"),
        "generate": ("rollup_prompt_satisfaction", "v.prompt_id = u.prompt_id AND v.dimension = u.dimension",
                     "u.satisfied", "satisfaction"),
    }[a.method]
    ok_b = ok.replace("u.", "v.")
    params: list[Any] = [run_b, run_a]
    join, gcol, where = unit_grouping(store, f, group_by, params)
    judge_sums = ""
    if a.method == "judge":
        judge_sums = (", sum(u.label = 'misaligned'), sum(u.label = 'misaligned' AND u.flagged), "
                      "sum(u.label = 'misaligned' AND v.flagged), sum(u.label = 'aligned'), "
                      "sum(u.label = 'aligned' AND u.flagged), sum(u.label = 'aligned' AND v.flagged)")
    sql = (f"SELECT {gcol}, count(*), sum({ok}), sum({ok_b}), sum({ok} AND NOT {ok_b}), "
           f"sum({ok_b} AND NOT {ok}){judge_sums} FROM {table} u JOIN {table} v ON v.run_id = ? AND {on} {join} "
           f"WHERE {' AND '.join(['u.run_id = ?', *where])} GROUP BY 1")
    domain_names = {v: k for k, v in store.domain_ids().items()}
    raw = []
    for r in store.conn.execute(sql, params):
        n, ok_a_n, ok_b_n, a_only, b_only = r[1], r[2], r[3], r[4], r[5]
        if a.method == "judge":
            m, ma, mb, al, aa, ab = r[6:12]
            va = harmonic_alignment(ratio(ma, m), ratio(aa, al))
            vb = harmonic_alignment(ratio(mb, m), ratio(ab, al))
        else:
            va, vb = ratio(ok_a_n, n), ratio(ok_b_n, n)
        raw.append((group_name(group_by, r[0], domain_names), n, va, vb, ok_a_n / n, ok_b_n / n, a_only, b_only,
                    mcnemar_exact(a_only, b_only)))
    order = {name: i for i, name in enumerate(group_order(group_by, [x[0] for x in raw]))}
    raw.sort(key=lambda x: order[x[0]])
    adjusted = holm([x[-1] for x in raw])
    rows = []
    for x, p_adj in zip(raw, adjusted, strict=True):
        name, n, va, vb, acc_a, acc_b, a_only, b_only, p = x
        verdict = None
        if p_adj < alpha and a_only != b_only:
            verdict = "a" if a_only > b_only else "b"
        rows.append(ComparisonRow(name, metric, n, va, vb, None if va is None or vb is None else va - vb,
                                  acc_a, acc_b, a_only, b_only, p, p_adj, verdict))
    return rows


