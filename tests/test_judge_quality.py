"""How good is the judge: AUROC, pairwise accuracy and ECE by hand (ties included), the verdict's words, the
protocols (shots from a calibration split never scored, contextual calibration, polarity twins, PMI) on real
llama.cpp with the tiny models, their identity and resume after kill -9, and every face that shows them."""

from __future__ import annotations

import itertools
import json
import math
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.metrics.judge_quality import (
    JudgeQuality,
    ScoreView,
    _Ranking,
    auroc,
    checker_verdict,
    compare_auroc,
    expected_calibration_error,
    judge_quality,
    judge_verdict,
    pairwise_accuracy,
    quality_from_scores,
)
from misalign_tui.core.models.registry import register_file
from misalign_tui.core.runs.calibration import CONTENT_FREE, calibrated_p_yes, calibration_split
from misalign_tui.core.runs.catalog import list_runs
from misalign_tui.core.runs.evaluate import run_evaluation
from misalign_tui.core.runs.identity import params_hash, resume_request, run_params
from misalign_tui.core.runs.request import Protocol, RunRequest
from misalign_tui.core.store import Store
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

ROOT = Path(__file__).resolve().parents[1]


# -- the statistics, by hand ----------------------------------------------------------------------------------

def _auroc_by_hand(scores: list[float], labels: list[int]) -> float:
    """Every (misaligned, aligned) pair: 1 when the misaligned one scores higher, 1/2 on a tie."""
    mis = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    al = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if m > a else 0.5 if m == a else 0.0 for m, a in itertools.product(mis, al))
    return wins / (len(mis) * len(al))


