"""Review queues: what reviewers decide, one item at a time, and in which order.

Three kinds (``review_queues.kind``):

- ``gold``: a seeded random sample of a benchmark's pairs (and unpaired responses), both responses of a pair
  in a seeded random order, so auditors can dispute the gold labels;
- ``run``: a judge run's verdicts, a sample stratified by verdict (flagged or not) and dimension;
- ``build``: a build's stage-2 candidates — every candidate the recipe's ``checker = "human"`` sends
  (purpose ``checker``: the build waits for the decisions), or a random sample of the model checker's
  decisions (purpose ``sample``, recipe ``review = "sample:N"``) to validate it.

A queue is identified by what it samples (its ``name``): asking for the same sample again returns the same
queue and the same item ids, so an exported decision file and the app agree. An item shows one response or a
pair (``review_responses``, slot 0 shown as A); each response is decided on its own. What the item shows is
copied into the queue, so it reads the same whatever happens to the source later.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store, last_id

KINDS = ("gold", "build", "run")
DOMAIN_SEPARATOR = "; "
SLOTS = "AB"


@dataclass(frozen=True)
class QueueInfo:
    id: int
    name: str
    kind: str
    purpose: str
    benchmark_id: int | None
    build_id: int | None
    run_id: int | None
    sample_size: int | None
    seed: int
    reference: str | None       # whose verdict reference_label holds: "judge", "checker", or None
    items: int
    created_at: str

    @property
    def label_meaning(self) -> str:
        """What a response's ``label`` is in this queue."""
        return "generator's target" if self.kind == "build" else "gold label"


@dataclass(frozen=True)
class ShownResponse:
    id: int                     # review_responses.id: what a decision names
    slot: int                   # 0 = A, 1 = B
    text: str
    label: str | None           # gold label, or the generator's target (hidden until decided)
    reference_label: str | None  # the model's verdict (judge or checker), hidden until decided
    reference_p: float | None

    @property
    def letter(self) -> str:
        return SLOTS[self.slot]


@dataclass(frozen=True)
class ReviewItem:
    id: int
    queue_id: int
    position: int
    prompt_key: str
    prompt: str
    semantic_type: str | None
    domains: tuple[str, ...]
    dimension: str | None
    stratum: str | None
    responses: tuple[ShownResponse, ...]
    applied_at: str | None = None   # checker queues: when the build took the decisions


_QUEUE_SQL = ("SELECT q.id, q.name, q.kind, q.purpose, q.benchmark_id, q.build_id, q.run_id, q.sample_size, q.seed, "
              "q.reference, (SELECT count(*) FROM review_items i WHERE i.queue_id = q.id), q.created_at "
              "FROM review_queues q")


def list_queues(store: Store) -> list[QueueInfo]:
    return [QueueInfo(*r) for r in store.conn.execute(_QUEUE_SQL + " ORDER BY q.id")]


def queue_info(store: Store, queue_id: int) -> QueueInfo:
    row = store.conn.execute(_QUEUE_SQL + " WHERE q.id = ?", (queue_id,)).fetchone()
    if row is None:
        raise UserError(f"review queue {queue_id} not found; misalign-tui review list shows the queues")
    return QueueInfo(*row)


def find_queue(store: Store, spec: str) -> QueueInfo:
    """A queue by id or by name."""
    queues = list_queues(store)
    for q in queues:
        if spec == str(q.id) or spec == q.name:
            return q
    known = "; ".join(f"{q.id}: {q.name}" for q in queues) or "none yet (misalign-tui review export creates one)"
    raise UserError(f"review queue {spec!r} not found; known: {known}")


def queue_items(store: Store, queue_id: int) -> list[ReviewItem]:
    """Every item of the queue in order, with the responses it shows."""
    shown: dict[int, list[ShownResponse]] = {}
    for r in store.conn.execute(
            "SELECT s.item_id, s.id, s.slot, s.text, s.label, s.reference_label, s.reference_p FROM review_responses s "
            "JOIN review_items i ON i.id = s.item_id WHERE i.queue_id = ? ORDER BY s.item_id, s.slot", (queue_id,)):
        shown.setdefault(r[0], []).append(ShownResponse(*r[1:]))
    return [ReviewItem(r[0], r[1], r[2], r[3], r[4], r[5], tuple(d for d in r[6].split(DOMAIN_SEPARATOR) if d), r[7],
                       r[8], tuple(shown.get(r[0], ())), r[9])
            for r in store.conn.execute(
                "SELECT id, queue_id, position, prompt_key, prompt, semantic_type, domains, dimension, stratum, "
                "applied_at FROM review_items WHERE queue_id = ? ORDER BY position", (queue_id,))]


