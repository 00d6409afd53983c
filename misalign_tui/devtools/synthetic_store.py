"""A large synthetic store for speed measurements (metrics, the TUI benchmark): no text worth reading, real
schema, real triggers.

``populate_synthetic_store(store, responses=200_000, models=5)`` writes one benchmark of prompts over the real
taxonomy — each prompt labelled with one to three dimensions, a domain of each, one aligned/misaligned pair per
dimension — and, for each of N models, a complete judge run with one result row per response and template
(1,000,000 rows for the defaults). Rows go in with ``executemany``, one transaction per chunk, and the rollup
triggers fill the metric rollups as they would for a live run.

``python -m misalign_tui.devtools.synthetic_store DB [--responses N] [--models M]`` builds one and times the
metric queries on it (see README, "Metrics").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES, published_taxonomy

CHUNK_ROWS = 50_000
# Share of prompts labelled with 1, 2 and 3 dimensions.
DIMENSION_COUNT_WEIGHTS = (0.3, 0.5, 0.2)


@dataclass(frozen=True)
class SyntheticSummary:
    benchmark_id: int
    run_ids: list[int]
    prompts: int
    responses: int
    result_rows: int
    seconds: float


def populate_synthetic_store(store: Store, *, responses: int = 200_000, models: int = 5, seed: int = 0,
                             templates: int = 1, name: str | None = None,
                             progress: Callable[[str], None] | None = None) -> SyntheticSummary:
    """Write a synthetic benchmark of about ``responses`` responses and a complete judge run per model.

    Each model has its own skill per dimension, so profiles, trade-offs and comparisons differ between models.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    say = progress or (lambda _msg: None)
    if not store.conn.execute("SELECT 1 FROM domains LIMIT 1").fetchone():
        store.sync_taxonomy(published_taxonomy())
    dims = list(DIMENSIONS)
    stypes = list(SEMANTIC_TYPES)
    domain_rows = store.conn.execute("SELECT id, dimension FROM domains ORDER BY id").fetchall()
    domains_by_dim = {d: np.array([r[0] for r in domain_rows if r[1] == d]) for d in dims}
    name = name or f"synthetic-{responses}-{seed}"

    # Plan prompts until the responses are reached: each dimension of a prompt gets one pair (2 responses).
    n_dims_choices = rng.choice([1, 2, 3], size=responses, p=DIMENSION_COUNT_WEIGHTS)
    prompt_dims: list[list[str]] = []
    total = 0
    for k in n_dims_choices:
        if total >= responses:
            break
        k = int(min(k, (responses - total) // 2 or 1))
        prompt_dims.append([dims[i] for i in sorted(rng.choice(len(dims), size=k, replace=False))])
        total += 2 * k
    n_prompts = len(prompt_dims)

    c = store.conn
    with store.transaction():
        version = (c.execute("SELECT coalesce(max(version), 0) + 1 FROM benchmarks WHERE name = ?",
                             (name,)).fetchone()[0])
        bid = c.execute(
            "INSERT INTO benchmarks(name, version, description, licence, source_json) VALUES (?, ?, ?, ?, ?)",
            (name, version, "synthetic store for speed measurements (no meaningful text)", "MIT",
             json.dumps({"synthetic": True, "responses": responses, "seed": seed})),
        ).lastrowid
        first_prompt = c.execute("SELECT coalesce(max(id), 0) + 1 FROM prompts").fetchone()[0]
        first_response = c.execute("SELECT coalesce(max(id), 0) + 1 FROM responses").fetchone()[0]
        first_pair = c.execute("SELECT coalesce(max(id), 0) + 1 FROM pairs").fetchone()[0]
        prompt_rows, label_rows, response_rows, pair_rows = [], [], [], []
        types = rng.integers(0, len(stypes), size=n_prompts)
        rid, pair_id = first_response, first_pair
        for i, pdims in enumerate(prompt_dims):
            pid = first_prompt + i
            prompt_rows.append((pid, bid, f"syn-{i:07d}", f"synthetic prompt {i}", stypes[types[i]], "synthetic"))
            chosen = {int(rng.choice(domains_by_dim[d])) for d in pdims}
            if rng.random() < 0.25:  # some prompts carry a second domain of their first dimension
                chosen.add(int(rng.choice(domains_by_dim[pdims[0]])))
            label_rows.extend((pid, d) for d in sorted(chosen))
            for d in pdims:
                response_rows.append((rid, pid, d, "aligned", f"aligned answer {rid}", "synthetic"))
                response_rows.append((rid + 1, pid, d, "misaligned", f"misaligned answer {rid + 1}", "synthetic"))
                pair_rows.append((pair_id, pid, d, rid, rid + 1))
                rid += 2
                pair_id += 1
        c.executemany("INSERT INTO prompts(id, benchmark_id, key, text, semantic_type, origin) VALUES (?,?,?,?,?,?)",
                      prompt_rows)
        c.executemany("INSERT INTO prompt_domains(prompt_id, domain_id) VALUES (?, ?)", label_rows)
        c.executemany("INSERT INTO responses(id, prompt_id, dimension, label, text, origin) VALUES (?,?,?,?,?,?)",
                      response_rows)
        c.executemany("INSERT INTO pairs(id, prompt_id, dimension, aligned_id, misaligned_id) VALUES (?,?,?,?,?)",
                      pair_rows)
        store.update_content_hash(bid)
    say(f"benchmark {name}: {n_prompts} prompts, {len(response_rows)} responses "
        f"({time.perf_counter() - t0:.1f} s)")

    resp_ids = np.array([r[0] for r in response_rows], dtype=np.int64)
    is_mis = np.array([r[3] == "misaligned" for r in response_rows])
    dim_idx = np.array([dims.index(r[2]) for r in response_rows])
    run_ids: list[int] = []
    rows_written = 0
    for m in range(models):
        with store.transaction():
            model_id = c.execute(
                "INSERT INTO models(name, path, sha256, quantization) VALUES (?, NULL, ?, 'synthetic') "
                "ON CONFLICT(name) DO UPDATE SET sha256 = excluded.sha256 RETURNING id",
                (f"synthetic-model-{m + 1}", f"synthetic-{seed}-{m + 1}"),
            ).fetchone()[0]
            params = json.dumps({"synthetic": True, "seed": seed, "templates": templates})
            run_id = c.execute(
                "INSERT INTO runs(model_id, model_sha256, benchmark_id, method, params_json, params_hash, templates,"
                " status, items_total, items_done, finished_at) VALUES (?, ?, ?, 'judge', ?, ?, ?, 'complete', ?, ?,"
                " strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                (model_id, f"synthetic-{seed}-{m + 1}", bid, params, f"synthetic-{seed}-{m}", templates,
                 len(resp_ids), len(resp_ids)),
            ).lastrowid
            c.executemany("INSERT INTO run_templates(run_id, template, name, text) VALUES (?, ?, ?, ?)",
                          [(run_id, t, f"synthetic-{t}", "{prompt}\n{response}") for t in range(templates)])
        run_ids.append(run_id)
        # Skill per dimension: how far the model's logit leans towards the right answer; a bias towards flagging.
        skill = rng.uniform(0.5, 2.5, size=len(dims))
        bias = rng.uniform(-0.8, 0.8)
        for t in range(templates):
            logit = np.where(is_mis, 1.0, -1.0) * skill[dim_idx] + bias + rng.normal(0, 1.2, size=len(resp_ids))
            p = 1.0 / (1.0 + np.exp(-logit))
            for start in range(0, len(resp_ids), CHUNK_ROWS):
                sl = slice(start, start + CHUNK_ROWS)
                chunk = zip(np.full(len(resp_ids[sl]), run_id).tolist(), resp_ids[sl].tolist(),
                            [t] * len(resp_ids[sl]), p[sl].tolist(), (p[sl] >= 0.5).astype(int).tolist(),
                            strict=True)
                with store.transaction():
                    c.executemany("INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged)"
                                  " VALUES (?, ?, ?, ?, ?)", chunk)
                rows_written += len(resp_ids[sl])
        say(f"model {m + 1}/{models}: run {run_id}, {rows_written} result rows "
            f"({time.perf_counter() - t0:.1f} s)")
    return SyntheticSummary(bid, run_ids, n_prompts, len(response_rows), rows_written, time.perf_counter() - t0)


def time_metrics(store: Store, run_id: int, repeats: int = 7) -> dict[str, float]:
    """Median wall time (ms) of the explorer's metric calls on one run: what a filter change costs."""
    from misalign_tui.core import metrics

    calls: dict[str, Callable[[], object]] = {
        "profile_overall_ms": lambda: metrics.profile(store, run_id),
        "profile_by_domain_ms": lambda: metrics.profile(store, run_id, group_by="domain"),
        "profile_by_dimension_filtered_ms": lambda: metrics.profile(
            store, run_id, group_by="dimension", filters={"semantic_type": ["relation"]}),
        "profile_two_domains_ms": lambda: metrics.profile(
            store, run_id, filters={"domain": ["Animal Abuse", "Inner Harmony"]}),
        "trade_offs_ms": lambda: metrics.trade_offs(store, run_id),
        "trade_offs_domain_filter_ms": lambda: metrics.trade_offs(store, run_id, {"domain": ["Animal Abuse"]}),
    }
    out = {}
    for name, call in calls.items():
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            call()
            times.append(1000 * (time.perf_counter() - t))
        out[name] = round(float(np.median(times)), 1)
    t = time.perf_counter()
    metrics.profile(store, run_id, group_by="domain", bootstrap=1000)
    out["profile_by_domain_bootstrap1000_ms"] = round(1000 * (time.perf_counter() - t), 1)
    t = time.perf_counter()
    metrics.compare(store, run_id, run_id + 1 if run_id > 1 else run_id, group_by="domain")
    out["compare_by_domain_ms"] = round(1000 * (time.perf_counter() - t), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    """Build (or reuse) a synthetic store and print the metric timings as JSON."""
    import argparse
    import sys
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m misalign_tui.devtools.synthetic_store", description=main.__doc__)
    ap.add_argument("db", type=Path, help="database file; reused when it already holds a synthetic benchmark")
    ap.add_argument("--responses", type=int, default=200_000)
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    store = Store(args.db)
    report: dict[str, object] = {}
    row = store.conn.execute("SELECT max(id), count(*) FROM runs").fetchone()
    if not row[1]:
        summary = populate_synthetic_store(store, responses=args.responses, models=args.models, seed=args.seed,
                                           progress=lambda m: print(m, file=sys.stderr))
        report["populate_s"] = round(summary.seconds, 1)
        row = store.conn.execute("SELECT max(id), count(*) FROM runs").fetchone()
    report["result_rows"] = store.conn.execute("SELECT count(*) FROM judge_results").fetchone()[0]
    report["responses"] = store.conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    report.update(time_metrics(store, int(row[0]) - 1 if row[1] > 1 else int(row[0])))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
