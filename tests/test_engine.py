"""The inference engine on real llama.cpp with the tiny random-weight models."""

from __future__ import annotations

import logging
import threading

import llama_cpp
import numpy as np
import pytest

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.engine import (
    Engine,
    EngineSettings,
    JudgeRequest,
    LoglikRequest,
    common_prefix,
    prefix_tree_size,
)
from misalign_tui.core.inference.judge_templates import JUDGE_TEMPLATES


@pytest.fixture(scope="module")
def chat_engine(tiny_chat_model):
    from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE

    eng = Engine(tiny_chat_model, chat_template=SIMPLE_CHAT_TEMPLATE, settings=EngineSettings(n_ctx=1024))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def base_engine(tiny_model):
    eng = Engine(tiny_model, settings=EngineSettings(n_ctx=1024))
    yield eng
    eng.close()


def _judge_requests(engine: Engine, n_prompts: int = 12, n_responses: int = 4) -> list[JudgeRequest]:
    out = []
    for t in JUDGE_TEMPLATES[:2]:
        for p in range(n_prompts):
            for r in range(n_responses):
                text = t.fill(f"Prompt {p}: how should a person help a friend with money problem {p}?",
                              f"Response {r}: {'never' if r % 2 else 'always'} tell the truth and respect "
                              f"the law, {'or' if r > 1 else 'and'} ask for help.")
                out.append(JudgeRequest((t.name, p, r), engine.format_user_turn(text)))
    return out


def test_judge_with_prefix_reuse_equals_full_reset(chat_engine):
    reqs = _judge_requests(chat_engine)  # 96 items: several windows, shared template and prompt prefixes
    reused = list(chat_engine.judge(reqs))
    fresh = list(chat_engine.judge(reqs, prefix_reuse=False))
    assert [s.key for s in reused] == [r.key for r in reqs]
    for a, b in zip(reused, fresh, strict=True):
        assert 0.0 <= a.p_misaligned <= 1.0 and 0 < a.p_yes < 1 and 0 < a.p_no < 1
        assert a.p_misaligned == pytest.approx(b.p_misaligned, abs=1e-4)
        assert a.p_misaligned == pytest.approx(a.p_yes / (a.p_yes + a.p_no))
        assert a.tokens == b.tokens and not a.truncated
    assert len({round(s.p_misaligned, 6) for s in reused}) > 10  # the items really differ


def test_judge_reuse_holds_across_small_context_windows(tiny_chat_model):
    from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE

    # a 256-token cache forces many small windows
    with Engine(tiny_chat_model, chat_template=SIMPLE_CHAT_TEMPLATE,
                settings=EngineSettings(n_ctx=256, n_batch=64)) as eng:
        reqs = _judge_requests(eng, n_prompts=5, n_responses=3)
        a = [s.p_misaligned for s in eng.judge(reqs)]
        b = [s.p_misaligned for s in eng.judge(reqs, prefix_reuse=False)]
    assert a == pytest.approx(b, abs=1e-4)


def test_judge_probability_matches_direct_softmax(base_engine, tiny_model):
    text = base_engine.format_user_turn("Is this reply harmful? Answer Yes or No.")
    score = next(iter(base_engine.judge([JudgeRequest("k", text)])))
    llm = llama_cpp.Llama(str(tiny_model), n_ctx=256, verbose=False)
    llm.eval(base_engine.tokenize(text))
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).astype(float)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    yes = p[base_engine.answer_token_ids(["Yes"])].sum()
    no = p[base_engine.answer_token_ids(["No"])].sum()
    assert score.p_misaligned == pytest.approx(yes / (yes + no), abs=1e-3)


def test_answer_words_cover_case_and_leading_space(base_engine):
    ids = base_engine.answer_token_ids(["Yes"])
    pieces = {base_engine.detokenize([i]) for i in ids}
    assert {"Yes", " Yes", "yes", " yes"} <= pieces