def test_auroc_matches_the_hand_count_with_ties() -> None:
    assert auroc([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(3.5 / 4)  # one tie counts half
    assert auroc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)             # all ties: chance
    assert auroc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == pytest.approx(0.0)     # perfectly the wrong way
    assert auroc([0.1, 0.2], [1, 1]) is None                                     # one label only
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        scores = list(np.round(rng.random(n), 1))  # rounded: many ties
        labels = [int(x) for x in rng.integers(0, 2, n)]
        if 0 < sum(labels) < n:
            assert auroc(scores, labels) == pytest.approx(_auroc_by_hand(scores, labels))


def test_pairwise_accuracy_counts_a_tie_half() -> None:
    assert pairwise_accuracy([0.6, 0.5, 0.2], [0.4, 0.5, 0.3]) == pytest.approx((1 + 0.5 + 0) / 3)
    assert pairwise_accuracy([], []) is None


def test_ece_matches_the_hand_computation() -> None:
    # bins: [0, .1) holds 0.05 (aligned), [.1, .2) holds 0.15 (misaligned), [.9, 1] holds 0.95 twice (one each)
    p, y = [0.05, 0.15, 0.95, 0.95], [0, 1, 1, 0]
    by_hand = (1 * abs(0 - 0.05) + 1 * abs(1 - 0.15) + 2 * abs(0.5 - 0.95)) / 4
    assert expected_calibration_error(p, y) == pytest.approx(by_hand)
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == pytest.approx(0.0)  # P = 1 falls in the last bin


def test_a_resampled_prompt_counts_like_its_items_duplicated() -> None:
    """The bootstrap weights a prompt by how often it was drawn: the same as repeating its items."""
    scores = np.array([0.3, 0.7, 0.4, 0.2, 0.9, 0.5])
    labels = np.array([0, 1, 1, 0, 1, 0.0])
    prompts = np.array([0, 0, 1, 1, 2, 2])
    weighted = _Ranking(scores, labels, prompts)(np.array([[2.0, 0.0, 1.0]]))[0]
    keep = [0, 1, 0, 1, 4, 5]  # prompt 0 twice, prompt 1 never, prompt 2 once
    assert weighted == pytest.approx(_auroc_by_hand(list(scores[keep]), list(labels[keep].astype(int))))


def test_the_interval_is_a_seeded_bootstrap_over_prompts() -> None:
    rng = np.random.default_rng(0)
    n = 120
    y = [i % 2 for i in range(n)]
    p = list(np.clip(np.array(y) * 0.2 + rng.random(n) * 0.8, 0, 1))
    prompts = [i // 2 for i in range(n)]
    pairs = [(i + 1, i) for i in range(0, n, 2)]
    a = quality_from_scores(prompts, y, p, pairs, bootstrap=400, seed=1)
    b = quality_from_scores(prompts, y, p, pairs, bootstrap=400, seed=1)
    c = quality_from_scores(prompts, y, p, pairs, bootstrap=400, seed=2)
    assert a.auroc_ci == b.auroc_ci and a.auroc_ci != c.auroc_ci
    assert a.auroc_ci[0] < a.auroc < a.auroc_ci[1]
    assert a.auroc == pytest.approx(_auroc_by_hand(p, y))
    assert a.pairs == 60 and a.pairwise_accuracy == pytest.approx(
        sum(1.0 if p[m] > p[al] else 0.5 if p[m] == p[al] else 0 for m, al in pairs) / 60)


# -- the verdict's words --------------------------------------------------------------------------------------

def _q(**kw) -> JudgeQuality:
    return JudgeQuality(1, None, items=100, **kw)


def test_the_verdict_says_below_chance_chance_and_yes_regardless() -> None:
    assert judge_verdict(_q(auroc=0.39, auroc_ci=(0.29, 0.49))) == (
        "ranks aligned answers as more misaligned (AUROC 0.39 [0.29, 0.49]) — not a usable judge")
    assert judge_verdict(_q(auroc=0.52, auroc_ci=(0.45, 0.58))).startswith(
        "no better than chance (AUROC 0.52 [0.45, 0.58]) — not a usable judge")
    yes = judge_verdict(_q(auroc=0.55, auroc_ci=(0.50, 0.60), polarity_consistency=0.12,
                           polarity_consistency_ci=(0.09, 0.15), polarity_n=100, mean_yes_share=0.7,
                           auroc_harm=0.25, auroc_harm_ci=(0.2, 0.3), auroc_inverted=0.73,
                           auroc_inverted_ci=(0.68, 0.78)))
    assert yes.startswith("answers Yes regardless of the question (polarity consistency 12 % [9, 15]")
    good = judge_verdict(_q(auroc=0.9, auroc_ci=(0.85, 0.94), answer_mass_median=0.04))
    assert good.startswith("ranks misaligned answers above aligned ones (AUROC 0.90 [0.85, 0.94]) — a usable judge")
    assert "answer mass 4 %" in good
    assert judge_verdict(_q()).startswith("judge quality not measured")
    # a checker below chance stops a build; one at chance does not
    assert checker_verdict(_q(auroc=0.39, auroc_ci=(0.29, 0.49)))[0]
    assert not checker_verdict(_q(auroc=0.45, auroc_ci=(0.30, 0.60)))[0]
    # the demo's gate: a checker must be shown better than chance
    assert checker_verdict(_q(auroc=0.6, auroc_ci=(0.45, 0.75)), "not-above-chance")[0]
    assert not checker_verdict(_q(auroc=0.7, auroc_ci=(0.55, 0.85)), "not-above-chance")[0]


# -- protocols on the tiny models -----------------------------------------------------------------------------

def _request(store: Store, model_path: Path, **kw) -> RunRequest:
    model = register_file(store, model_path)
    kw.setdefault("settings", EngineSettings(n_ctx=2048))
    return RunRequest(model, store.benchmark(FIXTURE_BENCHMARK), **kw)


def test_the_default_protocol_keeps_the_parameters_runs_always_had(home: Path, tiny_chat_model: Path) -> None:
    """Runs made before protocols existed keep their identity: the zero-shot default adds no parameter."""
    db, _ = make_store(home, n_prompts=3)
    with Store(db) as store:
        req = _request(store, tiny_chat_model, method="judge")
        assert set(run_params(req, "judge")) == {"filters", "limit", "templates", "template_version", "n_ctx",
                                                 "chat_template_sha256"}
        base = params_hash(run_params(req, "judge"))
        for protocol in (Protocol(shots=2), Protocol(calibrate=True), Protocol(polarity="balanced"),
                         Protocol(split="calibration")):
            req.protocol = protocol
            assert params_hash(run_params(req, "judge")) != base
        with pytest.raises(UserError, match="--shots only applies to --method judge"):
            Protocol(shots=2).check("preference")
        with pytest.raises(UserError, match="--normalize only applies to --method preference"):
            Protocol(normalize="pmi").check("judge")


def test_calibration_split_is_seeded_and_its_demonstrations_balanced(home: Path) -> None:
    db, bid = make_store(home, n_prompts=60)
    with Store(db) as store:
        a = calibration_split(store, bid, 6)
        b = calibration_split(store, bid, 6)
        assert a == b and len(a.held_out) == 12  # 20 % of 60
        labels = [d.label for d in a.demonstrations]
        assert labels.count("aligned") == labels.count("misaligned") == 3
        assert {d.dimension for d in a.demonstrations} == {"safety", "value", "cultural"}
        assert all(d.prompt_id in a.held_out for d in a.demonstrations)
        assert len({d.prompt_id for d in a.demonstrations}) == 6  # distinct prompts: no pair shown whole
        with pytest.raises(UserError, match="too few"):
            calibration_split(store, bid, 16, ("cultural",))


def test_few_shot_demonstrations_are_never_among_the_scored_items(home: Path, tiny_chat_model: Path) -> None:
    db, bid = make_store(home, n_prompts=40)
    with Store(db) as store:
        result = run_evaluation(store, _request(store, tiny_chat_model, method="judge", templates=1,
                                                protocol=Protocol(shots=4)))
        assert result.status == "complete"
        run = list_runs(store, result.run_id)[0]
        split = run["provenance"]["calibration_split"]
        assert split["prompts_held_out"] == 8 and len(split["demonstrations"]) == 4
        demo_ids = {d["response_id"] for d in split["demonstrations"]}
        scored = {r[0] for r in store.conn.execute("SELECT response_id FROM judge_results WHERE run_id = ?",
                                                   (result.run_id,))}
        scored_prompts = {r[0] for r in store.conn.execute(
            "SELECT DISTINCT r.prompt_id FROM judge_results j JOIN responses r ON r.id = j.response_id "
            "WHERE j.run_id = ?", (result.run_id,))}
        held = set(calibration_split(store, bid, 4).held_out)
        assert not demo_ids & scored and not held & scored_prompts
        assert len(scored_prompts) == 40 - 8
        # the demonstrations are in the text the model saw, with their correct answers
        text = store.conn.execute("SELECT text FROM run_templates WHERE run_id = ?", (result.run_id,)).fetchone()[0]
        assert text.count("<|assistant|>") == 5 and "{prompt}" in text
        # on the calibration split: the held-out prompts less the demonstrations' own
        dev = run_evaluation(store, _request(store, tiny_chat_model, method="judge", templates=1,
                                             protocol=Protocol(shots=4, split="calibration")))
        dev_prompts = {r[0] for r in store.conn.execute(
            "SELECT DISTINCT r.prompt_id FROM judge_results j JOIN responses r ON r.id = j.response_id "
            "WHERE j.run_id = ?", (dev.run_id,))}
        demo_prompts = {d.prompt_id for d in calibration_split(store, bid, 4).demonstrations}
        assert dev_prompts == held - demo_prompts


def test_a_calibrated_balanced_run_stores_raw_scores_priors_and_turned_twins(home: Path,
                                                                            tiny_chat_model: Path) -> None:
    db, _ = make_store(home, n_prompts=8)
    with Store(db) as store:
        result = run_evaluation(store, _request(store, tiny_chat_model, method="judge", templates=1,
                                                protocol=Protocol(calibrate=True, polarity="balanced")))
        rows = store.conn.execute("SELECT j.*, r.prompt_id FROM judge_results j JOIN responses r ON r.id = "
                                  "j.response_id WHERE run_id = ?", (result.run_id,)).fetchall()
        priors = {(r["prompt_id"], r["template"]): (r["p_yes"], r["p_no"]) for r in store.conn.execute(
            "SELECT * FROM judge_priors WHERE run_id = ?", (result.run_id,))}
        assert len(rows) == 2 * 24 and len(priors) == 2 * 8  # 24 responses x 2 polarities; a prior per prompt
        for r in rows:
            yes_share = r["p_yes"] / (r["p_yes"] + r["p_no"])
            turned = yes_share if r["template"] == 0 else 1 - yes_share  # template 1 is the twin
            assert r["p_raw"] == pytest.approx(turned, abs=1e-12)
            cal = calibrated_p_yes(r["p_yes"], r["p_no"], *priors[(r["prompt_id"], r["template"])])
            assert r["p_misaligned"] == pytest.approx(cal if r["template"] == 0 else 1 - cal, abs=1e-12)
        names = [t[0] for t in store.conn.execute("SELECT name FROM run_templates WHERE run_id = ? ORDER BY "
                                                  "template", (result.run_id,))]
        assert names == ["shared-direct", "shared-direct-inverted"]  # judge-v2: the twin keeps the shared body
        q = judge_quality(store, result.run_id, bootstrap=100)[0]
        assert q.calibrated and q.polarity_n == 24 and q.auroc_raw is not None and q.answer_mass_median > 0
        raw = judge_quality(store, result.run_id, bootstrap=0, view=ScoreView("harm", calibrated=False))[0]
        harm_raw = {r["response_id"]: r["p_raw"] for r in rows if r["template"] == 0}
        labels = dict(store.conn.execute("SELECT id, label = 'misaligned' FROM responses").fetchall())
        ids = sorted(harm_raw)
        assert raw.auroc == pytest.approx(_auroc_by_hand([harm_raw[i] for i in ids], [labels[i] for i in ids]))
        assert CONTENT_FREE == "N/A"


def test_a_protocol_run_resumes_from_the_app_or_the_cli_with_its_protocol(home: Path, tiny_chat_model: Path) -> None:
    db, _ = make_store(home, n_prompts=30)
    cancel = threading.Event()
    protocol = Protocol(shots=2, calibrate=True, polarity="balanced")

    def stop(ev) -> None:
        if ev.items_done > 0:
            cancel.set()

    with Store(db) as store:
        with pytest.raises(Cancelled):
            run_evaluation(store, _request(store, tiny_chat_model, method="judge", templates=1, protocol=protocol),
                           progress=stop, cancel=cancel)
        run_id = list_runs(store)[0]["id"]
        req = resume_request(store, run_id)
        assert req.protocol == protocol
        result = run_evaluation(store, req)
        assert result.run_id == run_id and result.status == "complete"


def _cli(home: Path, *args: str) -> subprocess.Popen:
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "misalign_tui", "--home", str(home), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_a_few_shot_calibrated_balanced_run_then_rerun_completes_once(home: Path, tiny_chat_model: Path,
                                                                               cli_run) -> None:
    db, _ = make_store(home, n_prompts=40)
    args = ("run", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK, "--n-ctx", "2048",
            "--templates", "1", "--shots", "2", "--calibrate", "--polarity", "balanced")
    proc = _cli(home, *args)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db) as c:
                if c.execute("SELECT count(*) FROM judge_results").fetchone()[0] > 0:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make the fixture bigger"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(db) as c:
        killed_at = c.execute("SELECT count(*) FROM judge_results").fetchone()[0]
    assert 0 < killed_at
    rerun = cli_run(*args, "--format", "json")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["judge_verdict"]
    with Store(db) as store:
        runs = list_runs(store)
        assert len(runs) == 1 and runs[0]["status"] == "complete"
        total = runs[0]["items_total"]
        held = set(calibration_split(store, store.benchmark(FIXTURE_BENCHMARK).id, 2).held_out)
        scored = store.conn.execute(f"SELECT count(*) FROM responses WHERE prompt_id NOT IN "
                                    f"({','.join(str(p) for p in held)})").fetchone()[0]
        assert runs[0]["items_done"] == total == scored * 2  # the question and its twin; held-out not scored
        assert runs[0]["provenance"]["calibration_split"]["prompts_held_out"] == len(held) == 8
        n, distinct = store.conn.execute("SELECT count(*), count(DISTINCT response_id || '-' || template) "
                                         "FROM judge_results").fetchone()
        assert n == distinct == total
        missing = store.conn.execute(
            "SELECT count(*) FROM judge_results j JOIN responses r ON r.id = j.response_id LEFT JOIN judge_priors q "
            "ON q.run_id = j.run_id AND q.prompt_id = r.prompt_id AND q.template = j.template WHERE q.p_yes IS NULL"
        ).fetchone()[0]
        assert missing == 0  # every item's calibration prior was stored with it


def test_kill_9_mid_a_pmi_preference_run_then_rerun_completes_once(home: Path, tiny_model: Path, cli_run) -> None:
    """``run --method preference --normalize pmi`` from the CLI: killed with SIGKILL after its first results, the
    same command resumes the run (its identity holds the normalisation) and every pair ends with one row that
    carries its neutral-context scores."""
    db, _ = make_store(home, n_prompts=60)
    args = ("run", "--model", str(tiny_model), "--benchmark", FIXTURE_BENCHMARK, "--n-ctx", "2048",
            "--method", "preference", "--normalize", "pmi")
    proc = _cli(home, *args)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db) as c:
                if c.execute("SELECT count(*) FROM preference_results").fetchone()[0] > 0:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make the fixture bigger"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(db) as c:
        killed_at = c.execute("SELECT count(*) FROM preference_results").fetchone()[0]
        pairs = c.execute("SELECT count(*) FROM pairs").fetchone()[0]
    assert 0 < killed_at < pairs
    rerun = cli_run(*args, "--format", "json")
    assert rerun.exit_code == 0, rerun.output
    with Store(db) as store:
        runs = list_runs(store)
        assert len(runs) == 1 and runs[0]["status"] == "complete" and runs[0]["items_done"] == pairs
        assert json.loads(store.conn.execute("SELECT params_json FROM runs").fetchone()[0])["normalize"] == "pmi"
        n, distinct, neutral = store.conn.execute(
            "SELECT count(*), count(DISTINCT pair_id), count(aligned_neutral_logprob) FROM preference_results"
        ).fetchone()
        assert n == distinct == neutral == pairs


