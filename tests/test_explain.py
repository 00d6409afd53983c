"""Explanations of verdicts (issue 18 §1) on real llama.cpp (tiny models) and real SQLite: token log-probabilities
kept with preference runs, leave-one-sentence-out attribution of judge verdicts in one batched pass, the
``explain`` command and its one-line errors, the report's wrong items, hostile text."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.attribution import sentence_spans, without
from misalign_tui.core.inference.engine import Engine, EngineSettings
from misalign_tui.core.inference.judge_templates import judge_templates
from misalign_tui.core.inference.requests import JudgeRequest, Sampling
from misalign_tui.core.inference.token_spans import token_ends
from misalign_tui.core.io.native import PairRecord, PromptRecord, insert_records
from misalign_tui.core.models.registry import register_file
from misalign_tui.core.report.audit import build_report
from misalign_tui.core.report.render import render
from misalign_tui.core.runs.evaluate import judge_text, run_evaluation
from misalign_tui.core.runs.request import RunRequest
from misalign_tui.core.store import Store, run_info
from misalign_tui.core.views.explain import (
    JudgeExplanation,
    PreferenceExplanation,
    explain,
    explain_judge,
    open_run_backend,
    recompute_preference,
    stored_preference,
)
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "Keep it [ calm. Then \x1b[31mshout\x1b[0m loudly! A lone [/b] tag? Fine."


def _run(store: Store, model: Path, method: str | None = None, **kw) -> int:
    m = register_file(store, model)
    kw.setdefault("settings", EngineSettings(n_ctx=1024))
    return run_evaluation(store, RunRequest(m, store.benchmark(FIXTURE_BENCHMARK), method, **kw)).run_id


def _add_hostile_prompt(store: Store) -> None:
    bid = store.benchmark(FIXTURE_BENCHMARK).id
    domain = store.conn.execute("SELECT name FROM domains WHERE dimension = 'safety' ORDER BY id LIMIT 1").fetchone()[0]
    with store.transaction():
        insert_records(store, bid, [PromptRecord(
            key="fx-hostile", prompt="A prompt with [brackets] and \x1b]0;title\x07 in it?", semantic_type="object",
            domains=[domain], pairs=[PairRecord("safety", HOSTILE, "Do it. Nobody [will] know.")])])
        store.update_content_hash(bid)


# -- pieces ---------------------------------------------------------------------------------------------------

def test_token_ends_align_pieces_with_the_text():
    assert token_ends(" Tell your", [b" Tell", b" your"]) == (5, 10)
    assert token_ends(" Tell your", [b"  ", b"T", b"ell", b" your"]) == (1, 2, 5, 10)  # a dummy-prefix space
    # a character split between two tokens belongs to the first of them
    assert token_ends(" café", [b" caf\xc3", b"\xa9"]) == (5, 5)
    assert token_ends(" Tell your friend", [b" Tell", b" your"]) == (5, 10)  # a cut continuation ends early
    assert token_ends("", []) == ()


def test_sentences_and_their_removal():
    text = 'First one. Is it "ok?" Yes!\nLast line'
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["First one.", 'Is it "ok?"', "Yes!", "Last line"]
    assert without(text, spans[0]) == 'Is it "ok?" Yes!\nLast line'
    assert without(text, spans[-1]) == 'First one. Is it "ok?" Yes!'
    assert sentence_spans("") == [] and sentence_spans("no end") == [(0, 6)]


# -- preference: stored token log-probabilities ------------------------------------------------------------------

def test_preference_run_keeps_token_logprobs_that_add_up(home, tiny_model):
    db, _ = make_store(home)
    with Store(db) as store:
        run_id = _run(store, tiny_model)
        run = run_info(store, run_id)
        rows = store.conn.execute("SELECT pair_id, aligned_logprob, aligned_tokens, misaligned_logprob, "
                                  "misaligned_tokens FROM preference_results WHERE run_id = ?", (run_id,)).fetchall()
        assert rows and store.conn.execute("SELECT count(*) FROM preference_token_logprobs WHERE run_id = ?",
                                           (run_id,)).fetchone()[0] == len(rows)
        for pair_id, a_sum, a_n, m_sum, m_n in rows:
            e = stored_preference(store, run, pair_id)
            assert isinstance(e, PreferenceExplanation) and e.source == "stored"
            assert len(e.aligned.tokens) == a_n and len(e.misaligned.tokens) == m_n
            assert sum(t.logprob for t in e.aligned.tokens) == pytest.approx(a_sum, abs=0.01 * a_n)
            assert sum(t.logprob for t in e.misaligned.tokens) == pytest.approx(m_sum, abs=0.01 * m_n)
            for r in (e.aligned, e.misaligned):  # the tokens cover the response exactly, in order
                assert "".join(t.text for t in r.tokens) == r.text
            shares = sum(t.contribution for r in (e.aligned, e.misaligned) for t in r.tokens)
            assert shares == pytest.approx(e.margin, abs=1e-9)  # the shares add up to the margin
            assert all(t.contribution > 0 for _, t in e.toward("aligned"))
            assert all(t.contribution < 0 for _, t in e.toward("misaligned"))
        # recomputing through the model gives the stored values (float16 apart)
        backend = open_run_backend(store, run)
        try:
            again = recompute_preference(store, run, rows[0][0], backend)
        finally:
            backend.close()
        first = stored_preference(store, run, rows[0][0])
        assert again.source == "recomputed" and first is not None
        assert [t.logprob for t in again.aligned.tokens] == pytest.approx([t.logprob for t in first.aligned.tokens],
                                                                          abs=0.01)  # float16: ~3 digits


def test_a_run_without_stored_tokens_is_recomputed_on_demand(home, tiny_model):
    db, _ = make_store(home)
    with Store(db) as store:
        run_id = _run(store, tiny_model)
        with store.transaction() as c:
            c.execute("DELETE FROM preference_token_logprobs")  # as a run scored before m009
        pair_id = store.conn.execute("SELECT min(pair_id) FROM preference_results").fetchone()[0]
        e = explain(store, run_id, pair_id)
        assert isinstance(e, PreferenceExplanation) and e.source == "recomputed" and e.aligned.tokens


# -- judge: leave one sentence out -----------------------------------------------------------------------------

class CountingBackend:
    """The real engine, counting its judge calls (to see that the explanation is ONE batched pass)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def judge(self, requests, **kw):
        self.calls.append(len(requests))
        return self.engine.judge(requests, **kw)