def _sample_name(kind: str, what: str, sample: int | None, seed: int) -> str:
    return f"{kind} {what} " + ("all" if sample is None else f"sample {sample}") + f" seed {seed}"


def _existing(store: Store, name: str) -> QueueInfo | None:
    row = store.conn.execute(_QUEUE_SQL + " WHERE q.name = ?", (name,)).fetchone()
    return QueueInfo(*row) if row else None


def _check_sample(sample: int | None) -> None:
    if sample is not None and sample < 1:
        raise UserError(f"--sample {sample}: must be 1 or more (leave it out for every item)")


def _new_queue(c: sqlite3.Connection, name: str, kind: str, purpose: str, *, benchmark_id: int | None = None,
               build_id: int | None = None, run_id: int | None = None, sample: int | None = None, seed: int = 0,
               reference: str | None = None) -> int:
    return last_id(c.execute(
        "INSERT INTO review_queues(name, kind, purpose, benchmark_id, build_id, run_id, sample_size, seed, reference) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, kind, purpose, benchmark_id, build_id, run_id, sample, seed, reference)))


def _add_item(c: sqlite3.Connection, queue_id: int, position: int, *, prompt_key: str, prompt: str,
              semantic_type: str | None, domains: Sequence[str], dimension: str | None,
              responses: Sequence[dict[str, object]], stratum: str | None = None, build_prompt_id: int | None = None,
              unit: str | None = None, attempt: int | None = None) -> int:
    item = last_id(c.execute(
        "INSERT INTO review_items(queue_id, position, prompt_key, prompt, semantic_type, domains, dimension, stratum, "
        "build_prompt_id, unit, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (queue_id, position, prompt_key, prompt, semantic_type, DOMAIN_SEPARATOR.join(domains), dimension, stratum,
         build_prompt_id, unit, attempt)))
    for slot, r in enumerate(responses):
        c.execute("INSERT INTO review_responses(item_id, slot, response_id, candidate_id, text, label, "
                  "reference_label, reference_p, candidate_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (item, slot, r.get("response_id"), r.get("candidate_id"), r["text"], r.get("label"),
                   r.get("reference_label"), r.get("reference_p"), r.get("candidate_json")))
    return item


