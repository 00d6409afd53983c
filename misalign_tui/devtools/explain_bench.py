"""``bench explain``: the figures of issue 18 §1, on a real model and the seed benchmark.

(a) **Explain latency** of one judge item: a judge run over the first ``judge_prompts`` seed prompts, then the
explanation of its response with the most sentences (the slowest case there), ``repeats`` times through one loaded
model: the batched pass alone, and the model load beside it (what ``misalign-tui explain`` adds once).
(b) **Store growth** per 1,000 preference items: a preference run over the first ``preference_prompts`` seed
prompts; the database is copied twice — as is, and with ``preference_token_logprobs`` emptied — both vacuumed,
and the size difference is scaled to 1,000 pairs. (c) The alternative, recomputing on demand: the time to rescore
one pair through the loaded model. The pass's distinct tokens (its prefix tree) and CPU seconds are printed beside
its wall time, so a figure taken on a loaded machine can be read.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from misalign_tui.core.inference.attribution import sentence_spans, without
from misalign_tui.core.inference.backend import Backend
from misalign_tui.core.inference.engine import Engine, EngineSettings, prefix_tree_size
from misalign_tui.core.inference.judge_templates import judge_templates
from misalign_tui.core.io.native import SEED_BENCHMARK, load_seed_benchmark
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.models.registry import ModelInfo
from misalign_tui.core.runs.evaluate import judge_text, run_evaluation
from misalign_tui.core.runs.request import RunRequest
from misalign_tui.core.store import RunInfo, Store, run_info
from misalign_tui.core.views.explain import explain_judge, open_run_backend, recompute_preference


def _vacuumed_size(src: Path, empty_tokens: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.sqlite"
        with sqlite3.connect(src) as c, sqlite3.connect(copy) as d:
            c.backup(d)
        with sqlite3.connect(copy) as d:
            if empty_tokens:
                d.execute("DELETE FROM preference_token_logprobs")
                d.commit()
            d.execute("VACUUM")
            pages = d.execute("PRAGMA page_count").fetchone()[0] * d.execute("PRAGMA page_size").fetchone()[0]
        return int(pages)  # the file itself may still hold the pre-VACUUM pages in its WAL


def _pass_tokens(store: Store, run: RunInfo, response_id: int, backend: Backend) -> tuple[int, int]:
    """(distinct, total) tokens of the explanation's requests: the prefix tree the engine decodes, and the sum."""
    if not isinstance(backend, Engine):
        return 0, 0
    text, prompt = store.conn.execute("SELECT r.text, p.text FROM responses r JOIN prompts p ON p.id = r.prompt_id "
                                      "WHERE r.id = ?", (response_id,)).fetchone()
    variants = [text] + [without(text, s) for s in sentence_spans(text)]
    seqs = [backend.tokenize(backend.fit_prompt(judge_text(backend, t, v), prompt)[0])
            for t in judge_templates(run.templates) for v in variants]
    return prefix_tree_size(seqs), sum(len(s) for s in seqs)


def run_explain_bench(store: Store, model: ModelInfo, *, judge_prompts: int, preference_prompts: int,
                      templates: int, repeats: int, say: Callable[[str], None]) -> dict[str, Any]:
    load_seed_benchmark(store)
    bench = store.benchmark(SEED_BENCHMARK)
    out: dict[str, Any] = {"model": model.name, "model_sha256": model.sha256, "benchmark": SEED_BENCHMARK}
    if judge_prompts:
        say(f"judge run over {judge_prompts} seed prompt(s)…")
        res = run_evaluation(store, RunRequest(model, bench, "judge", None, Filters(), judge_prompts, templates,
                                               EngineSettings()))
        run = run_info(store, res.run_id)
        rid, text = max(store.conn.execute(
            "SELECT r.id, r.text FROM judge_results jr JOIN responses r ON r.id = jr.response_id WHERE jr.run_id = ? "
            "GROUP BY r.id ORDER BY r.id", (run.id,)).fetchall(), key=lambda r: (len(r[1]), -r[0]))
        t0 = time.perf_counter()
        backend = open_run_backend(store, run)
        load_s = time.perf_counter() - t0
        try:
            passes, cpu = [], []
            for i in range(repeats):
                say(f"explaining response {rid} ({i + 1}/{repeats})…")
                c0 = time.process_time()
                e = explain_judge(store, run, rid, backend)
                cpu.append(time.process_time() - c0)
                passes.append(e.seconds)
            unique, total = _pass_tokens(store, run, rid, backend)
        finally:
            backend.close()
        out.update({"judge_run_id": run.id, "response_id": rid, "templates": e.templates,
                    "sentences": len(e.sentences), "requests": e.requests, "response_chars": len(text),
                    "model_load_s": round(load_s, 3), "explain_pass_s_median": round(statistics.median(passes), 3),
                    "explain_pass_s_best": round(min(passes), 3),
                    "explain_pass_cpu_s_median": round(statistics.median(cpu), 3),
                    "pass_tokens": total, "pass_unique_tokens": unique,
                    "pass_unique_tokens_per_s": round(unique / statistics.median(passes)),
                    "explain_total_s": round(load_s + statistics.median(passes), 3),
                    "target_under_5_s": load_s + statistics.median(passes) < 5.0})
    if preference_prompts:
        say(f"preference run over {preference_prompts} seed prompt(s)…")
        res = run_evaluation(store, RunRequest(model, bench, "preference", None, Filters(), preference_prompts, 1,
                                               EngineSettings()))
        run = run_info(store, res.run_id)
        pairs, tokens, blob = store.conn.execute(
            "SELECT count(*), sum(length(aligned_lengths) + length(misaligned_lengths)) / 2, "
            "sum(length(aligned_logprobs) + length(aligned_lengths) + length(misaligned_logprobs) + "
            "length(misaligned_lengths)) FROM preference_token_logprobs WHERE run_id = ?", (run.id,)).fetchone()
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with_tokens = _vacuumed_size(store.path, False)
        without = _vacuumed_size(store.path, True)
        backend = open_run_backend(store, run)
        try:
            pair_ids = [r[0] for r in store.conn.execute(
                "SELECT pair_id FROM preference_results WHERE run_id = ? ORDER BY pair_id LIMIT 2", (run.id,))]
            t0 = time.perf_counter()
            for pid in pair_ids:
                recompute_preference(store, run, pid, backend)
            recompute_s = (time.perf_counter() - t0) / max(len(pair_ids), 1)
        finally:
            backend.close()
        out.update({"preference_run_id": run.id, "pairs": pairs, "tokens": tokens, "blob_bytes": blob,
                    "store_bytes_with_tokens": with_tokens, "store_bytes_without_tokens": without,
                    "growth_bytes_per_1000_pairs": round((with_tokens - without) * 1000 / max(pairs, 1)),
                    "blob_bytes_per_1000_pairs": round((blob or 0) * 1000 / max(pairs, 1)),
                    "recompute_s_per_pair": round(recompute_s, 3)})
    return out