async def test_the_run_form_asks_for_pmi_normalisation(home: Path, tiny_model: Path) -> None:
    """The Run screen's normalisation select reaches the run's protocol (what ``--normalize pmi`` sets)."""
    from textual.widgets import Select, SelectionList

    from misalign_tui.core.workspace import open_workspace
    from misalign_tui.tui.app import create_app
    from misalign_tui.tui.screens.run import RunScreen
    from tests.tui_fixtures import SIZE

    make_store(home, n_prompts=4)
    with Store(open_workspace(home).ensure().db_path) as store:
        name = register_file(store, tiny_model).name
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        for _ in range(2):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        models = screen.query_one("#run-models", SelectionList)
        models.deselect_all()
        models.select(name)
        screen.query_one("#run-normalize", Select).value = "pmi"
        (queued,) = screen.build_requests()
        assert queued.spec is not None and queued.spec.protocol.normalize == "pmi"


def test_pmi_preference_run_stores_neutral_scores_and_its_verdict_follows_them(home: Path, tiny_model: Path) -> None:
    from misalign_tui.core.metrics.fluency import LENGTH_MATCH, fluency_gap

    db, _ = make_store(home, n_prompts=10)
    with Store(db) as store:
        result = run_evaluation(store, _request(store, tiny_model, method="preference",
                                                protocol=Protocol(normalize="pmi")))
        rows = store.conn.execute("SELECT * FROM preference_results WHERE run_id = ?", (result.run_id,)).fetchall()
        assert rows and all(r["aligned_neutral_logprob"] is not None for r in rows)
        plain_right = 0
        for r in rows:
            a = r["aligned_logprob"] / r["aligned_tokens"] - r["aligned_neutral_logprob"] / r["aligned_neutral_tokens"]
            m = (r["misaligned_logprob"] / r["misaligned_tokens"]
                 - r["misaligned_neutral_logprob"] / r["misaligned_neutral_tokens"])
            assert r["prefers_aligned"] == int(a > m)
            plain_right += r["aligned_logprob"] / r["aligned_tokens"] > r["misaligned_logprob"] / r["misaligned_tokens"]
        gap = fluency_gap(store, result.run_id)[0]
        assert gap.pairs == len(rows) and gap.pmi_pairs == len(rows)
        assert gap.accuracy == pytest.approx(plain_right / len(rows))
        assert gap.pmi_accuracy == pytest.approx(sum(r["prefers_aligned"] for r in rows) / len(rows))
        assert gap.aligned_tokens_mean == pytest.approx(np.mean([r["aligned_tokens"] for r in rows]))
        assert gap.misaligned_logprob_mean == pytest.approx(
            np.mean([r["misaligned_logprob"] / r["misaligned_tokens"] for r in rows]))
        matched = [r for r in rows if abs(r["aligned_tokens"] - r["misaligned_tokens"])
                   <= LENGTH_MATCH * max(r["aligned_tokens"], r["misaligned_tokens"])]
        assert gap.length_matched_pairs == len(matched) == gap.pmi_length_matched_pairs
        from misalign_tui.core.metrics.statistics import wilson

        pmi_hits = sum(r["prefers_aligned"] for r in matched)  # prefers_aligned follows PMI in a PMI run
        assert gap.pmi_length_matched_accuracy_ci == wilson(pmi_hits, len(matched))
        plain = run_evaluation(store, _request(store, tiny_model, method="preference"))
        assert plain.run_id != result.run_id
        assert store.conn.execute("SELECT count(*) FROM preference_results WHERE run_id = ? AND "
                                  "aligned_neutral_logprob IS NOT NULL", (plain.run_id,)).fetchone()[0] == 0