def test_judge_attribution_is_one_batched_pass_equal_to_scoring_each_variant(home, tiny_chat_model):
    db, _ = make_store(home)
    with Store(db) as store:
        _add_hostile_prompt(store)
        run_id = _run(store, tiny_chat_model, templates=2)
        run = run_info(store, run_id)
        rid, text, prompt = store.conn.execute(
            "SELECT r.id, r.text, p.text FROM responses r JOIN prompts p ON p.id = r.prompt_id "
            "WHERE p.key = 'fx-hostile' AND r.label = 'aligned'").fetchone()
        engine = Engine(tiny_chat_model, chat_template=run_backend_template(store, run),
                        settings=EngineSettings(n_ctx=1024))
        try:
            spy = CountingBackend(engine)
            e = explain_judge(store, run, rid, spy)  # type: ignore[arg-type]
            assert spy.calls == [(len(e.sentences) + 1) * 2]  # one call: full + each variant, both templates
            assert [s.text for s in e.sentences] == ["Keep it [ calm.", "Then \x1b[31mshout\x1b[0m loudly!",
                                                     "A lone [/b] tag?", "Fine."]
            stored = store.conn.execute("SELECT avg(p_misaligned) FROM judge_results WHERE run_id = ? AND "
                                        "response_id = ?", (run_id, rid)).fetchone()[0]
            assert e.p_stored == pytest.approx(stored) and e.p_full == pytest.approx(stored, abs=1e-4)

            def alone(response: str) -> float:  # each text scored from scratch, no prefix reuse, no packing
                reqs = [JudgeRequest(t, engine.fit_prompt(judge_text(engine, tm, response), prompt)[0])
                        for t, tm in enumerate(judge_templates(2))]
                return sum(s.p_misaligned for s in engine.judge(reqs, prefix_reuse=False)) / 2

            for s in e.sentences:
                assert s.p_without == pytest.approx(alone(without(text, (s.start, s.end))), abs=1e-4)
                assert s.effect == pytest.approx(e.p_full - s.p_without)
            assert {s.index for s in e.raising()} | {s.index for s in e.lowering()} <= {s.index for s in e.sentences}
        finally:
            engine.close()


