"""One run across languages (docs/measures.md): each English item paired with its parallel items — the same
scenario written in another language, same dimension, label and position — and, per language, McNemar's exact
test on whether the verdict changes with the language (judge: response judged right; preference: pair preferred
aligned by the template majority; generate: answer judged aligned on d), Holm-adjusted across the languages.

This is the paired design of ``comparisons.compare`` with the language of the item in place of the model: a
language's accuracy can differ from English by chance on 30 scenarios; the test counts only the items whose
verdict flips, and says whether the flips lean one way more than chance allows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from misalign_tui.core.languages import language_name
from misalign_tui.core.metrics.filters import Filters, filter_conditions
from misalign_tui.core.metrics.statistics import holm, mcnemar_exact, ratio, wilson
from misalign_tui.core.metrics.vocabulary import group_order
from misalign_tui.core.store import Store, run_info

# per method: the per-unit rollup, the unit's matching key beyond its prompt, what "right" means, the metric
_UNITS = {
    "judge": ("SELECT run_id, prompt_id, dimension, semantic_type, label AS k2, ROW_NUMBER() OVER "
              "(PARTITION BY prompt_id, dimension, label ORDER BY response_id) AS k3, "
              "(flagged = (label = 'misaligned')) AS ok FROM rollup_judge_items WHERE run_id = ?",
              "responses judged right", "responses"),
    "preference": ("SELECT run_id, prompt_id, dimension, semantic_type, '' AS k2, ROW_NUMBER() OVER "
                   "(PARTITION BY prompt_id, dimension ORDER BY pair_id) AS k3, satisfied AS ok "
                   "FROM rollup_pair_outcomes WHERE run_id = ?",
                   "preference accuracy", "pairs"),
    "generate": ("SELECT run_id, prompt_id, dimension, semantic_type, '' AS k2, 1 AS k3, satisfied AS ok "
                 "FROM rollup_prompt_satisfaction WHERE run_id = ?",
                 "satisfaction", "prompt × dimension units"),
}


@dataclass(frozen=True)
class LanguageRow:
    language: str               # BCP 47 tag of the parallel items
    name: str                   # its English name, for prose
    n: int                      # paired units (English unit ↔ the same unit of the parallel item)
    sources: int                # English prompts with a parallel item in this language that the run scored
    english_right: int
    right: int                  # units right in this language
    english_accuracy: float | None
    english_ci: tuple[float, float] | None
    accuracy: float | None
    ci: tuple[float, float] | None
    english_only: int           # right in English, wrong in this language
    language_only: int          # wrong in English, right in this language
    p_value: float
    p_holm: float
    verdict: str | None         # "english" or "language" (the side with more right) where p_holm < alpha

    @property
    def changed(self) -> int:
        return self.english_only + self.language_only

    def as_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["changed"] = self.changed
        for k in ("english_ci", "ci"):
            out[k] = list(out[k]) if out[k] else None
        return out


@dataclass(frozen=True)
class Flip:
    """One paired unit whose verdict differs between English and the parallel item."""

    language: str
    source: str                 # the English prompt's key
    item: str                   # the parallel item's key
    item_prompt_id: int         # the parallel item's prompt (the app opens it)
    dimension: str
    label: str                  # judge: the response's label; else ""
    english_right: bool


@dataclass
class CrossLingual:
    run_id: int
    method: str
    metric: str                 # what "right" means, in words
    unit: str                   # what n counts
    rows: list[LanguageRow] = field(default_factory=list)
    flips: list[Flip] = field(default_factory=list)
    alpha: float = 0.05
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "method": self.method, "metric": self.metric, "unit": self.unit,
                "alpha": self.alpha, "correction": "holm", "test": "mcnemar_exact", "note": self.note,
                "languages": [r.as_dict() for r in self.rows], "flips": [vars(f) for f in self.flips]}


def cross_lingual(store: Store, run_id: int, *, filters: Filters | Mapping[str, Any] | None = None,
                  alpha: float = 0.05) -> CrossLingual:
    """The run's English items paired with their parallel items, per language (see the module docstring)."""
    run = run_info(store, run_id)
    units, metric, unit = _UNITS[run.method]
    f = Filters.parse(filters)
    params: list[Any] = [run_id]
    where = ["pl.source_prompt_id IS NOT NULL", *filter_conditions(f, "t", params, store)]
    sql = (f"WITH units AS ({units}) "
           "SELECT pl.language, pe.key, pl.key, pl.id, t.dimension, t.k2, e.ok, t.ok FROM units t "
           "JOIN prompts pl ON pl.id = t.prompt_id JOIN prompts pe ON pe.id = pl.source_prompt_id "
           "JOIN units e ON e.prompt_id = pl.source_prompt_id AND e.dimension = t.dimension AND e.k2 = t.k2 "
           f"AND e.k3 = t.k3 WHERE {' AND '.join(where)} ORDER BY pl.language, pe.id, t.dimension, t.k2, t.k3")
    per: dict[str, list[tuple[str, str, int, str, str, bool, bool]]] = {}
    for lang, src, item, item_id, dim, k2, e_ok, t_ok in store.conn.execute(sql, params):
        per.setdefault(lang, []).append((src, item, item_id, dim, k2, bool(e_ok), bool(t_ok)))
    out = CrossLingual(run_id, run.method, metric, unit, alpha=alpha)
    if not per:
        out.note = ("no parallel items scored: the run's benchmark has none (misalign-seed-languages has them), or "
                    "the run did not include both an English item and its parallel items")
        return out
    raw = []
    for lang in group_order("language", per):
        assert lang is not None
        units_l = per[lang]
        n = len(units_l)
        e_right = sum(u[5] for u in units_l)
        right = sum(u[6] for u in units_l)
        e_only = sum(u[5] and not u[6] for u in units_l)
        l_only = sum(u[6] and not u[5] for u in units_l)
        raw.append((lang, n, len({u[0] for u in units_l}), e_right, right, e_only, l_only,
                    mcnemar_exact(e_only, l_only)))
        out.flips += [Flip(lang, u[0], u[1], u[2], u[3], u[4], u[5]) for u in units_l if u[5] != u[6]]
    for x, p_adj in zip(raw, holm([x[-1] for x in raw]), strict=True):
        lang, n, sources, e_right, right, e_only, l_only, p = x
        verdict = None
        if p_adj < alpha and e_only != l_only:
            verdict = "english" if e_only > l_only else "language"
        out.rows.append(LanguageRow(lang, language_name(lang), n, sources, e_right, right, ratio(e_right, n),
                                    wilson(e_right, n), ratio(right, n), wilson(right, n), e_only, l_only, p,
                                    p_adj, verdict))
    return out


def verdict_words(row: LanguageRow, alpha: float = 0.05) -> str:
    """The row's reading in words, the same on every face."""
    if row.verdict == "english":
        return f"worse in {row.language} than in English (Holm p < {alpha:g})"
    if row.verdict == "language":
        return f"better in {row.language} than in English (Holm p < {alpha:g})"
    return "no significant change"

