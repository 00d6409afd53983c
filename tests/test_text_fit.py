"""Names shrink in narrow places, figures never: the middle ellipsis and the column widths every table of the app
uses (core.text)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from misalign_tui.core.text import cell_width, fit_widths, printable_line, shorten, shorten_all


def test_shorten_keeps_both_ends_around_a_middle_ellipsis() -> None:
    assert shorten("gemma-3-270m-q4_k_m", 14) == "gemma-3…q4_k_m"  # the example of issue 12
    assert shorten("gemma-3-270m-q4_k_m", 40) == "gemma-3-270m-q4_k_m"
    assert shorten("abcdef", 1) == "…" and shorten("abcdef", 0) == ""
    assert shorten("日本語のモデル名前", 7) == "日本…前"  # wide characters count two cells


def test_shorten_all_keeps_names_of_one_family_apart() -> None:
    names = ["llama-3-8b-instruct-q4_k_m", "llama-3-8b-instruct-q8_0", "llama-3-8b-instruct-f16"]
    short = shorten_all(names, 12)
    assert len(set(short)) == 3 and all(cell_width(s) <= 12 for s in short)
    # the plain middle cut would give the same start and end for the two; the tail grows until they differ
    twins = ["model-aaaa-x-end", "model-bbbb-x-end"]
    assert shorten(twins[0], 11) == shorten(twins[1], 11)
    assert len(set(shorten_all(twins, 11))) == 2


@given(st.text(min_size=0, max_size=40), st.integers(min_value=0, max_value=50))
@example("\x1f", 0)  # found by Hypothesis: a name of no width in a zero-width column stays whole
def test_shorten_always_fits(name: str, width: int) -> None:
    out = shorten(name, width)
    assert cell_width(out) <= max(width, 0)
    if cell_width(name) <= width:
        assert out == name


def test_fit_widths_shrinks_names_only_widest_first() -> None:
    # a name column of 40, a second of 30, then figures: the figures keep their widths
    assert fit_widths([40, 30, 6, 13, 5], [True, True, False, False, False], 50) == [13, 13, 6, 13, 5]
    assert fit_widths([40, 6, 13, 5], [True, False, False, False], 40) == [16, 6, 13, 5]
    assert fit_widths([8, 6], [True, False], 80) == [8, 6]  # room to spare: natural widths
    # too narrow for the figures: names stop at their minimum and the figures stay whole (the table scrolls)
    assert fit_widths([10, 10, 60], [True, True, False], 50) == [6, 6, 60]
    assert fit_widths([10, 60], [True, False], 50, minimum=[3, 60]) == [3, 60]


@given(st.lists(st.tuples(st.integers(1, 60), st.booleans()), min_size=1, max_size=8), st.integers(0, 200))
def test_fit_widths_never_touches_a_figure(columns: list[tuple[int, bool]], available: int) -> None:
    natural = [n for n, _ in columns]
    shrinkable = [s for _, s in columns]
    widths = fit_widths(natural, shrinkable, available)
    for w, n, s in zip(widths, natural, shrinkable, strict=True):
        assert w == n if not s else min(n, 6) <= w <= n
    if sum(widths) > available:  # over budget only when every name is at its minimum
        assert all(w == min(n, 6) for w, n, s in zip(widths, natural, shrinkable, strict=True) if s)


def test_printable_line_shows_tab_and_newline_too() -> None:
    assert printable_line("a\tb\nc\x1b[2J") == "a␉b␤c␛[2J"