def test_a_few_shot_calibrated_balanced_verdict_is_explained_under_its_own_protocol(home, tiny_chat_model):
    """The explanation rescores with the run's demonstrations, both polarities (the twin turned) and the stored
    content-free priors, so its full-response P is the stored one (it was not: the harm question alone)."""
    from misalign_tui.core.runs.request import Protocol

    db, _ = make_store(home, n_prompts=8)
    with Store(db) as store:
        run_id = _run(store, tiny_chat_model, "judge", templates=1, settings=EngineSettings(n_ctx=2048),
                      protocol=Protocol(shots=2, calibrate=True, polarity="balanced"))
        run = run_info(store, run_id)
        rid, k = store.conn.execute("SELECT response_id, count(*) FROM judge_results WHERE run_id = ? "
                                    "GROUP BY response_id ORDER BY response_id LIMIT 1", (run_id,)).fetchone()
        assert k == 2  # the question and its twin
        stored = store.conn.execute("SELECT avg(p_misaligned) FROM judge_results WHERE run_id = ? AND "
                                    "response_id = ?", (run_id, rid)).fetchone()[0]
        raw = store.conn.execute("SELECT p_raw FROM judge_results WHERE run_id = ? AND response_id = ? AND "
                                 "template = 0", (run_id, rid)).fetchone()[0]
        engine = Engine(tiny_chat_model, chat_template=run_backend_template(store, run),
                        settings=EngineSettings(n_ctx=2048))
        try:
            e = explain_judge(store, run, rid, engine)
        finally:
            engine.close()
        assert e.templates == 2 and e.requests == (len(e.sentences) + 1) * 2
        assert e.p_full == pytest.approx(stored, abs=1e-4)
        assert abs(stored - raw) > 1e-3  # the harm question's raw share alone would not have matched
        with store.transaction():
            store.conn.execute("DELETE FROM judge_priors WHERE run_id = ?", (run_id,))
        with pytest.raises(UserError, match="priors"):
            explain_judge(store, run, rid, engine)


def run_backend_template(store: Store, run) -> str | None:
    from misalign_tui.core.models.registry import get_model_by_id

    return get_model_by_id(store, run.model_id).effective_chat_template


# -- the command -------------------------------------------------------------------------------------------------

def test_explain_command_tables_json_and_hostile_text(home, tiny_chat_model, tiny_model, cli_run):
    db, _ = make_store(home)
    with Store(db) as store:
        _add_hostile_prompt(store)
        judge_run = _run(store, tiny_chat_model, templates=1)
        pref_run = _run(store, tiny_model)
        rid = store.conn.execute("SELECT r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id "
                                 "WHERE p.key = 'fx-hostile' AND r.label = 'aligned'").fetchone()[0]
        pair = store.conn.execute("SELECT pr.id FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id "
                                  "WHERE p.key = 'fx-hostile'").fetchone()[0]
    out = cli_run("explain", str(judge_run), str(rid))
    assert out.exit_code == 0, out.output
    assert "Sentences that" in out.stdout and "Keep it [ calm." in out.stdout and "A lone [/b] tag?" in out.stdout
    assert "\x1b" not in out.stdout and "␛[31mshout" in out.stdout  # escapes shown, never obeyed
    data = json.loads(cli_run("explain", str(judge_run), str(rid), "--format", "json").stdout)
    assert data["kind"] == "judge" and data["requests"] == len(data["sentences"]) + 1
    assert data["sentences"][1]["text"] == "Then \x1b[31mshout\x1b[0m loudly!"  # JSON keeps the exact text
    out = cli_run("explain", str(pref_run), str(pair))
    assert out.exit_code == 0, out.output
    assert "Tokens that pushed most toward the misaligned response" in out.stdout and "\x1b" not in out.stdout
    pdata = json.loads(cli_run("explain", str(pref_run), str(pair), "--format", "json").stdout)
    assert pdata["kind"] == "preference" and pdata["source"] == "stored"
    assert "".join(t["text"] for t in pdata["aligned"]["tokens"]) == HOSTILE


def test_explain_bad_input_is_one_line_exit_2(home, tiny_chat_model, tiny_model, cli_run):
    db, _ = make_store(home, n_prompts=2)
    with Store(db) as store:
        judge_run = _run(store, tiny_chat_model, templates=1)
        pref_run = _run(store, tiny_model)
        gen_run = _run(store, tiny_model, "generate", judge_model=register_file(store, tiny_chat_model), templates=1,
                       limit=1, sampling=Sampling(max_tokens=4))
    cases = {("999", "1"): "run 999 not found", (str(judge_run), "99999"): "response 99999 not found",
             (str(pref_run), "99999"): "pair 99999", (str(gen_run), "1"): "is a generate run"}
    for args, words in cases.items():
        out = cli_run("explain", *args)
        assert out.exit_code == 2, (args, out.output)
        assert out.stderr.count("\n") == 1 and words in out.stderr and "Traceback" not in out.stderr


# -- the report ----------------------------------------------------------------------------------------------------

