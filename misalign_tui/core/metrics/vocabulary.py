"""The metric vocabulary: every figure's key, names, direction, unit and reference level, the headline figure of
each method, and how groups are named and ordered. The CLI, the app, sessions and the reports read it here;
nothing else spells a metric's label or decides which way is better.

Definitions of the measures themselves: docs/measures.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from misalign_tui.core.languages import DEFAULT_LANGUAGE
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

METHODS = ("judge", "preference", "generate")
GROUPINGS = ("dimension", "domain", "semantic_type", "language")
UNTARGETED = "untargeted"  # how a group of responses with no single targeted dimension is named
UNTYPED = "untyped"        # how a group of prompts without a semantic type is named
PREFERENCE_CHANCE = 0.5


@dataclass(frozen=True)
class Metric:
    """One figure the tool reports."""

    key: str                      # JSON key, session and explorer value
    name: str                     # full name (reports)
    label: str                    # short label (tables, charts, select boxes)
    methods: tuple[str, ...]      # run methods that produce it
    lower_is_better: bool
    value: str | None             # MetricRow attribute holding it (None: not a profile figure)
    ci: str | None                # MetricRow attribute holding its 95 % interval
    n: str | None                 # MetricRow attribute counting its units
    unit: str                     # what n counts
    reference: float | None = None  # the level to read it against (chance, a coin-flip judge)
    reference_label: str = ""
    reference_name: str = ""        # the reference in a sentence: "chance", "a coin-flip judge"
    source: str = "profile"       # what computes it: profile (metrics/profile.py) or judge_quality

    def row_value(self, row: Any) -> float | None:
        return getattr(row, self.value) if self.value else None

    def row_ci(self, row: Any) -> tuple[float, float] | None:
        return getattr(row, self.ci) if self.ci else None

    def row_n(self, row: Any) -> int:
        return int(getattr(row, self.n)) if self.n else 0


_ALL = (
    Metric("alignment_score", "Alignment Score", "AS", ("judge",), False, "alignment_score",
           "alignment_score_ci", "responses", "responses", 0.5, "coin-flip judge 50 %", "a coin-flip judge"),
    Metric("coverage", "Coverage", "Coverage", ("judge",), False, "coverage", "coverage_ci", "misaligned",
           "misaligned responses"),
    Metric("ffr", "False failure rate", "FFR", ("judge",), True, "ffr", "ffr_ci", "aligned",
           "aligned responses"),
    Metric("preference_accuracy", "Preference accuracy", "Pref. acc.", ("preference",), False, "pair_accuracy",
           "pair_accuracy_ci", "pairs", "pairs", PREFERENCE_CHANCE, "chance 50 %", "chance"),
    Metric("satisfaction", "Satisfaction", "Satisfaction", METHODS, False, "satisfaction", "satisfaction_ci",
           "prompt_dimensions", "prompt × dimension units"),
    Metric("trade_off_rate", "Trade-off rate", "Trade-off rate", METHODS, True, None, None, None,
           "prompts with pairs for two or more dimensions"),
    Metric("flip_rate", "Verdict flip rate", "Flip rate", METHODS, True, None, None, None,
           "items scored by both runs"),
    # how good the judge is (metrics/judge_quality.py); shown ×100 like the others
    Metric("auroc", "AUROC of P(misaligned)", "AUROC", ("judge",), False, "auroc", "auroc_ci", "items",
           "responses", 0.5, "chance 50", "chance", source="judge_quality"),
    Metric("pairwise_accuracy", "Pairwise accuracy (misaligned response scored higher)", "Pairwise acc.",
           ("judge",), False, "pairwise_accuracy", "pairwise_accuracy_ci", "pairs", "pairs", 0.5, "chance 50 %",
           "chance", source="judge_quality"),
    Metric("ece", "Expected calibration error", "ECE", ("judge",), True, "ece", "ece_ci", "items", "responses",
           source="judge_quality"),
    Metric("polarity_consistency", "Polarity consistency (question and twin agree)", "Polarity cons.",
           ("judge",), False, "polarity_consistency", "polarity_consistency_ci", "polarity_n", "responses",
           source="judge_quality"),
)
METRICS: dict[str, Metric] = {m.key: m for m in _ALL}
# What the explorer and saved sessions can show, in the order the metric switch cycles through them.
EXPLORER_METRICS = ("alignment_score", "coverage", "ffr", "preference_accuracy", "satisfaction", "trade_off_rate",
                    "auroc", "pairwise_accuracy", "ece", "polarity_consistency")
# The one figure that stands for a run of each method (dashboard, Run screen, report headline, charts).
HEADLINE = {"judge": "alignment_score", "preference": "preference_accuracy", "generate": "satisfaction"}


def metric(key: str) -> Metric:
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; known: {', '.join(METRICS)}") from None


def headline(method: str) -> Metric:
    """The headline figure of a run of ``method``."""
    return METRICS[HEADLINE[method]]


def methods_for(metric_key: str) -> tuple[str, ...]:
    """The run methods whose runs have this figure."""
    return METRICS[metric_key].methods


def chance_note(method: str) -> str:
    """What a run's figures should be compared with."""
    if method == "preference":
        return "chance 50 %"
    if method == "judge":
        return "constant judge AS 0 %, coin flip AS 50 %"
    return "no chance level (judged by another model)"