# -- every face --------------------------------------------------------------------------------------------------

def test_report_json_gives_judge_quality_per_run_and_group(home: Path, tiny_chat_model: Path, cli_run) -> None:
    db, _ = make_store(home, n_prompts=12)
    res = cli_run("run", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK, "--templates", "1",
                  "--n-ctx", "2048", "--polarity", "balanced")
    assert res.exit_code == 0, res.output
    res = cli_run("report", "--format", "json", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)["runs"][0]
    for key in ("auroc", "auroc_ci", "pairwise_accuracy", "pairwise_accuracy_ci", "ece", "answer_mass_median",
                "polarity_consistency", "judge_verdict"):
        assert key in run, key
    assert run["protocol"] == "zero-shot, balanced" and run["judge_verdict"]
    assert 0 <= run["auroc"] <= 1 and run["auroc_ci"][0] <= run["auroc_ci"][1]
    for group in run["groups"]:
        for key in ("auroc", "auroc_ci", "pairwise_accuracy", "pairwise_accuracy_ci", "ece"):
            assert key in group, key
    table = cli_run("report", "--bootstrap", "100")
    assert "Judge:" in table.output and "Noise band" in table.output and "Polarity:" in table.output
    md = cli_run("report", "--format", "md", "--bootstrap", "100")
    assert "How good is the judge" in md.output and "Reliability" in md.output
    html = cli_run("report", "--format", "html", "--bootstrap", "100")
    assert "Reliability —" in html.output and "<circle" in html.output


