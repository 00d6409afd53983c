"""The measures of docs/measures.md on a store whose right answers are worked out by hand (see metrics_fixtures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from misalign_tui.core import metrics
from misalign_tui.core.errors import UserError
from misalign_tui.core.io.native import PairRecord, PromptRecord
from misalign_tui.core.runs.catalog import runs_to_show
from misalign_tui.core.store import rebuild_rollups
from tests.metrics_fixtures import (
    CULTURAL,
    SAFETY,
    VALUE,
    add_benchmark,
    add_judge_results,
    add_run,
    hand_store,
    new_store,
    responses_by_text,
)


@pytest.fixture
def hand(tmp_path: Path):
    store, runs = hand_store(tmp_path / "hand.db")
    yield store, runs
    store.close()


def by_group(rows: list[metrics.MetricRow]) -> dict[str | None, metrics.MetricRow]:
    return {r.group: r for r in rows}


def test_wilson_mcnemar_holm_known_values() -> None:
    lo, hi = metrics.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert metrics.wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert metrics.wilson(0, 0) is None
    assert metrics.mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert metrics.mcnemar_exact(1, 2) == 1.0  # P(X <= 1 | n=3) = 4/8, doubled
    assert metrics.mcnemar_exact(3, 3) == 1.0
    assert metrics.mcnemar_exact(2, 20) == pytest.approx(2 * (1 + 22 + 231) / 2**22)
    assert metrics.mcnemar_exact(40_000, 41_000) < 0.001  # large counts stay finite
    assert metrics.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert metrics.harmonic_alignment(1.0, 1.0) == 0.0  # always "misaligned": AS 0
    assert metrics.harmonic_alignment(0.0, 0.0) == 0.0  # always "aligned": AS 0


def test_judge_profile_overall_and_template_spread(hand) -> None:
    store, runs = hand
    (row,) = metrics.profile(store, runs["a"])
    assert (row.misaligned, row.misaligned_flagged, row.aligned, row.aligned_flagged) == (5, 4, 5, 1)
    assert row.coverage == 0.8 and row.ffr == 0.2 and row.alignment_score == pytest.approx(0.8)
    assert row.coverage_ci == metrics.wilson(4, 5)
    # template 0: coverage 4/5, FFR 1/5 -> AS 0.8; template 1: coverage 5/5, FFR 0 -> AS 1.0
    assert [(t.template, t.coverage, t.ffr) for t in row.templates] == [(0, 0.8, 0.2), (1, 1.0, 0.0)]
    assert (row.template_as_min, row.template_as_max) == (pytest.approx(0.8), 1.0)
    assert row.template_as_mean == pytest.approx(0.9)
    assert row.template_as_std == pytest.approx(math.sqrt(0.02))
    assert (row.pairs, row.pairs_satisfied, row.prompt_dimensions, row.satisfied) == (5, 3, 5, 3)
    assert row.preference_accuracy is None


def test_judge_profile_by_dimension_domain_type(hand) -> None:
    store, runs = hand
    dims = by_group(metrics.profile(store, runs["a"], group_by="dimension"))
    assert list(dims) == ["safety", "value", "cultural"]
    assert dims["safety"].alignment_score == 1.0
    assert dims["value"].alignment_score == 0.0  # coverage 1, FFR 1
    assert dims["cultural"].alignment_score == pytest.approx(2 / 3)
    assert (dims["value"].prompt_dimensions, dims["value"].satisfied) == (1, 0)
    doms = by_group(metrics.profile(store, runs["a"], group_by="domain"))
    assert set(doms) == {SAFETY, VALUE, CULTURAL}
    # a response counts under each of its prompt's domains
    assert (doms[SAFETY].misaligned, doms[SAFETY].aligned) == (4, 4)
    assert doms[SAFETY].alignment_score == pytest.approx(6 / 7)
    assert doms[VALUE].alignment_score == pytest.approx(2 / 3)
    assert doms[CULTURAL].alignment_score == pytest.approx(0.8)
    types = by_group(metrics.profile(store, runs["a"], group_by="semantic_type"))
    assert list(types) == ["object", "attribute", "relation"]
    assert types["relation"].alignment_score == pytest.approx(2 / 3)
    assert types["object"].alignment_score == 0.0
    assert types["attribute"].alignment_score == 1.0


def test_filters_count_each_response_once(hand) -> None:
    store, runs = hand
    (row,) = metrics.profile(store, runs["a"], filters={"domain": [SAFETY, CULTURAL]})
    assert (row.misaligned, row.aligned) == (5, 5)  # not 4 + 3: micro-average over responses
    assert row.alignment_score == pytest.approx(0.8)
    (row,) = metrics.profile(store, runs["a"], filters={"domain": CULTURAL})
    assert (row.misaligned, row.misaligned_flagged) == (3, 2)
    (row,) = metrics.profile(store, runs["a"], filters={"dimension": ["safety", "value"], "type": ["relation"]})
    assert (row.misaligned, row.aligned, row.aligned_flagged) == (2, 2, 1)
    with pytest.raises(UserError, match="domain=Nowhere"):
        metrics.profile(store, runs["a"], filters={"domain": ["Nowhere"]})
    with pytest.raises(UserError, match="colour"):
        metrics.profile(store, runs["a"], filters={"colour": ["x"]})


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate(hand) -> None:
    store, runs = hand
    (r1,) = metrics.profile(store, runs["a"], bootstrap=500, seed=3)
    (r2,) = metrics.profile(store, runs["a"], bootstrap=500, seed=3)
    assert r1.alignment_score_ci == r2.alignment_score_ci
    lo, hi = r1.alignment_score_ci
    assert lo <= r1.alignment_score <= hi and lo < hi
    lo, hi = r1.template_as_mean_ci
    assert lo <= 0.9 <= hi


def test_bootstrap_intervals_do_not_depend_on_the_memory_chunk(hand, monkeypatch) -> None:
    """The resamples are drawn in chunks to bound memory; the interval must be the same whatever the chunk."""
    import importlib

    profile = importlib.import_module("misalign_tui.core.metrics.profile")
    store, runs = hand
    whole = metrics.profile(store, runs["a"], group_by="domain", bootstrap=300, seed=5)
    monkeypatch.setattr(profile, "BOOTSTRAP_CHUNK_CELLS", 7)  # a few resamples (or one) per chunk
    chunked = metrics.profile(store, runs["a"], group_by="domain", bootstrap=300, seed=5)
    assert [(r.alignment_score_ci, r.template_as_mean_ci) for r in chunked] == \
        [(r.alignment_score_ci, r.template_as_mean_ci) for r in whole]
    assert all(r.alignment_score_ci is not None for r in whole)


def test_trade_offs_by_hand(hand) -> None:
    store, runs = hand
    tr = metrics.trade_offs(store, runs["a"])
    # P1: safety satisfied, value failed -> trade-off; P3: safety and cultural satisfied -> none.
    assert (tr.n_prompts, tr.n_trade_off, tr.rate) == (2, 1, 0.5)
    assert {d: c.rate for d, c in tr.satisfaction.items()} == {"safety": 1.0, "value": 0.0, "cultural": 0.5}
    assert tr.baseline == pytest.approx(0.75)  # P1: 1 - 1*0 - 0*1 = 1; P3: 1 - 0.5 - 0 = 0.5
    assert tr.excess == pytest.approx(-0.25)
    assert tr.ci == metrics.wilson(1, 2)
    sv = tr.pairwise[("safety", "value")]
    assert (sv.n, sv.hits, sv.rate, sv.baseline) == (1, 1, 1.0, 1.0)
    assert tr.pairwise[("value", "safety")].rate == 0.0
    assert tr.pairwise[("safety", "cultural")].baseline == pytest.approx(0.5)
    assert tr.pairwise[("value", "cultural")].rate is None  # no prompt carries both
    assert metrics.trade_offs(store, runs["a"], {"dimension": ["safety", "cultural"]}).rate == 0.0
    assert metrics.trade_offs(store, runs["a"], {"domain": [VALUE]}).n_prompts == 1


def test_preference_and_generate_runs(hand) -> None:
    store, runs = hand
    (row,) = metrics.profile(store, runs["c"])
    assert (row.pairs, row.pairs_satisfied, row.preference_accuracy) == (5, 3, 0.6)
    assert "preference_accuracy" in row.as_dict() and "coverage" not in row.as_dict()
    tr = metrics.trade_offs(store, runs["c"])
    assert (tr.rate, tr.n_prompts) == (1.0, 2)  # P1: safety yes value no; P3: safety yes cultural no
    # generate: mean of the judge's P over its two templates < 0.5 satisfies the dimension
    (row,) = metrics.profile(store, runs["d"])
    assert (row.prompt_dimensions, row.satisfied) == (5, 3)
    assert metrics.trade_offs(store, runs["d"]).rate == 1.0


def test_untargeted_pairs_have_no_trade_off_rate(tmp_path: Path) -> None:
    store = new_store(tmp_path / "u.db")
    bid = add_benchmark(store, "untargeted", [
        PromptRecord("q1", "a prompt", "object", [SAFETY, VALUE], [PairRecord(None, "x1", "y1")]),
        PromptRecord("q2", "b prompt", "object", [CULTURAL], [PairRecord(None, "x2", "y2")]),
    ])
    run = add_run(store, "m", bid, "judge")
    add_judge_results(store, run, responses_by_text(store, bid),
                      {"x1": (0.25,), "y1": (0.75,), "x2": (0.75,), "y2": (0.75,)})
    tr = metrics.trade_offs(store, run)
    assert tr.rate is None and tr.untargeted_units == 2
    assert "not targeted at single dimensions" in tr.reason
    (row,) = metrics.profile(store, run, group_by="dimension")
    assert row.group == metrics.UNTARGETED and row.alignment_score == pytest.approx(2 / 3)


def test_compare_mcnemar_holm(hand) -> None:
    store, runs = hand
    (row,) = metrics.compare(store, runs["a"], runs["b"])
    # A right on 8 of 10, B on 9; A alone right on a1, B alone on a2 and m3.
    assert (row.n_items, row.a_only, row.b_only) == (10, 1, 2)
    assert row.accuracy_a == 0.8 and row.accuracy_b == 0.9
    assert row.value_a == pytest.approx(0.8) and row.delta == pytest.approx(0.8 - row.value_b)
    assert row.p_value == 1.0 and row.verdict is None
    rows = metrics.compare(store, runs["a"], runs["b"], group_by="dimension")
    assert [r.group for r in rows] == ["safety", "value", "cultural"]
    assert all(r.p_holm >= r.p_value for r in rows)
    with pytest.raises(UserError, match="different methods"):
        metrics.compare(store, runs["a"], runs["c"])


def test_compare_says_who_wins_only_when_significant(tmp_path: Path) -> None:
    store = new_store(tmp_path / "w.db")
    records = [PromptRecord(f"k{i}", f"prompt {i}", "object", [SAFETY], [PairRecord("safety", f"a{i}", f"m{i}")])
               for i in range(15)]
    bid = add_benchmark(store, "wins", records)
    ids = responses_by_text(store, bid)
    good = {t: ((0.75,) if t.startswith("m") else (0.25,)) for t in ids}
    bad = {t: (0.75,) for t in ids}  # flags everything: wrong on all 15 aligned responses
    ra, rb = add_run(store, "good", bid, "judge"), add_run(store, "bad", bid, "judge")
    add_judge_results(store, ra, ids, good)
    add_judge_results(store, rb, ids, bad)
    (row,) = metrics.compare(store, ra, rb)
    assert (row.a_only, row.b_only, row.verdict) == (15, 0, "a")
    assert row.p_value == pytest.approx(2 / 2**15)
    assert row.value_b == 0.0  # a judge that always says "misaligned" scores AS 0


def test_runs_to_show_and_rebuild_agree(hand) -> None:
    store, runs = hand
    latest = runs_to_show(store).runs
    assert [(r.model, r.id) for r in latest] == [("model-a", runs["a"]), ("model-b", runs["b"]),
                                                  ("model-c", runs["c"]), ("model-d", runs["d"])]
    assert not latest[1].complete
    before = store.conn.execute("SELECT * FROM rollup_counts ORDER BY 1, 2, 3, 4, 5, 6, 7").fetchall()
    rebuild_rollups(store.conn)
    after = store.conn.execute("SELECT * FROM rollup_counts ORDER BY 1, 2, 3, 4, 5, 6, 7").fetchall()
    assert [tuple(r) for r in before] == [tuple(r) for r in after]


def test_results_are_write_once(hand) -> None:
    store, runs = hand
    rid = store.conn.execute("SELECT response_id FROM judge_results WHERE run_id = ? LIMIT 1",
                             (runs["a"],)).fetchone()[0]
    (before,) = metrics.profile(store, runs["a"])
    store.conn.execute("INSERT OR REPLACE INTO judge_results(run_id, response_id, template, p_misaligned, flagged) "
                       "VALUES (?, ?, 0, 0.99, 1)", (runs["a"], rid))
    store.conn.execute("INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged) "
                       "VALUES (?, ?, 0, 0.99, 1)", (runs["a"], rid))
    assert metrics.profile(store, runs["a"]) == [before]
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError, match="write-once"):
        store.conn.execute("UPDATE judge_results SET flagged = 1 WHERE run_id = ?", (runs["a"],))


def test_deleting_a_run_deletes_its_rollups(hand) -> None:
    store, runs = hand
    store.conn.execute("DELETE FROM runs WHERE id = ?", (runs["b"],))
    for table in ("rollup_counts", "rollup_judge_items", "rollup_pair_outcomes", "rollup_prompt_satisfaction"):
        assert store.conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (runs["b"],)).fetchone()[0] == 0


def test_report_without_runs_says_what_to_do(cli_run) -> None:
    res = cli_run("report", "--format", "json")
    assert res.exit_code == 2 and "no runs yet" in res.stderr


def test_report_on_hand_store(cli_run, home: Path) -> None:
    from misalign_tui.core.workspace import open_workspace

    ws = open_workspace(str(home)).ensure()
    store, runs = hand_store(ws.db_path)
    store.close()
    res = cli_run("report", "--format", "json", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    by_model = {r["model"]: r for r in doc["runs"]}
    a = by_model["model-a"]
    assert a["coverage"] == 0.8 and a["ffr"] == 0.2 and a["alignment_score"] == pytest.approx(0.8)
    assert a["trade_off_rate"] == 0.5 and a["trade_off_baseline"] == pytest.approx(0.75)
    assert a["trade_off_excess"] == pytest.approx(-0.25)
    assert len(a["overall"]["alignment_score_ci"]) == 2 and a["complete"] is True
    assert by_model["model-b"]["status"] == "interrupted" and by_model["model-b"]["complete"] is False
    assert by_model["model-c"]["preference_accuracy"] == 0.6 and "coverage" not in by_model["model-c"]
    assert [g["group"] for g in a["groups"]] == ["safety", "value", "cultural"]
    (cmp,) = doc["comparisons"]  # the two judge runs
    assert {cmp["model_a"], cmp["model_b"]} == {"model-a", "model-b"}
    res = cli_run("report", "--model", "model-a", "--group-by", "domain", "--filter", f"domain={SAFETY}",
                  "--format", "csv")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("run_id,model,method") and len(lines) == 3  # header, overall, one domain
    res = cli_run("report", "--run", str(runs["a"]), "--run", str(runs["b"]))
    assert res.exit_code == 0, res.output
    assert "Coverage" in res.stdout and "Trade-off rate: 50.0%" in res.stdout and "McNemar" in res.stdout
    res = cli_run("report", "--filter", "colour=red")
    assert res.exit_code == 2 and "colour" in res.stderr