def reference_side(m: Metric, ci: Iterable[float] | None) -> str | None:
    """``"below"`` or ``"above"`` when the 95 % interval excludes the metric's reference level, else None."""
    if m.reference is None or ci is None:
        return None
    lo, hi = tuple(ci)
    if hi < m.reference:
        return "below"
    if lo > m.reference:
        return "above"
    return None


def significance_words(m: Metric, ci: Iterable[float] | None) -> str:
    """``significantly below`` / ``significantly above`` (a table cell under a header naming the reference), or
    "" when the interval holds the reference."""
    side = reference_side(m, ci)
    return f"significantly {side}" if side else ""


def versus_reference(m: Metric, ci: Iterable[float] | None) -> str:
    """The words every face uses when an interval excludes the reference: ``significantly below chance (50 %)``,
    ``significantly above a coin-flip judge (50 %)``; "" when it does not (or the metric has no reference)."""
    words = significance_words(m, ci)
    if not words or m.reference is None:
        return ""
    return f"{words} {m.reference_name} ({100 * m.reference:.0f} %)"


def method_summary(method: str, templates: int, judge_model: str | None = None) -> str:
    """What a run asked of the model, for headers: a preference run has no judge templates to count."""
    k = f"{templates} judge template{'s' if templates != 1 else ''}"
    if method == "judge":
        return k
    if method == "preference":
        return "log-likelihood of the aligned vs the misaligned response, no judge question"
    return f"answers rated by {judge_model or 'the judge model'} with {k}"


def group_name(group_by: str | None, key: Any, domain_names: dict[int, str]) -> str | None:
    """The display name of a group key from the rollups (a domain id, a dimension, a type, a language tag)."""
    if group_by is None:
        return None
    if group_by == "domain":
        return domain_names.get(int(key), f"domain {key}")
    return key or (UNTARGETED if group_by == "dimension" else UNTYPED)


def group_order(group_by: str | None, names: Iterable[str | None]) -> list[str | None]:
    """Groups in their natural order: dimensions and types as the taxonomy lists them, domains by name, languages
    English first."""
    unique = list(set(names))
    if group_by == "dimension":
        rank = {d: i for i, d in enumerate(DIMENSIONS)}
    elif group_by == "semantic_type":
        rank = {t: i for i, t in enumerate(SEMANTIC_TYPES)}
    elif group_by == "language":
        rank = {DEFAULT_LANGUAGE: 0}  # English (the sources) first, then the tags by name
    else:
        rank = {}
    return sorted(unique, key=lambda n: (rank.get(n or "", len(rank)), n or ""))
