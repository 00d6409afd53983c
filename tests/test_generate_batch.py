"""Batched generation (Engine.generate_many) on the tiny f32 models with the real llama.cpp.

On an f32 model the batch shape moves logits by ~1e-7, so batched text usually equals one-at-a-time text here;
it need not (a random model's flat distribution lets such a change flip a sampled token, as a quantized model's
noise does: documented in generate_many), so exact equality is asserted only where the shapes are the same.
"""

from __future__ import annotations

import threading

import pytest

from misalign_tui.core.errors import Cancelled
from misalign_tui.core.inference.engine import Engine, EngineSettings
from misalign_tui.core.inference.requests import GenerationRequest


@pytest.fixture(scope="module")
def engine(tiny_model):
    eng = Engine(tiny_model, settings=EngineSettings(n_ctx=1024))
    yield eng
    eng.close()


def _requests(n: int = 9, max_tokens: int = 16) -> list[GenerationRequest]:
    prompts = [f"User: tell me about item {i}\nAssistant:" for i in range(n - 3)] + ["User: same\nAssistant:"] * 3
    return [GenerationRequest(("p", i), t, 0.7, 0.9, max_tokens, (), 100 + i) for i, t in enumerate(prompts)]


def test_batches_give_the_one_at_a_time_text_in_request_order(engine):
    reqs = _requests()
    alone = [engine.generate(r.prompt, max_tokens=r.max_tokens, seed=r.seed) for r in reqs]
    for batch in (1, 4, 8, 16):
        got = list(engine.generate_many(reqs, batch=batch))
        assert [k for k, _ in got] == [r.key for r in reqs]
        assert [g for _, g in got] == alone, f"batch {batch}"
    # the three samples of one prompt have their own seeds: they differ
    assert len({alone[-1].text, alone[-2].text, alone[-3].text}) == 3


def test_same_seed_same_batch_repeats(engine):
    reqs = _requests(6)
    assert list(engine.generate_many(reqs, batch=4)) == list(engine.generate_many(reqs, batch=4))


def test_samplers_side_by_side_give_the_tokens_one_thread_samples(engine):
    """A batched step's sequences are sampled on several threads (engine.sample_threads): the same text."""
    reqs = _requests(12, max_tokens=24)
    saved = engine.sample_threads
    try:
        engine.sample_threads = 1
        serial = list(engine.generate_many(reqs, batch=8))
        engine.sample_threads = 4
        assert list(engine.generate_many(reqs, batch=8)) == serial
        assert engine._sample_pool is not None  # the threads did run
    finally:
        engine.sample_threads = saved


def test_shared_prompt_prefix_is_decoded_once(engine):
    prompt = "User: " + "a long shared instruction about safety and values " * 6 + "\nAssistant:"
    n_prompt = len(engine.tokenize(prompt))
    reqs = [GenerationRequest(i, prompt, 0.7, 0.9, 4, (), i) for i in range(4)]
    before = engine.tokens_decoded
    list(engine.generate_many(reqs, batch=4))
    together = engine.tokens_decoded - before
    before = engine.tokens_decoded
    list(engine.generate_many(reqs, batch=1))
    apart = engine.tokens_decoded - before
    assert together <= n_prompt + 4 * 4  # the prompt once, then each sequence's own tokens
    assert apart >= 4 * n_prompt


def test_each_sequence_has_its_own_stop_strings(engine):
    base = _requests(4, max_tokens=30)
    full = [g for _, g in engine.generate_many(base, batch=4)]
    stop = full[1].text[5:8]  # a string sequence 1 produces; the others do not stop on it unless they make it
    reqs = [r if i != 1 else GenerationRequest(r.key, r.prompt, r.temperature, r.top_p, r.max_tokens, (stop,),
                                               r.seed) for i, r in enumerate(base)]
    got = [g for _, g in engine.generate_many(reqs, batch=4)]
    assert got[1].text == full[1].text[:full[1].text.find(stop)] and not got[1].truncated
    # the others run on; the batch shape changed when sequence 1 left it, which may move their sampled text
    # (sampling on a random model's flat distribution), but the same requests repeat it exactly
    assert [g for _, g in engine.generate_many(reqs, batch=4)] == got
    assert all(got[i].tokens == 30 or not got[i].truncated for i in (0, 2, 3))


