"""How the app writes a figure, its interval and its n: one spelling for every screen.

Percentages with one decimal and no sign (the column or the label says %), ``n/a`` for a figure that does not
exist (never 0), the 95 % interval as ``low–high``.
"""

from __future__ import annotations


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def interval(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def p_short(p: float | None) -> str:
    """A p-value in two significant digits, below 0.001 as ``4.9e-4`` (narrow enough for an 80-column table)."""
    if p is None:
        return "-"
    if p >= 1e-3:
        return f"{p:.2g}"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def figure(label: str, value: float | None, ci: tuple[float, float] | None, n: int | None) -> str:
    """One figure in a phrase: ``AS 54.6% [45.0–63.1] n=130`` (pieces that do not exist are left out)."""
    if value is None:
        return f"{label} n/a".strip()
    parts = [f"{label} {pct(value)}%".strip()]
    if ci is not None:
        parts.append(f"[{interval(ci)}]")
    if n:
        parts.append(f"n={n:,}")
    return " ".join(parts)
