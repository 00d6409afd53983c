"""The measures (docs/measures.md), read from the store's rollup tables: the API the CLI report, the audit
report and the app all call.

- ``profile(store, run_id, *, group_by=None, filters=None, bootstrap=0, seed=0) -> list[MetricRow]``
  (metrics/profile.py): one row overall or one per ``"dimension" | "domain" | "semantic_type"``.
- ``trade_offs(store, run_id, filters=None) -> TradeOffReport`` (metrics/tradeoffs.py).
- ``compare(store, run_a, run_b, *, group_by=None, filters=None, alpha=0.05) -> list[ComparisonRow]``
  (metrics/comparisons.py).
- ``Filters`` (metrics/filters.py): the one filter grammar; the metric vocabulary (metrics/vocabulary.py);
  the statistics (metrics/statistics.py). Which run to show for a model: ``core.runs.catalog.runs_to_show``.
"""

from misalign_tui.core.metrics.comparisons import ComparisonRow, compare
from misalign_tui.core.metrics.filters import Filters, filter_conditions
from misalign_tui.core.metrics.profile import MetricRow, TemplateScore, profile
from misalign_tui.core.metrics.statistics import harmonic_alignment, holm, mcnemar_exact, wilson
from misalign_tui.core.metrics.tradeoffs import RateCell, TradeOffReport, trade_offs
from misalign_tui.core.metrics.vocabulary import (
    GROUPINGS,
    METRICS,
    PREFERENCE_CHANCE,
    UNTARGETED,
    chance_note,
    headline,
)

__all__ = [
    "GROUPINGS", "METRICS", "PREFERENCE_CHANCE", "UNTARGETED", "ComparisonRow", "Filters", "MetricRow", "RateCell",
    "TemplateScore", "TradeOffReport", "chance_note", "compare", "filter_conditions", "harmonic_alignment", "headline",
    "holm", "mcnemar_exact", "profile", "trade_offs", "wilson",
]
