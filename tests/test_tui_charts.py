"""The Explore charts draw for the width they have: bars keep their value, interval and n whole and their labels
uncut; the trade-off heat map prints a value in every cell, names both axes and has a legend."""

from __future__ import annotations

import re

import pytest

from misalign_tui.core.metrics.vocabulary import METRICS
from misalign_tui.core.views.explore import Cell
from misalign_tui.tui.widgets.charts import BarRow, IntervalBars, TradeOffHeatmap, bar_glyphs, figures


def test_a_bar_shows_its_interval() -> None:
    # value 0.5 on 10 cells: solid to the interval's low end (0.4), band to the value, whisker to the high end
    assert "".join(g for g, _ in bar_glyphs(0.5, 0.4, 0.7, 10)) == "████▓─┤   "
    # no interval: a plain bar; the reference line (chance) shows where the cell is empty
    assert "".join(g for g, _ in bar_glyphs(0.2, None, None, 10, reference=0.5)) == "██   ┊    "
    assert "".join(g for g, _ in bar_glyphs(1.0, 0.9, 1.0, 10)) == "█████████▓"


LONG_DOMAIN = "Non-Violent Unethical Behavior and Other Long Names"
ROWS = [BarRow(LONG_DOMAIN, "model-with-a-long-name-q4_k_m", 0.123, 0.05, 0.26, 48),
        BarRow(LONG_DOMAIN, "model-with-a-long-name-q8_0", 0.9, 0.81, 0.95, 48),
        BarRow("Privacy", "model-with-a-long-name-q4_k_m", None, None, None, 0)]


@pytest.mark.parametrize("width", [40, 60, 80, 118])
def test_bars_keep_figures_and_labels_whole_at_any_width(width: int) -> None:
    chart = IntervalBars()
    chart.replot("AS % by domain", ROWS, ["model-with-a-long-name-q4_k_m", "model-with-a-long-name-q8_0"],
                 METRICS["alignment_score"])
    lines = [line.plain for line in chart._lines(width)]
    text = "\n".join(lines)
    for figure in figures(ROWS):
        assert figure.strip() in text
    assert re.search(r"12\.3 \[5\.0–26\.0\] +n=48", text) and "n/a" in text
    assert LONG_DOMAIN in text  # on a line of its own when it does not fit beside the bars
    assert "coin-flip judge 50 %" in text  # the reference the ┊ marks
    assert all(len(line) <= width for line in lines if "n=" in line or "n/a" in line)  # bar lines fit (no wrap)


def test_the_heat_map_has_values_axes_and_a_legend() -> None:
    dims = ["safety", "value", "cultural"]
    values = {("safety", "value"): 0.267, ("safety", "cultural"): 0.2, ("value", "safety"): 0.133,
              ("value", "cultural"): None, ("cultural", "safety"): 0.02, ("cultural", "value"): 0.5}
    matrix = [[None if a == b else Cell(f"{a} → {b}", "m", values[(a, b)], 0.1, 0.6, 15) for b in dims]
              for a in dims]
    heat = TradeOffHeatmap()
    heat.replot(dims, matrix, "tiny-chat")
    text = "\n".join(line.plain for line in heat._lines())
    assert "satisfies ↓" in text and "fails →" in text and "legend:" in text and "tiny-chat" in text
    for shown in ("26.7", "20.0", "13.3", "2.0", "50.0", "n/a"):
        assert shown in text
    for bucket in ("0–5", "5–15", "15–30", "≥30"):
        assert bucket in text
    empty = TradeOffHeatmap()
    empty.replot([], [], None, "trade-off rate n/a: one dimension left by the filter")
    assert "one dimension left" in "\n".join(line.plain for line in empty._lines())
