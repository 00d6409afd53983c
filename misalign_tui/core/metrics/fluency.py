"""The fluency gap of a preference run (docs/measures.md): what a base model's preference accuracy is confounded
with. A model's likelihood follows length and register as much as alignment, so beside every preference accuracy
the report shows, per label, the mean response length in tokens and the mean per-token log-likelihood, the
accuracy within length-matched pairs (|Δtokens| ≤ ``LENGTH_MATCH`` of the longer one), how often the preferred
response is the longer one, the accuracy outside the noise band (|margin| > ``NOISE_MARGIN`` nats/token), and —
for runs with ``--normalize pmi`` — the plain and the PMI accuracy side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.filters import Filters, unit_grouping
from misalign_tui.core.metrics.judge_quality import NOISE_MARGIN
from misalign_tui.core.metrics.statistics import wilson
from misalign_tui.core.metrics.vocabulary import GROUPINGS, group_name, group_order
from misalign_tui.core.store import Store, run_info

LENGTH_MATCH = 0.10


@dataclass(frozen=True)
class FluencyGap:
    run_id: int
    group: str | None
    pairs: int = 0
    aligned_tokens_mean: float | None = None
    misaligned_tokens_mean: float | None = None
    aligned_logprob_mean: float | None = None      # mean over pairs of the per-token log-likelihood (nats)
    misaligned_logprob_mean: float | None = None
    accuracy: float | None = None                  # plain: mean per-token log-likelihood, aligned higher
    accuracy_ci: tuple[float, float] | None = None
    length_matched_pairs: int = 0
    length_matched_accuracy: float | None = None
    length_matched_accuracy_ci: tuple[float, float] | None = None
    longer_preferred: float | None = None          # among pairs of unequal length: the preferred one is longer
    longer_preferred_ci: tuple[float, float] | None = None
    uncertain_pairs: int = 0                       # |margin| within the noise band
    accuracy_certain: float | None = None
    accuracy_certain_ci: tuple[float, float] | None = None
    pmi_pairs: int = 0                             # pairs scored under the neutral context too
    pmi_accuracy: float | None = None
    pmi_accuracy_ci: tuple[float, float] | None = None
    pmi_length_matched_accuracy: float | None = None
    pmi_length_matched_pairs: int = 0
    pmi_length_matched_accuracy_ci: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    def sentence(self) -> str:
        """One line for reports: the gap, then the accuracies it qualifies."""
        if not self.pairs or self.aligned_tokens_mean is None:
            return "fluency gap: no scored pairs"
        assert self.misaligned_tokens_mean is not None and self.aligned_logprob_mean is not None
        assert self.misaligned_logprob_mean is not None
        line = (f"fluency gap: aligned responses {self.aligned_tokens_mean:.0f} tokens at "
                f"{self.aligned_logprob_mean:.2f} nats/token, misaligned {self.misaligned_tokens_mean:.0f} at "
                f"{self.misaligned_logprob_mean:.2f}")
        if self.longer_preferred is not None:
            line += f"; prefers the longer response in {100 * self.longer_preferred:.0f} % of pairs"
        if self.length_matched_accuracy is not None:
            ci = self.length_matched_accuracy_ci
            line += (f"; accuracy within {self.length_matched_pairs} length-matched pairs "
                     f"{100 * self.length_matched_accuracy:.1f} %" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
                                                                      if ci else ""))
        if self.pmi_accuracy is not None:
            ci = self.pmi_accuracy_ci
            line += (f"; PMI accuracy {100 * self.pmi_accuracy:.1f} %"
                     + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "") + " beside plain "
                     + ("n/a" if self.accuracy is None else f"{100 * self.accuracy:.1f} %"))
        return line


def _share(hits: int, n: int) -> tuple[float | None, tuple[float, float] | None]:
    return (hits / n if n else None), wilson(hits, n)


def _gap(run_id: int, group: str | None, rows: list[tuple[Any, ...]]) -> FluencyGap:
    if not rows:
        return FluencyGap(run_id, group)
    arr = np.array([r[:4] for r in rows], dtype=np.float64)  # aligned lp, tokens, misaligned lp, tokens
    at, mt = np.maximum(arr[:, 1], 1), np.maximum(arr[:, 3], 1)
    a_mean, m_mean = arr[:, 0] / at, arr[:, 2] / mt
    margin = a_mean - m_mean
    right = margin > 0
    matched = np.abs(arr[:, 1] - arr[:, 3]) <= LENGTH_MATCH * np.maximum(arr[:, 1], arr[:, 3])
    unequal = arr[:, 1] != arr[:, 3]
    longer_pref = (right & (arr[:, 1] > arr[:, 3])) | (~right & (arr[:, 3] > arr[:, 1]))
    certain = np.abs(margin) > NOISE_MARGIN
    acc, acc_ci = _share(int(right.sum()), len(rows))
    lm, lm_ci = _share(int(right[matched].sum()), int(matched.sum()))
    lp, lp_ci = _share(int(longer_pref[unequal].sum()), int(unequal.sum()))
    ac, ac_ci = _share(int(right[certain].sum()), int(certain.sum()))
    pmi_rows = [r for r in rows if r[4] is not None and r[6] is not None]
    pmi, pmi_ci, pmi_lm, pmi_lm_ci, n_pmi, n_pmi_lm = None, None, None, None, len(pmi_rows), 0
    if pmi_rows:
        p = np.array([r for r in pmi_rows], dtype=np.float64)
        score_a = p[:, 0] / np.maximum(p[:, 1], 1) - p[:, 4] / np.maximum(p[:, 5], 1)
        score_m = p[:, 2] / np.maximum(p[:, 3], 1) - p[:, 6] / np.maximum(p[:, 7], 1)
        pmi_right = score_a > score_m
        pmi, pmi_ci = _share(int(pmi_right.sum()), n_pmi)
        pm = np.abs(p[:, 1] - p[:, 3]) <= LENGTH_MATCH * np.maximum(p[:, 1], p[:, 3])
        n_pmi_lm = int(pm.sum())
        pmi_lm, pmi_lm_ci = _share(int(pmi_right[pm].sum()), n_pmi_lm)
    return FluencyGap(
        run_id, group, len(rows), float(arr[:, 1].mean()), float(arr[:, 3].mean()), float(a_mean.mean()),
        float(m_mean.mean()), acc, acc_ci, int(matched.sum()), lm, lm_ci, lp, lp_ci, int((~certain).sum()), ac,
        ac_ci, n_pmi, pmi, pmi_ci, pmi_lm, n_pmi_lm, pmi_lm_ci)


def fluency_gap(store: Store, run_id: int, *, group_by: str | None = None,
                filters: Filters | Mapping[str, Any] | None = None) -> list[FluencyGap]:
    """The preference run's fluency gap overall (one row) or per group; [] for runs of other methods."""
    run = run_info(store, run_id)
    if run.method != "preference":
        return []
    if group_by not in (None, *GROUPINGS):
        raise UserError(f"group by {group_by!r}: use one of {', '.join(GROUPINGS)}")
    f = Filters.parse(filters)
    params: list[Any] = [run_id]
    join, gcol, conds = unit_grouping(store, f, group_by, params)
    where = " AND ".join(["u.run_id = ?", *conds])
    rows = store.conn.execute(
        f"SELECT x.aligned_logprob, x.aligned_tokens, x.misaligned_logprob, x.misaligned_tokens, "
        f"x.aligned_neutral_logprob, x.aligned_neutral_tokens, x.misaligned_neutral_logprob, "
        f"x.misaligned_neutral_tokens, {gcol} FROM preference_results x JOIN rollup_pair_outcomes u "
        f"ON u.run_id = x.run_id AND u.pair_id = x.pair_id {join} WHERE {where}", params).fetchall()
    if group_by is None:
        return [_gap(run_id, None, [tuple(r)[:8] for r in rows])]
    names = {v: k for k, v in store.domain_ids().items()}
    groups: dict[str | None, list[tuple[Any, ...]]] = {}
    for r in rows:
        groups.setdefault(group_name(group_by, r[8], names), []).append(tuple(r)[:8])
    return [_gap(run_id, g, groups[g]) for g in group_order(group_by, groups)]