def test_loglik_equals_naive_full_evaluation(base_engine, tiny_model):
    reqs = [LoglikRequest(i, base_engine.format_user_turn(f"Question {i // 2} about safety and values"),
                          f" Answer {i}: you should respect the law.") for i in range(10)]
    reused = list(base_engine.loglik(reqs))
    llm = llama_cpp.Llama(str(tiny_model), n_ctx=256, logits_all=True, verbose=False)  # tiny vocab: fine here
    for r, s in zip(reqs, reused, strict=True):
        ctx = base_engine.tokenize(r.context)
        cont = base_engine.tokenize(r.continuation, add_bos=False)
        llm.reset()
        llm.eval(ctx + cont)
        rows = np.array(llm.scores[: len(ctx) + len(cont)], dtype=np.float64)
        logp = rows - np.logaddexp.reduce(rows, axis=1, keepdims=True)
        expected = sum(logp[len(ctx) - 1 + k, cont[k]] for k in range(len(cont)))
        assert s.tokens == len(cont)
        assert s.logprob_sum == pytest.approx(expected, abs=1e-2)
        assert s.logprob_mean == pytest.approx(s.logprob_sum / s.tokens)
    fresh = list(base_engine.loglik(reqs, prefix_reuse=False))
    # f16 KV cache and batch shapes: agreement to float noise (~1e-5 relative)
    assert [s.logprob_sum for s in reused] == pytest.approx([s.logprob_sum for s in fresh], rel=1e-4)


def test_empty_continuation_scores_zero_tokens(base_engine):
    s = next(iter(base_engine.loglik([LoglikRequest(1, "context", "")])))
    assert s.tokens == 0 and s.logprob_sum == 0.0


def test_long_prompt_is_cut_from_the_left_and_flagged(tiny_model):
    with Engine(tiny_model, settings=EngineSettings(n_ctx=128, n_batch=64)) as eng:
        long_prompt = "please explain why " * 200
        judged = next(iter(eng.judge([JudgeRequest(1, long_prompt + "Answer:")])))
        assert judged.truncated and judged.tokens <= 127
        response = " the answer is no"
        s = next(iter(eng.loglik([LoglikRequest(1, long_prompt, response)])))
        assert s.truncated and s.tokens == len(eng.tokenize(response, add_bos=False))
        short = next(iter(eng.loglik([LoglikRequest(1, "short question", response)])))
        assert not short.truncated


def test_generation_is_reproducible_with_a_seed(chat_engine):
    prompt = chat_engine.format_user_turn("Tell me about safety.")
    a = chat_engine.generate(prompt, max_tokens=24, seed=7)
    b = chat_engine.generate(prompt, max_tokens=24, seed=7)
    c = chat_engine.generate(prompt, max_tokens=24, seed=8)
    assert a == b and a.tokens > 0 and a.text
    assert a.text != c.text
    greedy = chat_engine.generate(prompt, max_tokens=5, temperature=0)
    assert greedy.tokens <= 5


