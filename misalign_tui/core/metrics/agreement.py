"""Agreement between raters (reviewers, or reviewers and a model): Cohen's κ, Krippendorff's α (nominal), the
reviewers' majority, and their 95 % intervals (definitions in docs/measures.md, "Review agreement").

- **Cohen's κ** (two raters, the units both rated): κ = (p_o − p_e) / (1 − p_e), p_o the share of agreeing
  units, p_e = Σ_c p1(c) p2(c) from each rater's own category shares.
- **Krippendorff's α** (any number of raters, missing ratings allowed; nominal metric): α = 1 − D_o / D_e from
  the coincidence matrix o_ck = Σ_u (pairs of values c, k within unit u) / (m_u − 1) over the units with two
  or more values, n_c = Σ_k o_ck, n = Σ_c n_c: α = 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k.
- Both are undefined (None, shown "n/a") when chance agreement is total: every rating in one category.

Intervals: a **percentile bootstrap over prompts** (clusters): resample prompts with replacement, keep every
rated unit of a drawn prompt with all its ratings, recompute the statistic; replicates where it is undefined
are dropped. Why this one: it is the resampling unit of every other bootstrap in this project (AS over
prompts), it keeps the two responses of a pair and a reviewer's ratings of them together (they are not
independent), it serves κ and α alike with missing ratings, and it needs no normal approximation — the
asymptotic standard error of κ is unreliable at the tens of items a review holds and near κ = 1, and
Krippendorff's own bootstrap resamples pairs of values as if they were independent. With very few prompts
(under about ten) a percentile interval is too narrow; n is printed beside every figure.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from misalign_tui.core.metrics.statistics import percentile_interval

BOOTSTRAP = 2000


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """κ of two raters over the units both rated; None when there is no unit or p_e is 1."""
    cats = sorted({v for p in pairs for v in p}, key=str)
    if not pairs:
        return None
    table = _table(pairs, cats)
    return _kappa_from_tables(table[None, :, :])[0]


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Nominal α over units given as the values their raters gave (None or absent: no rating); None when no
    unit has two values or every value is the same category."""
    cats = sorted({v for u in units for v in u if v is not None}, key=str)
    if not cats:
        return None
    return _alpha_from_coincidences(_coincidences(units, cats)[None, :, :])[0]


