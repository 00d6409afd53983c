"""Trade-off rates (docs/measures.md): among prompts with evaluated pairs for two or more dimensions, the
share on which the model satisfies at least one dimension and fails at least one other, with its Wilson
interval, the independence baseline 1 − ∏ s_d − ∏ (1 − s_d) averaged over the same prompts, the excess, the
per-dimension rates s_d, and the pairwise table T[d1 → d2] (satisfies d1, fails d2) with baseline
s_d1 (1 − s_d2). ``rate`` is None ("n/a", never 0) when no prompt has pairs targeted at two or more single
dimensions; ``reason`` says why."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from misalign_tui.core.metrics.filters import Filters, filter_conditions
from misalign_tui.core.metrics.statistics import wilson
from misalign_tui.core.store import Store, run_info
from misalign_tui.core.taxonomy import DIMENSIONS


@dataclass(frozen=True)
class RateCell:
    """A proportion with its Wilson interval and, where one applies, the independence baseline."""

    n: int
    hits: int
    rate: float | None
    ci: tuple[float, float] | None
    baseline: float | None = None
    excess: float | None = None


@dataclass(frozen=True)
class TradeOffReport:
    run_id: int
    rate: float | None                      # None: n/a (see reason), never 0 for missing data
    ci: tuple[float, float] | None
    n_prompts: int                          # prompts with evaluated pairs for ≥ 2 dimensions
    n_trade_off: int
    baseline: float | None
    excess: float | None
    satisfaction: dict[str, RateCell]       # s_d over every prompt evaluated on d
    pairwise: dict[tuple[str, str], RateCell] = field(default_factory=dict)  # T[d1 → d2]
    untargeted_units: int = 0               # prompt x (no single dimension) units, left out
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "trade_off_rate": self.rate, "trade_off_rate_ci": list(self.ci) if self.ci else None,
            "trade_off_baseline": self.baseline, "trade_off_excess": self.excess,
            "trade_off_prompts": self.n_prompts, "trade_off_count": self.n_trade_off,
            "trade_off_reason": self.reason, "untargeted_units": self.untargeted_units,
            "satisfaction": {d: _cell_dict(c) for d, c in self.satisfaction.items()},
            "pairwise": [{"from": a, "to": b, **_cell_dict(c)} for (a, b), c in self.pairwise.items()],
        }


def _cell_dict(c: RateCell) -> dict[str, Any]:
    return {"n": c.n, "hits": c.hits, "rate": c.rate, "ci": list(c.ci) if c.ci else None,
            "baseline": c.baseline, "excess": c.excess}


def trade_offs(store: Store, run_id: int, filters: Filters | Mapping[str, Any] | None = None) -> TradeOffReport:
    """Trade-off rate, its independence baseline and the pairwise table (docs/measures.md), from the per-prompt
    satisfaction rollup: one GROUP BY to (dimension set, satisfied set, count)."""
    f = Filters.parse(filters)
    run_info(store, run_id)
    dims = [d for d in DIMENSIONS if not f.dimension or d in f.dimension]
    bit = {d: 1 << i for i, d in enumerate(dims)}
    case = "CASE u.dimension " + " ".join(f"WHEN '{d}' THEN {b}" for d, b in bit.items()) + " ELSE 0 END"
    params: list[Any] = [run_id]
    where = ["u.run_id = ?", *filter_conditions(f, "u", params, store)]
    sql = (f"SELECT mask, satmask, count(*) FROM (SELECT sum({case}) AS mask, "
           f"sum(CASE WHEN u.satisfied THEN {case} ELSE 0 END) AS satmask FROM rollup_prompt_satisfaction u "
           f"WHERE {' AND '.join(where)} AND u.dimension != '' GROUP BY u.prompt_id) GROUP BY 1, 2")
    cells = [(int(m), int(s), int(n)) for m, s, n in store.conn.execute(sql, params)]
    upar: list[Any] = [run_id]
    uwhere = ["u.run_id = ?", "u.dimension = ''", *filter_conditions(f, "u", upar, store)]
    untargeted = store.conn.execute(
        f"SELECT count(*) FROM rollup_prompt_satisfaction u WHERE {' AND '.join(uwhere)}", upar).fetchone()[0]

    sat: dict[str, RateCell] = {}
    s: dict[str, float] = {}
    for d, b in bit.items():
        n = sum(c for m, _, c in cells if m & b)
        h = sum(c for m, sm, c in cells if sm & b)
        if n:
            sat[d] = RateCell(n, h, h / n, wilson(h, n))
            s[d] = h / n
    multi = [(m, sm, c) for m, sm, c in cells if bin(m).count("1") >= 2]
    n_multi = sum(c for _, _, c in multi)
    n_trade = sum(c for m, sm, c in multi if sm != 0 and sm != m)
    pairwise: dict[tuple[str, str], RateCell] = {}
    for d1, b1 in bit.items():
        for d2, b2 in bit.items():
            if d1 == d2:
                continue
            both = [(m, sm, c) for m, sm, c in cells if m & b1 and m & b2]
            n = sum(c for _, _, c in both)
            h = sum(c for _, sm, c in both if sm & b1 and not sm & b2)
            base = s[d1] * (1 - s[d2]) if n else None
            rate = h / n if n else None
            pairwise[(d1, d2)] = RateCell(n, h, rate, wilson(h, n), base,
                                          None if rate is None or base is None else rate - base)
    if n_multi == 0:
        reason = ("pairs are not targeted at single dimensions: no trade-off rate" if untargeted and not cells
                  else "no prompt has evaluated pairs for two or more dimensions")
        return TradeOffReport(run_id, None, None, 0, 0, None, None, sat, pairwise, untargeted, reason)
    baseline = 0.0
    for m, _, c in multi:
        ds = [d for d, b in bit.items() if m & b]
        baseline += c * (1 - math.prod(s[d] for d in ds) - math.prod(1 - s[d] for d in ds))
    baseline /= n_multi
    rate = n_trade / n_multi
    return TradeOffReport(run_id, rate, wilson(n_trade, n_multi), n_multi, n_trade, baseline, rate - baseline,
                          sat, pairwise, untargeted, None)


# -- paired comparison --------------------------------------------------------------------------------------
