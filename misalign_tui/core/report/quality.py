"""How good the judge is, gathered once per run for every report face (``report`` in all formats, the audit
report): the judge-quality figures of metrics/judge_quality.py overall and per group, a preference run's fluency
gap (metrics/fluency.py), the protocol and the calibration split, and the sentences that say them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.metrics.fluency import FluencyGap, fluency_gap
from misalign_tui.core.metrics.judge_quality import (
    ANSWER_MASS_MIN,
    NOISE_MARGIN,
    NOISE_P,
    AurocComparison,
    JudgeQuality,
    judge_quality,
)
from misalign_tui.core.store import RunInfo, Store

HEADLINE_KEYS = ("auroc", "auroc_ci", "pairwise_accuracy", "pairwise_accuracy_ci", "ece", "ece_ci",
                 "answer_mass_median")
GROUP_KEYS = ("auroc", "auroc_ci", "pairwise_accuracy", "pairwise_accuracy_ci", "ece")


def ratio_ci(v: float | None, ci: Sequence[float] | None, digits: int = 2) -> str:
    """An AUROC or an ECE: a ratio with its interval ("0.39 [0.29, 0.49]")."""
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def _pct(v: float | None, ci: Sequence[float] | None = None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


@dataclass(frozen=True)
class RunQuality:
    run_id: int
    method: str
    protocol: str                               # "zero-shot", "4-shot, calibrated, balanced", ...
    judge_rows: tuple[JudgeQuality, ...] = ()   # the overall row (judge runs)
    judge_groups: tuple[JudgeQuality, ...] = ()
    fluency: FluencyGap | None = None           # preference runs
    fluency_groups: tuple[FluencyGap, ...] = ()
    calibration_split: dict[str, Any] | None = None

    @property
    def overall(self) -> JudgeQuality | None:
        return self.judge_rows[0] if self.judge_rows else None

    @property
    def verdict(self) -> str | None:
        return self.overall.verdict if self.overall else None

    def headline_json(self) -> dict[str, Any]:
        """The keys ``report --format json`` adds to a run."""
        out: dict[str, Any] = {"judge_verdict": self.verdict}
        q = self.overall
        if q is not None:
            d = q.as_dict()
            out.update({k: d[k] for k in HEADLINE_KEYS})
            if q.polarity_n:
                out["polarity_consistency"] = q.polarity_consistency
                out["polarity_consistency_ci"] = d["polarity_consistency_ci"]
            out["judge_quality"] = d
        if self.fluency is not None:
            out["fluency_gap"] = self.fluency.as_dict()
            if self.fluency.pmi_pairs:
                out["preference_accuracy_plain"] = self.fluency.accuracy
                out["preference_accuracy_pmi"] = self.fluency.pmi_accuracy
        if self.calibration_split:
            out["calibration_split"] = self.calibration_split
        return out

    def groups_json(self) -> dict[str | None, dict[str, Any]]:
        """Per group: the first judge-quality keys (``groups`` entries of ``report --format json``)."""
        out: dict[str | None, dict[str, Any]] = {}
        for g in self.judge_groups:
            d = g.as_dict()
            out[g.group] = {k: d[k] for k in GROUP_KEYS}
        for fg in self.fluency_groups:
            out[fg.group] = {"fluency_gap": fg.as_dict()}
        return out

    def lines(self) -> list[str]:
        """What a report says about the judge (or the preference confound), in sentences."""
        out: list[str] = []
        split = self.calibration_split
        if split:
            out.append(f"Calibration split: {split['prompts_held_out']} of {split['prompts_total']} prompts held "
                       f"out of scoring; {len(split.get('demonstrations') or [])} of their responses shown as "
                       "demonstrations.")
        q = self.overall
        if q is not None:
            out.append(f"Judge: {q.verdict}.")
            out.append(f"AUROC {ratio_ci(q.auroc, q.auroc_ci)}, pairwise accuracy "
                       f"{_pct(q.pairwise_accuracy, q.pairwise_accuracy_ci)} over {q.pairs:,} pairs, ECE "
                       f"{ratio_ci(q.ece, q.ece_ci, 3)}; {q.items:,} responses.")
            out.append(f"Noise band (|P − 0.5| ≤ {NOISE_P}): {q.uncertain:,} of {q.items:,} verdicts uncertain; "
                       f"without them AUROC {ratio_ci(q.auroc_certain, q.auroc_certain_ci)}, pairwise accuracy "
                       f"{_pct(q.pairwise_accuracy_certain, q.pairwise_accuracy_certain_ci)} "
                       f"({q.pairs - q.uncertain_pairs:,} pairs with |ΔP| > {NOISE_P}), ECE "
                       f"{ratio_ci(q.ece_certain, None, 3)}.")
            if q.answer_mass_median is None:
                out.append("Answer mass: not measured (results stored before it was recorded).")
            else:
                warn = (f" — under {100 * ANSWER_MASS_MIN:.0f} %: the model mostly answers something other "
                        "than Yes or No" if q.answer_mass_median < ANSWER_MASS_MIN else "")
                out.append(f"Answer mass (P(Yes) + P(No) at the answer): median {100 * q.answer_mass_median:.1f} % "
                           f"over {q.answer_mass_n:,} responses{warn}.")
            if q.polarity_n:
                out.append(f"Polarity: AUROC of the harm question {ratio_ci(q.auroc_harm, q.auroc_harm_ci)}, of "
                           f"its inverted twin {ratio_ci(q.auroc_inverted, q.auroc_inverted_ci)}; consistency "
                           f"{_pct(q.polarity_consistency, q.polarity_consistency_ci)} over {q.polarity_n:,} "
                           f"responses; mean P(Yes) {_pct(q.mean_yes_share)}.")
            if q.calibrated:
                out.append(f"Contextual calibration: AUROC raw {ratio_ci(q.auroc_raw, q.auroc_raw_ci)} → calibrated "
                           f"{ratio_ci(q.auroc, q.auroc_ci)}; ECE raw {ratio_ci(q.ece_raw, None, 3)} → "
                           f"{ratio_ci(q.ece, None, 3)}.")
        f = self.fluency
        if f is not None and f.pairs:
            out.append(f.sentence()[0].upper() + f.sentence()[1:] + ".")
            out.append(f"Noise band (|margin| ≤ {NOISE_MARGIN} nats/token): {f.uncertain_pairs:,} of {f.pairs:,} "
                       f"pairs uncertain; accuracy without them {_pct(f.accuracy_certain, f.accuracy_certain_ci)}.")
        return out


def run_quality(store: Store, run: RunInfo, group_by: str | None, filters: Filters, bootstrap: int,
                seed: int) -> RunQuality:
    raw = store.conn.execute("SELECT provenance_json FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    prov = json.loads(raw) if raw else {}
    split = prov.get("calibration_split")
    if run.method == "judge":
        return RunQuality(run.id, run.method, prov.get("protocol") or "zero-shot",
                          tuple(judge_quality(store, run.id, filters=filters, bootstrap=bootstrap, seed=seed)),
                          tuple(judge_quality(store, run.id, group_by=group_by, filters=filters,
                                              bootstrap=bootstrap, seed=seed)) if group_by else (),
                          calibration_split=split)
    if run.method == "preference":
        overall = fluency_gap(store, run.id, filters=filters)
        return RunQuality(run.id, run.method, prov.get("protocol") or "zero-shot",
                          fluency=overall[0] if overall else None,
                          fluency_groups=tuple(fluency_gap(store, run.id, group_by=group_by, filters=filters))
                          if group_by else (), calibration_split=split)
    return RunQuality(run.id, run.method, prov.get("protocol") or "zero-shot")


def auroc_comparison_line(model_a: str, model_b: str, c: AurocComparison) -> str:
    if c.auroc_a is None or c.auroc_b is None or c.delta is None:
        return f"AUROC {model_a} vs {model_b}: not comparable (no shared responses with both labels)"
    ci = f"[{c.delta_ci[0]:+.3f}, {c.delta_ci[1]:+.3f}]" if c.delta_ci else "(no interval)"
    who = {"a": f"{model_a} ranks better", "b": f"{model_b} ranks better"}.get(c.verdict or "", "no clear difference")
    p = f", p = {c.p_value:.3g}" if c.p_value is not None else ""
    return (f"AUROC {model_a} {c.auroc_a:.3f} vs {model_b} {c.auroc_b:.3f} on {c.items:,} shared responses: "
            f"Δ {c.delta:+.3f} {ci} (paired bootstrap over {c.prompts:,} prompts{p}) — {who}")