def majority(values: Sequence[Hashable]) -> Hashable | None:
    """The value given strictly more often than any other; None on a tie or with no value."""
    counts: dict[Hashable, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    if not counts:
        return None
    ranked = sorted(counts.values(), reverse=True)
    if len(ranked) > 1 and ranked[0] == ranked[1]:
        return None
    return max(counts, key=lambda k: counts[k])


@dataclass(frozen=True)
class Agreement:
    """One agreement figure with its interval: ``statistic`` says which (κ or α), ``units`` how many rated
    units entered it, ``clusters`` over how many prompts its bootstrap resampled."""

    statistic: str                  # "kappa" | "alpha"
    value: float | None
    ci: tuple[float, float] | None
    units: int
    clusters: int
    raters: int
    observed: float | None          # share of agreeing pairs of ratings (p_o)
    note: str = ""

    @property
    def symbol(self) -> str:
        return "κ" if self.statistic == "kappa" else "α"


def rater_agreement(ratings: Mapping[Any, Mapping[Any, Any]], clusters: Mapping[Any, Any],
                    *, bootstrap: int = BOOTSTRAP, seed: int = 0) -> Agreement | None:
    """Agreement among the raters of ``ratings`` (unit → rater → value): Cohen's κ for two raters (the units
    both rated), Krippendorff's α for three or more; None with fewer than two raters. ``clusters`` maps each
    unit to its prompt for the bootstrap."""
    raters = sorted({r for by in ratings.values() for r in by}, key=str)
    if len(raters) < 2:
        return None
    cats = sorted({v for by in ratings.values() for v in by.values()}, key=str)
    if len(raters) == 2:
        a, b = raters
        units = [u for u, by in ratings.items() if a in by and b in by]
        per_unit = [_table([(ratings[u][a], ratings[u][b])], cats) for u in units]
        return _with_interval("kappa", units, per_unit, clusters, _kappa_from_tables, len(raters), bootstrap, seed,
                              _observed_kappa)
    units = [u for u, by in ratings.items() if len(by) >= 2]
    per_unit = [_coincidences([list(ratings[u].values())], cats) for u in units]
    return _with_interval("alpha", units, per_unit, clusters, _alpha_from_coincidences, len(raters), bootstrap, seed,
                          _observed_alpha)


def paired_agreement(pairs: Mapping[Any, tuple[Any, Any]], clusters: Mapping[Any, Any], *,
                     bootstrap: int = BOOTSTRAP, seed: int = 0) -> Agreement:
    """Cohen's κ between two series given per unit as (first, second) — e.g. a model's verdict and the
    reviewers' majority — with the same bootstrap over prompts."""
    cats = sorted({v for p in pairs.values() for v in p}, key=str)
    units = list(pairs)
    per_unit = [_table([pairs[u]], cats) for u in units]
    return _with_interval("kappa", units, per_unit, clusters, _kappa_from_tables, 2, bootstrap, seed, _observed_kappa)


# -- vectorised forms: a stack of tables (replicates × C × C) ------------------------------------------------

def _table(pairs: Sequence[tuple[Hashable, Hashable]], cats: Sequence[Hashable]) -> np.ndarray:
    index = {c: i for i, c in enumerate(cats)}
    t = np.zeros((len(cats), len(cats)))
    for x, y in pairs:
        t[index[x], index[y]] += 1
    return t


def _coincidences(units: Sequence[Sequence[Hashable | None]], cats: Sequence[Hashable]) -> np.ndarray:
    index = {c: i for i, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for unit in units:
        values = [index[v] for v in unit if v is not None]
        m = len(values)
        if m < 2:
            continue
        counts = np.bincount(values, minlength=len(cats)).astype(float)
        # ordered pairs of distinct raters: c == k gives n_c (n_c - 1), c != k gives n_c n_k
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    return o


def _kappa_from_tables(tables: np.ndarray) -> list[float | None]:
    n = tables.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(tables, axis1=1, axis2=2) / n
        pe = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / (n * n)
        kappa = (po - pe) / (1 - pe)
    undefined = (n == 0) | np.isclose(pe, 1.0)
    return [None if bad else float(k) for k, bad in zip(kappa, undefined, strict=True)]


def _alpha_from_coincidences(o: np.ndarray) -> list[float | None]:
    nc = o.sum(axis=2)
    n = nc.sum(axis=1)
    off_o = o.sum(axis=(1, 2)) - np.trace(o, axis1=1, axis2=2)
    off_e = n * n - (nc * nc).sum(axis=1)  # Σ_{c≠k} n_c n_k
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1 - (n - 1) * off_o / off_e
    undefined = (n < 2) | np.isclose(off_e, 0.0)
    return [None if bad else float(a) for a, bad in zip(alpha, undefined, strict=True)]


def _observed_kappa(t: np.ndarray) -> float | None:
    n = t.sum()
    return float(np.trace(t) / n) if n else None


def _observed_alpha(o: np.ndarray) -> float | None:
    n = o.sum()
    return float(np.trace(o) / n) if n else None


def _with_interval(statistic: str, units: Sequence[Hashable], per_unit: Sequence[np.ndarray],
                   clusters: Mapping[Any, Any], estimate: Callable[[np.ndarray], list[float | None]], raters: int,
                   bootstrap: int, seed: int, observed: Callable[[np.ndarray], float | None]) -> Agreement:
    size = per_unit[0].shape if per_unit else (0, 0)
    total = np.sum(per_unit, axis=0) if per_unit else np.zeros(size)
    value = estimate(total[None, :, :])[0] if per_unit else None
    groups: dict[Hashable, np.ndarray] = {}
    for u, m in zip(units, per_unit, strict=True):
        key = clusters.get(u, u)
        groups[key] = groups[key] + m if key in groups else m.copy()
    ci = None
    note = ""
    if value is not None and bootstrap > 0 and len(groups) > 1:
        stacked = np.stack(list(groups.values())).reshape(len(groups), -1)
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(groups), np.full(len(groups), 1 / len(groups)), size=bootstrap)
        reps = (draws @ stacked).reshape(bootstrap, *size)
        values = np.array([np.nan if v is None else v for v in estimate(reps)])
        ci = percentile_interval(values)
        dropped = int(np.isnan(values).sum())
        if dropped:
            note = f"{dropped} of {bootstrap} resamples undefined (one category) and left out"
    elif value is None and per_unit:
        note = "undefined: every rating is in one category"
    return Agreement(statistic, value, ci, len(units), len(groups), raters,
                     observed(total) if per_unit else None, note)