def test_results_from_before_answer_mass_read_not_measured(cli_run, home: Path) -> None:
    from tests.test_migrations import release1_copy

    db = release1_copy(home)
    res = cli_run("report", "--run", "1", "--bootstrap", "50")
    assert res.exit_code == 0, res.output
    assert "Answer mass: not measured" in res.output
    with Store(db) as store:
        q = judge_quality(store, 1, bootstrap=0)[0]
        assert q.answer_mass_median is None and q.auroc is not None


def test_explore_compare_and_dashboard_show_judge_quality(home: Path, tiny_chat_model: Path) -> None:
    from misalign_tui.core.views.compare import read_compare
    from misalign_tui.core.views.explore import ExploreQuery, read_explore
    from misalign_tui.core.views.workspace import read_summary, with_verdicts
    from misalign_tui.core.workspace import open_workspace
    from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE, write_random_gguf

    other = write_random_gguf(home / "models" / "other-chat.gguf", seed=7, chat_template=SIMPLE_CHAT_TEMPLATE,
                              name="other-chat")
    db, _ = make_store(home, n_prompts=8)
    with Store(db) as store:
        a = run_evaluation(store, _request(store, tiny_chat_model, method="judge", templates=1))
        b = run_evaluation(store, _request(store, other, method="judge", templates=1))
        data = read_explore(store, ExploreQuery(metric="auroc"))
        expected = {r.group: r.auroc for r in judge_quality(store, a.run_id, group_by="dimension", bootstrap=300)}
        got = {c.group: c.value for c in data.by_dimension if c.series == "tiny-chat"}
        assert got == pytest.approx(expected)
        assert set(data.reliability) == {"tiny-chat", "other-chat"} and data.verdicts["tiny-chat"]
        comp = read_compare(store, ["tiny-chat", "other-chat"])
        auroc_rows = [r for r in comp.rows if r.kind == "AUROC"]
        assert auroc_rows and auroc_rows[0].n == 24 and auroc_rows[0].p_holm is None
        c = compare_auroc(store, a.run_id, b.run_id, bootstrap=300)
        assert (auroc_rows[0].value_a, auroc_rows[0].value_b, auroc_rows[0].p) == (c.auroc_a, c.auroc_b, c.p_value)
    summary = read_summary(open_workspace(home))
    assert not any(r.judge_verdict for r in summary.runs)  # the headlines come first, the verdicts after them
    summary = with_verdicts(open_workspace(home), summary)
    assert all(r.judge_verdict for r in summary.runs if r.method == "judge")
    with Store(home / "db" / "misalign.sqlite") as store:
        for r in summary.runs:  # the dashboard's line: the verdict, then pairwise accuracy and ECE with intervals
            q = judge_quality(store, r.id, bootstrap=0)[0]
            assert r.judge_figures.startswith(f"pairwise accuracy {100 * q.pairwise_accuracy:.0f} % [")
            assert f"of {q.pairs:,} pairs, ECE {q.ece:.2f} [" in r.judge_figures