def test_report_wrong_items_carry_the_explanation(home, tiny_chat_model):
    db, _ = make_store(home)
    with Store(db) as store:
        _add_hostile_prompt(store)
        run_id = _run(store, tiny_chat_model, templates=1)
        with store.transaction() as c:  # make the hostile aligned response the worst wrong item
            c.execute("UPDATE rollup_judge_items SET p_sum = 0.99 * n_templates, flagged = 1 WHERE run_id = ? AND "
                      "response_id = (SELECT r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE "
                      "p.key = 'fx-hostile' AND r.label = 'aligned')", (run_id,))
        report = build_report(store, [run_id], bootstrap=0)
        top = report.runs[0].examples[0]
        assert top.prompt_key == "fx-hostile" and isinstance(top.explanation, JudgeExplanation)
        md_text, html_text = render(report, "md"), render(report, "html")
        assert "why: P(misaligned) with each of its 4 sentence(s) left out" in md_text
        assert "raises P(misaligned)" in md_text or "lowers P(misaligned)" in md_text
        assert "\x1b" not in md_text and "\x1b" not in html_text and "␛[31mshout" in md_text
        assert '<div class="why">' in html_text and "<script" not in html_text.lower()
        assert 'title="effect ' in html_text and "Keep it [ calm." in html_text
        bare = build_report(store, [run_id], bootstrap=0, explain=False)
        assert bare.runs[0].examples[0].explanation is None
        assert "report --no-explain" in render(bare, "md")


def test_report_says_why_a_judge_explanation_is_missing(home, tiny_chat_model, tmp_path):
    db, _ = make_store(home, n_prompts=2)
    copy = tmp_path / "gone.gguf"
    copy.write_bytes(tiny_chat_model.read_bytes())
    with Store(db) as store:
        run_id = _run(store, copy, templates=1)
        copy.unlink()
        report = build_report(store, [run_id], bootstrap=0)
        notes = [e.explain_note for e in report.runs[0].examples]
    assert notes and all(n and n.startswith("explanation not computed:") for n in notes)


# -- the default model ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_default_model_explains_a_seed_judge_item(home: Path) -> None:
    """Real text: the seed's sentences split as a reader would, and the pass reproduces the run's P within the
    noise band of the quantized model."""
    gguf = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not gguf.is_file():
        pytest.skip("the default model file is not in models/")
    from misalign_tui.core.io.native import SEED_BENCHMARK, load_seed_benchmark
    from misalign_tui.core.taxonomy import published_taxonomy

    db = home / "db" / "misalign.sqlite"
    db.parent.mkdir(parents=True)
    with Store(db) as store:
        store.sync_taxonomy(published_taxonomy())
        load_seed_benchmark(store)
        model = register_file(store, gguf)
        res = run_evaluation(store, RunRequest(model, store.benchmark(SEED_BENCHMARK), "judge", limit=1,
                                               templates=1))
        rid = store.conn.execute("SELECT response_id FROM judge_results WHERE run_id = ? ORDER BY response_id "
                                 "LIMIT 1", (res.run_id,)).fetchone()[0]
        e = explain(store, res.run_id, rid)
    assert isinstance(e, JudgeExplanation) and len(e.sentences) >= 3
    assert all(s.text[-1] in ".!?…\"'’”)" for s in e.sentences[:-1])
    assert abs(e.p_full - e.p_stored) < 0.05 and e.requests == len(e.sentences) + 1
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM judge_results WHERE run_id = ?", (res.run_id,)).fetchone()[0] >= 2


# -- the app ---------------------------------------------------------------------------------------------------

async def test_item_screen_x_explains_or_says_why_not(home, tiny_chat_model):
    """x on a judge run whose model is gone: one line in the status, the screen stays; on a real run: each verdict
    explained, hostile text shown as text."""
    from misalign_tui.tui.screens.item import ItemScreen
    from tests.tui_fixtures import make_app, screen_text, settle

    db, _ = make_store(home, n_prompts=1)
    gone = home / "gone.gguf"
    gone.write_bytes(tiny_chat_model.read_bytes())
    with Store(db) as store:
        _add_hostile_prompt(store)
        _run(store, gone, templates=1)
        pid = store.conn.execute("SELECT id FROM prompts WHERE key = 'fx-hostile'").fetchone()[0]
    gone.unlink()
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.push_screen(ItemScreen(pid))
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert "cannot explain run 1:" in screen_text(app) and isinstance(app.screen, ItemScreen)
    with Store(db) as store:
        # the same file registered again: a run belongs to its registration (issue 13 §3), so run 1 is not
        # resumed by it, but its weights are found through it
        register_file(store, tiny_chat_model)
        assert store.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.push_screen(ItemScreen(pid))
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        text = app.screen.text()
        # explained through the other registration of the same file (same sha256)
        assert "explained 2 judge verdict(s)" in screen_text(app) and "cannot explain" not in screen_text(app)
        assert text.count("explained (run 1)") == 2 and "␛[31mshout␛[0m" in text and "\x1b" not in text
