"""Shared-body judge templates (judge-v2): the K questions of an item share its body, so the engine decodes it
once; judge-v1 runs keep their templates, order and identity. Real llama.cpp (tiny models), real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference import judge_templates as jt
from misalign_tui.core.inference.engine import Engine, EngineSettings
from misalign_tui.core.models.registry import register_file
from misalign_tui.core.runs.evaluate import judge_order, run_evaluation
from misalign_tui.core.runs.identity import resume_request
from misalign_tui.core.runs.request import RunRequest
from misalign_tui.core.store import Store
from misalign_tui.core.views.item import read_item
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store


def _request(store: Store, model_path: Path, **kw) -> RunRequest:
    model = register_file(store, model_path)
    kw.setdefault("settings", EngineSettings(n_ctx=1024))
    return RunRequest(model, store.benchmark(FIXTURE_BENCHMARK), **kw)


def test_v2_templates_share_their_body_and_v1_is_unchanged():
    v2 = jt.judge_templates(5, "judge-v2")
    assert all(t.text.startswith(jt.SHARED_BODY) for t in v2)
    assert len({t.text for t in v2}) == 5
    assert all(t.text.startswith(jt.SHARED_BODY) and "{dimension}" not in jt.SHARED_BODY
               for t in jt.dimension_templates(3, "judge-v2"))
    # judge-v1 keeps its own header per template (what its runs were made with)
    v1 = jt.judge_templates(3, "judge-v1")
    assert [t.name for t in v1] == ["direct", "reviewer", "question-last"]
    assert v1[1].text.startswith("You are reviewing an assistant's answer.")
    assert jt.TEMPLATE_VERSION == "judge-v2"


def test_an_unknown_template_version_is_one_line():
    with pytest.raises(UserError, match="template version 'judge-v9'"):
        jt.judge_templates(3, "judge-v9")


def test_v2_orders_items_response_by_response_v1_template_by_template():
    responses = [(1, 10, "a"), (2, 10, "b")]
    v2 = [(t, r[0]) for t, _, r in judge_order(jt.judge_templates(3, "judge-v2"), responses)]
    v1 = [(t, r[0]) for t, _, r in judge_order(jt.judge_templates(3, "judge-v1"), responses)]
    assert v2 == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]
    assert v1 == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]


def test_the_engine_decodes_the_body_once_per_response(tiny_chat_model):
    from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE

    eng = Engine(tiny_chat_model, chat_template=SIMPLE_CHAT_TEMPLATE, settings=EngineSettings(n_ctx=1024))
    try:
        prompts = {i: f"Question {i}: how should I store cleaning products so that children stay safe? " * 2
                   for i in range(6)}
        responses = [(i, i, f"Reply number {i}: keep them locked away, in their original bottles, up high.")
                     for i in range(6)]
        decoded = {}
        scores = {}
        from misalign_tui.core.inference.requests import JudgeRequest

        for version in ("judge-v1", "judge-v2"):
            reqs = [JudgeRequest((r[0], t), eng.format_user_turn(tmpl.fill(prompts[r[1]], r[2])))
                    for t, tmpl, r in judge_order(jt.judge_templates(3, version), responses)]
            before = eng.tokens_decoded
            scores[version] = list(eng.judge(reqs))
            decoded[version] = eng.tokens_decoded - before
            alone = sum(len(eng.tokenize(r.text)) for r in reqs)
            assert decoded[version] < alone
        assert decoded["judge-v2"] * 1.5 < decoded["judge-v1"]  # the body once, not 3 times
        assert len(scores["judge-v2"]) == len(scores["judge-v1"]) == 18
    finally:
        eng.close()


def test_v2_run_records_each_templates_text_and_v1_runs_resume_as_v1(home, tiny_chat_model):
    db, _ = make_store(home)
    with Store(db) as store:
        new = run_evaluation(store, _request(store, tiny_chat_model))
        texts = store.conn.execute("SELECT name, text FROM run_templates WHERE run_id = ? ORDER BY template",
                                   (new.run_id,)).fetchall()
        assert [t[0] for t in texts] == ["shared-direct", "shared-reviewer", "shared-question-last"]
        assert len({t[1].split("{response}")[0] for t in texts}) == 1  # one body
        params = json.loads(store.conn.execute("SELECT params_json FROM runs WHERE id = ?",
                                               (new.run_id,)).fetchone()[0])
        assert params["template_version"] == "judge-v2"
        # the Item screen fills each template's own text: three texts, one per question
        rid = store.conn.execute("SELECT response_id FROM judge_results WHERE run_id = ? LIMIT 1",
                                 (new.run_id,)).fetchone()[0]
        pid = store.conn.execute("SELECT prompt_id FROM responses WHERE id = ?", (rid,)).fetchone()[0]
        shown = [text for name, text in read_item(store, pid).formatted if f"run {new.run_id}" in name]
        assert len(shown) == 3 and len(set(shown)) == 3 and all("{prompt}" not in s for s in shown)

        old = run_evaluation(store, _request(store, tiny_chat_model, template_version="judge-v1", limit=2))
        assert old.run_id != new.run_id
        names = [r[0] for r in store.conn.execute("SELECT name FROM run_templates WHERE run_id = ? ORDER BY "
                                                  "template", (old.run_id,))]
        assert names == ["direct", "reviewer", "question-last"]
        store.conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (old.run_id,))
        store.conn.commit()
        again = resume_request(store, old.run_id, settings=EngineSettings(n_ctx=1024))
        assert again.template_version == "judge-v1"


def test_run_can_choose_the_template_version(home, tiny_chat_model, cli_run):
    db, _ = make_store(home)
    base = ("run", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK, "--n-ctx", "1024",
            "--limit", "1", "--format", "json")
    r = cli_run(*base, "--template-version", "judge-v1")
    assert r.exit_code == 0, r.output
    with Store(db) as store:
        run_id = json.loads(r.stdout)["id"]
        params = json.loads(store.conn.execute("SELECT params_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
        assert params["template_version"] == "judge-v1"
    bad = cli_run(*base, "--template-version", "judge-v9")
    assert bad.exit_code == 2 and "judge-v9" in bad.output


def test_v2_twins_keep_the_shared_body_and_order_response_by_response():
    harm = jt.judge_template_set(3, "harm", "judge-v2")
    twins = jt.judge_template_set(3, "inverted", "judge-v2")
    both = jt.judge_template_set(3, "balanced", "judge-v2")
    assert both == harm + twins
    assert all(t.text.startswith(jt.SHARED_BODY) for t in both)
    assert [t.polarity for t in twins] == ["inverted"] * 3 and all(t.polarity == "harm" for t in harm)
    assert [t.name for t in twins] == [f"{h.name}-inverted" for h in harm]
    assert all(h.text != w.text for h, w in zip(harm, twins, strict=True))
    # judge-v1's twins are unchanged (what its balanced runs were made with)
    assert jt.judge_template_set(2, "inverted", "judge-v1") == jt.INVERTED_TEMPLATES[:2]
    # one body over the questions and their twins: a balanced v2 run goes response by response
    order = [(t, r[0]) for t, _, r in judge_order(both, [(1, 10, "a"), (2, 10, "b")])]
    assert order[:6] == [(t, 1) for t in range(6)]


def test_v2_balanced_calibrated_run_stores_every_template_and_the_priors(home, tiny_chat_model):
    from misalign_tui.core.runs.request import Protocol

    db, _ = make_store(home)
    with Store(db) as store:
        res = run_evaluation(store, _request(store, tiny_chat_model, templates=2, limit=2,
                                             protocol=Protocol(calibrate=True, polarity="balanced")))
        assert res.status == "complete"
        names = [r[0] for r in store.conn.execute("SELECT name FROM run_templates WHERE run_id = ? ORDER BY "
                                                  "template", (res.run_id,))]
        assert names == ["shared-direct", "shared-reviewer", "shared-direct-inverted", "shared-reviewer-inverted"]
        per_response = {n for (n,) in store.conn.execute(
            "SELECT count(*) FROM judge_results WHERE run_id = ? GROUP BY response_id", (res.run_id,))}
        assert per_response == {4}
        n_prompts = store.conn.execute("SELECT count(DISTINCT r.prompt_id) FROM judge_results jr JOIN responses r "
                                       "ON r.id = jr.response_id WHERE jr.run_id = ?", (res.run_id,)).fetchone()[0]
        priors = store.conn.execute("SELECT count(*) FROM judge_priors WHERE run_id = ?",
                                    (res.run_id,)).fetchone()[0]
        assert priors == 4 * n_prompts


def test_scores_without_their_raw_mass_store_null_answer_mass(home, tiny_chat_model, monkeypatch):
    """The one-request remote judge returns the answer words' shares only (raw_mass False): p_yes and p_no are
    stored NULL, never the shares as if they were the model's probabilities. The real path needs llama-server
    (tests/test_remote_logit_bias.py, skipped without it), so the engine's scores are turned into shares here."""
    from dataclasses import replace

    from misalign_tui.core.runs import evaluate

    real = evaluate.open_backend

    def shares_only(*args, **kw):
        backend = real(*args, **kw)
        judge = backend.judge

        def judge_shares(requests, **jkw):
            for s in judge(requests, **jkw):
                yield replace(s, p_yes=s.p_misaligned, p_no=1 - s.p_misaligned, raw_mass=False)

        backend.judge = judge_shares
        return backend

    monkeypatch.setattr(evaluate, "open_backend", shares_only)
    db, _ = make_store(home)
    with Store(db) as store:
        res = run_evaluation(store, _request(store, tiny_chat_model, templates=2, limit=2))
        rows = store.conn.execute("SELECT p_yes, p_no, p_raw, p_misaligned FROM judge_results WHERE run_id = ?",
                                  (res.run_id,)).fetchall()
        assert rows and all(r[0] is None and r[1] is None and r[2] == r[3] for r in rows)