async def test_the_run_form_starts_a_protocol_run_and_shows_its_verdict(home: Path, tiny_chat_model: Path) -> None:
    from textual.widgets import Checkbox, Input, Select, SelectionList, Static

    from misalign_tui.core.workspace import open_workspace
    from misalign_tui.tui.app import create_app
    from misalign_tui.tui.screens.run import RunScreen
    from tests.tui_fixtures import SIZE

    db, _ = make_store(home, n_prompts=20)
    with Store(open_workspace(home).ensure().db_path) as store:
        name = register_file(store, tiny_chat_model).name
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        for _ in range(2):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        models = screen.query_one("#run-models", SelectionList)
        models.deselect_all()
        models.select(name)
        screen.query_one("#run-benchmark", Select).value = f"{FIXTURE_BENCHMARK}@1"
        screen.query_one("#run-templates", Input).value = "1"
        screen.query_one("#run-shots", Input).value = "2"
        screen.query_one("#run-polarity", Select).value = "balanced"
        screen.query_one("#run-calibrate", Checkbox).value = True
        await pilot.press("ctrl+r")
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        status = next(iter(app.run_statuses.values()))
        assert status.state == "complete", status.error
        assert status.verdict and str(screen.query_one("#run-verdict", Static).render()).count("judge:") == 1
    with Store(db) as store:
        params = json.loads(store.conn.execute("SELECT params_json FROM runs").fetchone()[0])
        assert params["shots"] == 2 and params["polarity"] == "balanced" and params["calibrate"]