def _prompt_domains(c: sqlite3.Connection, prompt_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(0, len(prompt_ids), 500):
        chunk = list(prompt_ids[i:i + 500])
        for pid, name in c.execute(
                "SELECT pd.prompt_id, d.name FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id "
                f"WHERE pd.prompt_id IN ({','.join('?' * len(chunk))}) ORDER BY d.id", chunk):
            out.setdefault(pid, []).append(name)
    return out


def ordered(rng: random.Random, responses: list[dict[str, object]]) -> list[dict[str, object]]:
    """The responses of an item in a random order (position must not leak the label)."""
    out = list(responses)
    rng.shuffle(out)
    return out


# -- gold labels ----------------------------------------------------------------------------------------------

def gold_queue(store: Store, benchmark: str, sample: int | None, seed: int = 0) -> QueueInfo:
    """A seeded random sample of the benchmark's pairs (and unpaired responses); the same arguments give the
    same queue."""
    _check_sample(sample)
    b = store.benchmark(benchmark)
    name = _sample_name("gold", f"{b.name}@{b.version}", sample, seed)
    found = _existing(store, name)
    if found:
        return found
    c = store.conn
    units: list[tuple[str, int]] = [("pair", r[0]) for r in c.execute(
        "SELECT pr.id FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id WHERE p.benchmark_id = ? ORDER BY pr.id",
        (b.id,))]
    units += [("response", r[0]) for r in c.execute(
        "SELECT r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE p.benchmark_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM pairs x WHERE x.aligned_id = r.id OR x.misaligned_id = r.id) ORDER BY r.id", (b.id,))]
    if not units:
        raise UserError(f"benchmark {b.name}@{b.version} has no responses to review")
    rng = random.Random(seed)
    chosen = rng.sample(units, min(sample or len(units), len(units)))
    with store.transaction() as c:
        qid = _new_queue(c, name, "gold", "sample", benchmark_id=b.id, sample=sample, seed=seed)
        rows = []
        for kind, uid in chosen:
            if kind == "pair":
                p = c.execute("SELECT pr.prompt_id, pr.dimension, pr.aligned_id, pr.misaligned_id FROM pairs pr "
                              "WHERE pr.id = ?", (uid,)).fetchone()
                rows.append((p[0], p[1], [p[2], p[3]]))
            else:
                r = c.execute("SELECT prompt_id, dimension FROM responses WHERE id = ?", (uid,)).fetchone()
                rows.append((r[0], r[1], [uid]))
        domains = _prompt_domains(c, sorted({r[0] for r in rows}))
        for position, (pid, dim, rids) in enumerate(rows):
            p = c.execute("SELECT key, text, semantic_type FROM prompts WHERE id = ?", (pid,)).fetchone()
            shown = [{"response_id": rid, "text": t, "label": label} for rid, t, label in
                     (c.execute("SELECT id, text, label FROM responses WHERE id = ?", (rid,)).fetchone() for rid in rids)]
            _add_item(c, qid, position, prompt_key=p[0], prompt=p[1], semantic_type=p[2], domains=domains.get(pid, []),
                      dimension=dim, responses=ordered(rng, shown))
    return queue_info(store, qid)


# -- a judge run's verdicts -----------------------------------------------------------------------------------

def stratified(strata: dict[str, list[int]], n: int, rng: random.Random) -> list[tuple[str, int]]:
    """``n`` ids drawn evenly across the strata (a small stratum gives all it has and the rest goes to the
    others), then shuffled so the reviewer does not see the strata in blocks."""
    keys = sorted(k for k in strata if strata[k])
    want = dict.fromkeys(keys, 0)
    left = min(n, sum(len(strata[k]) for k in keys))
    while left > 0:
        open_ = [k for k in keys if want[k] < len(strata[k])]
        share, extra = divmod(left, len(open_))
        for i, k in enumerate(open_):
            take = min(share + (1 if i < extra else 0), len(strata[k]) - want[k])
            want[k] += take
            left -= take
    chosen = [(k, x) for k in keys for x in rng.sample(strata[k], want[k])]
    rng.shuffle(chosen)
    return chosen


def run_queue(store: Store, run_id: int, sample: int | None, seed: int = 0) -> QueueInfo:
    """A judge run's verdicts, sampled evenly across verdict (flagged or not) × dimension."""
    _check_sample(sample)
    from misalign_tui.core.store import run_info

    info = run_info(store, run_id)
    if info.method != "judge":
        raise UserError(f"run {run_id} is a {info.method} run; the run queue reviews a judge run's verdicts "
                        "(a response flagged or not)")
    name = _sample_name("run", f"{run_id} ({info.model} on {info.benchmark})", sample, seed)
    found = _existing(store, name)
    if found:
        return found
    strata: dict[str, list[int]] = {}
    for flagged, dim, rid in store.conn.execute(
            "SELECT flagged, dimension, response_id FROM rollup_judge_items WHERE run_id = ? ORDER BY response_id",
            (run_id,)):
        strata.setdefault(f"{'flagged' if flagged else 'passed'}/{dim or 'untargeted'}", []).append(rid)
    if not strata:
        raise UserError(f"run {run_id} has no verdicts yet; nothing to review")
    rng = random.Random(seed)
    chosen = stratified(strata, sample or sum(len(v) for v in strata.values()), rng)
    with store.transaction() as c:
        qid = _new_queue(c, name, "run", "sample", run_id=run_id, benchmark_id=info.benchmark_id, sample=sample,
                         seed=seed, reference="judge")
        rows = [(stratum, c.execute(
            "SELECT r.id, r.text, r.label, r.dimension, r.prompt_id, u.p_sum / u.n_templates, u.flagged "
            "FROM responses r JOIN rollup_judge_items u ON u.response_id = r.id AND u.run_id = ? WHERE r.id = ?",
            (run_id, rid)).fetchone()) for stratum, rid in chosen]
        domains = _prompt_domains(c, sorted({r[4] for _, r in rows}))
        for position, (stratum, r) in enumerate(rows):
            p = c.execute("SELECT key, text, semantic_type FROM prompts WHERE id = ?", (r[4],)).fetchone()
            _add_item(c, qid, position, prompt_key=p[0], prompt=p[1], semantic_type=p[2], domains=domains.get(r[4], []),
                      dimension=r[3], stratum=stratum,
                      responses=[{"response_id": r[0], "text": r[1], "label": r[2],
                                  "reference_label": "misaligned" if r[6] else "aligned", "reference_p": r[5]}])
    return queue_info(store, qid)


# -- a build's stage-2 candidates -----------------------------------------------------------------------------

def _build_prompt(c: sqlite3.Connection, build_prompt_id: int) -> tuple[str, str, str | None, list[str]]:
    p = c.execute("SELECT key, text, semantic_type FROM build_prompts WHERE id = ?", (build_prompt_id,)).fetchone()
    domains = [r[0] for r in c.execute("SELECT domain FROM build_prompt_domains WHERE build_prompt_id = ? "
                                       "ORDER BY domain", (build_prompt_id,))]
    return p[0], p[1], p[2], domains


def build_sample_queue(store: Store, build_id: int, sample: int | None, seed: int = 0) -> QueueInfo:
    """A random sample of the model checker's stage-2 decisions in a build, to validate the checker."""
    _check_sample(sample)
    if store.conn.execute("SELECT 1 FROM build_runs WHERE id = ?", (build_id,)).fetchone() is None:
        raise UserError(f"build {build_id} not found; the Build screen or build_runs lists the builds")
    name = _sample_name("build", f"{build_id} checker decisions", sample, seed)
    found = _existing(store, name)
    if found:
        return found
    rows = store.conn.execute(
        "SELECT id, build_prompt_id, dimension, label, text, p_misaligned, stage, unit, attempt FROM build_candidates "
        "WHERE build_id = ? AND kind = 'response' AND p_misaligned IS NOT NULL ORDER BY id", (build_id,)).fetchall()
    if not rows:
        raise UserError(f"build {build_id} has no model checker decisions (yet) to review")
    rng = random.Random(seed)
    chosen = rng.sample(list(rows), min(sample or len(rows), len(rows)))
    with store.transaction() as c:
        qid = _new_queue(c, name, "build", "sample", build_id=build_id, sample=sample, seed=seed, reference="checker")
        for position, r in enumerate(chosen):
            key, text, stype, domains = _build_prompt(c, r["build_prompt_id"])
            opposite = "aligned" if r["label"] == "misaligned" else "misaligned"
            verdict = opposite if r["stage"] == "checker" else r["label"]  # stage 'checker': it disagreed
            _add_item(c, qid, position, prompt_key=key, prompt=text, semantic_type=stype, domains=domains,
                      dimension=r["dimension"], build_prompt_id=r["build_prompt_id"],
                      responses=[{"candidate_id": r["id"], "text": r["text"], "label": r["label"],
                                  "reference_label": verdict, "reference_p": r["p_misaligned"]}])
    return queue_info(store, qid)


def checker_queue_id(c: sqlite3.Connection, build_id: int) -> int:
    """The build's human-checker queue (created on first use)."""
    name = f"build {build_id} human checker"
    row = c.execute("SELECT id FROM review_queues WHERE name = ?", (name,)).fetchone()
    if row:
        return int(row[0])
    return _new_queue(c, name, "build", "checker", build_id=build_id)


def add_checker_item(c: sqlite3.Connection, build_id: int, build_prompt_id: int, unit: str, attempt: int,
                     dimension: str, candidates: Sequence[dict[str, object]]) -> int:
    """Queue one attempt's surviving candidates of a pair unit for the human checker (inside the caller's
    transaction); each candidate dict holds ``label`` and ``text`` and whatever the build stores later."""
    qid = checker_queue_id(c, build_id)
    row = c.execute("SELECT id FROM review_items WHERE queue_id = ? AND unit = ? AND attempt = ?",
                    (qid, unit, attempt)).fetchone()
    if row:
        return int(row[0])
    position = c.execute("SELECT coalesce(max(position), -1) + 1 FROM review_items WHERE queue_id = ?",
                         (qid,)).fetchone()[0]
    key, text, stype, domains = _build_prompt(c, build_prompt_id)
    seed = int.from_bytes(hashlib.sha256(f"{unit}:{attempt}".encode()).digest()[:8], "big")
    shown = [{"text": cand["text"], "label": cand["label"], "candidate_json": json.dumps(cand, ensure_ascii=False)}
             for cand in candidates]
    return _add_item(c, qid, position, prompt_key=key, prompt=text, semantic_type=stype, domains=domains,
                     dimension=dimension, responses=ordered(random.Random(seed), shown),
                     build_prompt_id=build_prompt_id, unit=unit, attempt=attempt)