def test_a_batch_that_does_not_fit_the_context_is_split_never_cut(tiny_model):
    small = Engine(tiny_model, settings=EngineSettings(n_ctx=256))
    try:
        reqs = [GenerationRequest(i, f"User: question number {i}\nAssistant:", 0.7, 0.9, 100, (), i)
                for i in range(5)]
        groups = [len(g) for g in small._plan_gen_groups([small._gen_seq(i, r) for i, r in enumerate(reqs)], 8)]
        assert sum(groups) == 5 and max(groups) < 5  # 5 × 100 answer tokens cannot share 256 cells
        got = [g for _, g in small.generate_many(reqs, batch=8)]
        assert len(got) == 5 and got == [g for _, g in small.generate_many(reqs, batch=8)]
        # every answer gets its whole budget: only the budget (or end-of-generation) ends it
        assert all(g.tokens == 100 or not g.truncated for g in got)
        assert all(not s.truncated for s in (small._gen_seq(i, r) for i, r in enumerate(reqs)))
    finally:
        small.close()


class _CancelAfter(threading.Event):
    """An Event that reads as set from its n-th check on: a Ctrl+C that lands between two decode steps."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0 or super().is_set()


def test_cancel_stops_between_steps_and_the_rest_resumes_identically(engine):
    reqs = _requests(9, max_tokens=24)
    full = list(engine.generate_many(reqs, batch=4))
    got = []
    cancel = _CancelAfter(40)  # past the first group of 4, inside the second
    with pytest.raises(Cancelled):
        for item in engine.generate_many(reqs, batch=4, cancel=cancel):
            got.append(item)
    assert got == full[:4]
    assert engine.tokens_decoded >= 0 and cancel.n < 0
    # the rerun passes every request and skips the stored ones: same groups, same text
    rest = list(engine.generate_many(reqs, batch=4, skip={k for k, _ in got}))
    assert got + rest == full


def test_generate_run_cancelled_midway_resumes_to_the_uninterrupted_text(home, tmp_path, tiny_model):
    """The generate method samples in batches; a Ctrl+C between steps, then a rerun, gives the same generations
    as a run never interrupted (its groups are those of the whole run: skip, not a shorter list)."""
    from misalign_tui.core.inference.requests import Sampling
    from misalign_tui.core.models.registry import register_file
    from misalign_tui.core.runs.evaluate import run_evaluation
    from misalign_tui.core.runs.request import RunRequest
    from misalign_tui.core.store import Store
    from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

    def request(store: Store) -> RunRequest:
        model = register_file(store, tiny_model)
        return RunRequest(model, store.benchmark(FIXTURE_BENCHMARK), "generate", model, templates=1,
                          settings=EngineSettings(n_ctx=1024, gen_batch=4), sampling=Sampling(max_tokens=12))

    def texts(store: Store, run_id: int) -> dict[int, str]:
        return dict(store.conn.execute("SELECT prompt_id, text FROM generations WHERE run_id = ?", (run_id,)))

    whole_home = tmp_path / "whole"
    whole_home.mkdir()
    db, _ = make_store(whole_home)
    with Store(db) as store:
        whole = run_evaluation(store, request(store))
        expected = texts(store, whole.run_id)
    assert len(expected) == 6
    db, _ = make_store(home)
    with Store(db) as store:
        with pytest.raises(Cancelled):
            run_evaluation(store, request(store), cancel=_CancelAfter(30))  # inside the second group
        run_id = store.conn.execute("SELECT id FROM runs WHERE method = 'generate'").fetchone()[0]
        first = texts(store, run_id)
        assert 0 < len(first) < 6
        again = run_evaluation(store, request(store))
        assert again.run_id == run_id and again.status == "complete"
        assert texts(store, run_id) == expected