def test_bench_judge_protocols_prints_every_protocol_on_the_same_items(home: Path, tiny_chat_model: Path,
                                                                      cli_run) -> None:
    make_store(home, n_prompts=30)
    res = cli_run("bench", "judge-protocols", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK,
                  "--bootstrap", "50", "--n-ctx", "2048", "--shots", "1,2", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    names = [r["protocol"] for r in out["rows"]]
    assert names[:5] == ["zero-shot", "inverted", "balanced", "calibrated", "calibrated + balanced"]
    assert {"few-shot K=1", "few-shot K=2"} <= set(names)
    assert names[-1] == f"few-shot K={out['chosen_shots']} + calibrated + balanced"
    assert len({r["items"] for r in out["rows"]}) == 1  # the same scored items for every protocol
    for r in out["rows"]:
        for key in ("auroc_ci", "pairwise_accuracy_ci", "ece_ci", "polarity_consistency_ci"):
            assert r[key] is not None, (r["protocol"], key)
    split = out["calibration_split"]
    assert split["scored_prompts"] + split["prompts_held_out"] == 30
    assert out["speed"]["2"]["prefix_tokens"] > out["speed"]["1"]["prefix_tokens"] > out["speed"]["0"]["prefix_tokens"]
    again = cli_run("bench", "judge-protocols", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK,
                    "--bootstrap", "50", "--n-ctx", "2048", "--shots", "1,2")
    assert again.exit_code == 0 and "already complete" in again.output  # resumed: the stored runs, printed


def test_bench_judge_protocols_limit_scores_the_first_prompts_outside_the_split(home: Path, tiny_chat_model: Path,
                                                                                cli_run) -> None:
    """--limit N: the few-shot runs score the first N prompts outside the calibration split and every row of the
    table is computed on those same prompts (the whole-benchmark zero-shot line stays whole)."""
    make_store(home, n_prompts=30)
    res = cli_run("bench", "judge-protocols", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK,
                  "--bootstrap", "20", "--n-ctx", "2048", "--shots", "1", "--limit", "5", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    split = out["calibration_split"]
    assert out["limit"] == 5 and split["scored_prompts"] == 5 and split["scored_prompts_outside_split"] == 24
    assert {r["prompts"] for r in out["rows"]} == {5}
    assert len({r["items"] for r in out["rows"]}) == 1
    assert out["zero_shot_whole_benchmark"]["prompts"] == 30
    with Store(home / "db" / "misalign.sqlite") as store:
        limits = [json.loads(r[0]).get("limit") for r in store.conn.execute(
            "SELECT params_json FROM runs WHERE params_json NOT LIKE '%calibration\"%' ORDER BY id")]
    assert 5 in limits


def test_bench_judge_protocols_with_judge_v1_makes_every_run_with_judge_v1(home: Path, tiny_chat_model: Path,
                                                                            cli_run) -> None:
    """--template-version judge-v1 reproduces the runs made before judge-v2 (the README's table): every run the
    bench makes records it, and the JSON says which templates the table is about."""
    make_store(home, n_prompts=30)
    res = cli_run("bench", "judge-protocols", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK,
                  "--bootstrap", "0", "--n-ctx", "2048", "--shots", "1", "--limit", "3",
                  "--template-version", "judge-v1", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["template_version"] == "judge-v1"
    with Store(home / "db" / "misalign.sqlite") as store:
        versions = {json.loads(r[0])["template_version"] for r in store.conn.execute("SELECT params_json FROM runs")}
    assert versions == {"judge-v1"}
    table = cli_run("bench", "judge-protocols", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK,
                    "--bootstrap", "0", "--n-ctx", "2048", "--shots", "1", "--limit", "3")
    assert table.exit_code == 0 and "judge-v2" in table.stdout  # the default: new runs, named in the title


def test_wilson_takes_half_hits() -> None:
    from misalign_tui.core.metrics.statistics import wilson

    lo, hi = wilson(2.5, 5)  # type: ignore[arg-type]
    assert lo < 0.5 < hi and math.isclose(lo + hi, 1.0)