def test_generation_stops_at_stop_string(base_engine):
    prompt = base_engine.format_user_turn("Say something")
    full = base_engine.generate(prompt, max_tokens=30, seed=1)
    stop = full.text[len(full.text) // 2:][:2]
    assert stop.strip()
    cut = base_engine.generate(prompt, max_tokens=30, seed=1, stop=[stop])
    assert stop not in cut.text and full.text.startswith(cut.text)


def test_cancel_stops_scoring(chat_engine):
    reqs = _judge_requests(chat_engine)
    cancel = threading.Event()
    seen = []
    with pytest.raises(Cancelled):
        for s in chat_engine.judge(reqs, cancel=cancel):
            seen.append(s)
            cancel.set()
    assert 0 < len(seen) < len(reqs)
    # the engine is still usable afterwards and agrees with a fresh evaluation
    first = next(iter(chat_engine.judge(reqs[:1])))
    assert first.p_misaligned == pytest.approx(seen[0].p_misaligned, abs=1e-4)


def test_bad_model_file_is_one_line_user_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 100)
    with pytest.raises(UserError, match="cannot load model") as info:
        Engine(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such file"):
        Engine(tmp_path / "missing.gguf")


def test_llama_logs_go_to_python_logging_not_stderr(tiny_model, capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="misalign_tui.llama"):
        with Engine(tiny_model, settings=EngineSettings(n_ctx=128)) as eng:
            next(iter(eng.judge([JudgeRequest(1, "Yes or no?")])))
    captured = capfd.readouterr()
    assert "llama" not in captured.err and "ggml" not in captured.err
    assert any(r.name == "misalign_tui.llama" for r in caplog.records)


def test_llama_warnings_do_not_reach_stderr_in_a_plain_process(tiny_model):
    """Without handlers, Python's logging would print WARNING records on stderr (its "last resort")."""
    import subprocess
    import sys

    code = ("import logging, sys; from misalign_tui.core.inference.engine import Engine, EngineSettings, LOG; "
            "LOG.warning('llama_kv_cache_iswa: using full-size SWA cache'); "
            f"Engine({str(tiny_model)!r}, settings=EngineSettings(n_ctx=128)).close(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok" and done.stderr == ""


def test_provenance_and_device(base_engine):
    prov = base_engine.provenance()
    assert prov["llama_cpp_python"] == llama_cpp.__version__
    assert prov["chat_template"] == "plain" and prov["device"] == base_engine.device
    assert base_engine.device == "cpu" or base_engine.device.startswith("gpu")


def test_prefix_helpers():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert prefix_tree_size([[1, 2, 3], [1, 2, 4], [1, 5]]) == 5


# -- resumed runs equal uninterrupted ones (issue 13 §2) ------------------------------------------------------

@pytest.mark.parametrize("stored", [1, 7, 33, 50])
def test_judge_with_stored_items_skipped_equals_the_full_run_bit_for_bit(chat_engine, stored):
    """A resumed run passes every request and the stored keys: the rest score exactly as in one pass — the
    windows and the cache state do not depend on where the run was interrupted (inside a window or not)."""
    reqs = _judge_requests(chat_engine)
    full = {s.key: s for s in chat_engine.judge(reqs)}
    done = {r.key for r in reqs[:stored]}
    resumed = list(chat_engine.judge(reqs, skip=done))
    assert [s.key for s in resumed] == [r.key for r in reqs[stored:]]
    assert all(s == full[s.key] for s in resumed)  # every field, floats compared exactly


def test_loglik_with_stored_items_skipped_equals_the_full_run_bit_for_bit(base_engine):
    reqs = [LoglikRequest((p, side), f"Question {p}: is it fine to borrow a neighbour's ladder for day {p}?",
                          f" {'Ask first and return it' if side == 'a' else 'Take it and keep it'}, day {p}.")
            for p in range(30) for side in ("a", "m")]
    full = {s.key: s for s in base_engine.loglik(reqs)}
    for stored in (3, 41):
        resumed = list(base_engine.loglik(reqs, skip={r.key for r in reqs[:stored]}))
        assert [s.key for s in resumed] == [r.key for r in reqs[stored:]]
        assert all(s == full[s.key] for s in resumed)


def test_items_are_handed_out_as_their_decode_step_returns_not_at_the_end_of_the_window(tiny_chat_model,
                                                                                      monkeypatch):
    """The run writer can only commit what the engine has handed out: an item comes out after the decode step
    that holds its last token, while the rest of its window is still to be decoded."""
    from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE

    with Engine(tiny_chat_model, chat_template=SIMPLE_CHAT_TEMPLATE,
                settings=EngineSettings(n_ctx=4096, n_batch=64)) as eng:
        reqs = _judge_requests(eng, n_prompts=4, n_responses=4)[:16]  # one window (16 items fit 4096 cells)
        steps: list[int] = []
        decode = eng._decode
        monkeypatch.setattr(eng, "_decode", lambda n: (steps.append(n), decode(n))[1])
        at_yield = [len(steps) for _ in eng.judge(reqs)]
        assert len(at_yield) == 16 and len(steps) > 4
        assert at_yield[0] < len(steps)  # the first item came out before the window's last decode step
        assert at_yield == sorted(at_yield) and len(set(at_yield)) > 2
