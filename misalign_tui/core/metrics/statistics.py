"""The statistics behind every interval and test (definitions in docs/measures.md): Wilson intervals,
McNemar's exact test, Holm's correction, the Alignment Score's harmonic mean and bootstrap percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054
def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for hits/n (95 % by default); None when n is 0."""
    if n <= 0:
        return None
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p: the discordant items split as Binomial(a_only + b_only, 1/2)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    i = np.arange(k, dtype=np.float64)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log(n - i) - np.log(i + 1))))  # log C(n, j), j = 0..k
    top = log_terms.max()
    log_cdf = top + math.log(float(np.exp(log_terms - top).sum())) - n * math.log(2)
    return min(1.0, 2 * math.exp(log_cdf))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def harmonic_alignment(coverage: float | None, ffr: float | None) -> float | None:
    """Alignment Score: harmonic mean of Coverage and 1 − FFR (0 when both are 0)."""
    if coverage is None or ffr is None:
        return None
    spec = 1.0 - ffr
    return 0.0 if coverage + spec == 0 else 2 * coverage * spec / (coverage + spec)


def ratio(hits: int, n: int) -> float | None:
    return hits / n if n else None




def percentile_interval(values: np.ndarray) -> tuple[float, float] | None:
    """The 95 % percentile interval of bootstrap replicates (NaN replicates dropped); None when none is left."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return (float(lo), float(hi))
