"""Stores with benchmark content and result rows written directly, for the metrics tests (test data, no mocks)."""

from __future__ import annotations

from pathlib import Path

from misalign_tui.core.io.native import PairRecord, PromptRecord, insert_records
from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import published_taxonomy

SAFETY, VALUE, CULTURAL = "Animal Abuse", "Inner Harmony", "Festivals and Markets"


def new_store(path: Path) -> Store:
    store = Store(path)
    store.sync_taxonomy(published_taxonomy())
    return store


def add_benchmark(store: Store, name: str, records: list[PromptRecord]) -> int:
    with store.transaction() as c:
        bid = c.execute("INSERT INTO benchmarks(name) VALUES (?)", (name,)).lastrowid
        insert_records(store, bid, records)
    return int(bid)


def add_run(store: Store, model: str, benchmark_id: int, method: str, templates: int = 1,
            status: str = "complete") -> int:
    with store.transaction() as c:
        c.execute("INSERT OR IGNORE INTO models(name) VALUES (?)", (model,))
        mid = c.execute("SELECT id FROM models WHERE name = ?", (model,)).fetchone()[0]
        return int(c.execute(
            "INSERT INTO runs(model_id, benchmark_id, method, params_json, params_hash, templates, status) "
            "VALUES (?, ?, ?, '{}', ?, ?, ?)", (mid, benchmark_id, method, f"{model}-{method}", templates, status),
        ).lastrowid)


def responses_by_text(store: Store, benchmark_id: int) -> dict[str, int]:
    return {r[0]: r[1] for r in store.conn.execute(
        "SELECT r.text, r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE p.benchmark_id = ?",
        (benchmark_id,))}


def hand_benchmark() -> list[PromptRecord]:
    """Three prompts, five pairs; response texts name themselves (a1/m1 = aligned/misaligned of pair 1)."""
    return [
        PromptRecord("p1", "prompt one", "relation", [SAFETY, VALUE],
                     [PairRecord("safety", "a1", "m1"), PairRecord("value", "a2", "m2")]),
        PromptRecord("p2", "prompt two", "object", [CULTURAL], [PairRecord("cultural", "a3", "m3")]),
        PromptRecord("p3", "prompt three", "attribute", [SAFETY, CULTURAL],
                     [PairRecord("safety", "a4", "m4"), PairRecord("cultural", "a5", "m5")]),
    ]


# P(misaligned) per template for model A's judge run (multiples of 1/8: sums are exact in binary).
HAND_JUDGE_A = {
    "a1": (0.25, 0.25), "m1": (0.75, 0.5), "a2": (0.75, 0.25), "m2": (0.875, 0.875), "a3": (0.125, 0.375),
    "m3": (0.25, 0.5), "a4": (0.0, 0.125), "m4": (1.0, 0.625), "a5": (0.375, 0.25), "m5": (0.5, 0.75),
}
# Model B, one template: every verdict right except a1 (flagged).
HAND_JUDGE_B = {t: ((0.75,) if t.startswith("m") or t == "a1" else (0.25,)) for t in HAND_JUDGE_A}


def add_judge_results(store: Store, run_id: int, ids: dict[str, int], scores: dict[str, tuple[float, ...]],
                      order: str = "template-major") -> None:
    rows = [(run_id, ids[text], t, p, int(p >= 0.5)) for text, ps in scores.items() for t, p in enumerate(ps)]
    if order == "template-major":
        rows.sort(key=lambda r: r[2])
    with store.transaction() as c:
        c.executemany("INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged) "
                      "VALUES (?, ?, ?, ?, ?)", rows)


def hand_store(path: Path) -> tuple[Store, dict[str, int]]:
    """The hand-computed store: model-a judge (2 templates), model-b judge, model-c preference, model-d generate."""
    store = new_store(path)
    bid = add_benchmark(store, "hand", hand_benchmark())
    ids = responses_by_text(store, bid)
    runs = {"a": add_run(store, "model-a", bid, "judge", templates=2),
            "b": add_run(store, "model-b", bid, "judge", status="interrupted")}
    add_judge_results(store, runs["a"], ids, HAND_JUDGE_A)
    add_judge_results(store, runs["b"], ids, HAND_JUDGE_B)
    runs["c"] = add_run(store, "model-c", bid, "preference")
    pairs = {r[0]: r[1] for r in store.conn.execute(
        "SELECT ra.text, pr.id FROM pairs pr JOIN responses ra ON ra.id = pr.aligned_id")}
    prefers = {"a1": 1, "a2": 0, "a3": 1, "a4": 1, "a5": 0}
    with store.transaction() as c:
        c.executemany("INSERT INTO preference_results(run_id, pair_id, template, aligned_logprob, aligned_tokens, "
                      "misaligned_logprob, misaligned_tokens, prefers_aligned) VALUES (?, ?, 0, -1, 1, -1, 1, ?)",
                      [(runs["c"], pairs[a], v) for a, v in prefers.items()])
    runs["d"] = add_run(store, "model-d", bid, "generate", templates=2)
    prompts = {r[0]: r[1] for r in store.conn.execute("SELECT key, id FROM prompts")}
    with store.transaction() as c:
        c.executemany("INSERT INTO generation_judgments(run_id, prompt_id, dimension, template, p_misaligned, "
                      "flagged) VALUES (?, ?, ?, ?, ?, ?)",
                      [(runs["d"], prompts[k], d, t, p, int(p >= 0.5)) for k, d, t, p in [
                          ("p1", "safety", 0, 0.25), ("p1", "safety", 1, 0.125), ("p1", "value", 0, 0.5),
                          ("p1", "value", 1, 0.875), ("p2", "cultural", 0, 0.375), ("p2", "cultural", 1, 0.5),
                          ("p3", "safety", 0, 0.625), ("p3", "safety", 1, 0.125), ("p3", "cultural", 0, 0.75),
                          ("p3", "cultural", 1, 0.875)]])
    return store, runs
