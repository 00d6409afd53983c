"""What the Review screen shows, headless: a reviewer's place in a queue, their progress and rate, and the
model's verdict (or the label) once it may be seen."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from misalign_tui.core.review.queues import QueueInfo, ReviewItem, ShownResponse
from misalign_tui.core.store import Store


@dataclass(frozen=True)
class QueueProgress:
    total: int
    decided: int        # items whose every response the reviewer decided (skips not counted)
    skipped: int        # items the reviewer skipped (every other response decided)
    remaining: int      # items with a response not yet decided at all

    def text(self) -> str:
        return (f"{self.decided}/{self.total} decided" + (f", {self.skipped} skipped" if self.skipped else "")
                + f", {self.remaining} to go")


def progress(items: Sequence[ReviewItem], mine: dict[int, str]) -> QueueProgress:
    decided = skipped = remaining = 0
    for item in items:
        marks = [mine.get(r.id) for r in item.responses]
        if any(m is None for m in marks):
            remaining += 1
        elif any(m == "skip" for m in marks):
            skipped += 1
        else:
            decided += 1
    return QueueProgress(len(items), decided, skipped, remaining)


def next_position(items: Sequence[ReviewItem], mine: dict[int, str], after: int) -> int:
    """The item to show after ``after``: the next with an undecided response (wrapping to the start), then the
    next skipped one; len(items) when the reviewer has decided everything."""
    n = len(items)
    order = [(after + 1 + k) % n for k in range(n)] if n else []
    for i in order:
        if any(r.id not in mine for r in items[i].responses):
            return i
    for i in order:
        if any(mine.get(r.id) == "skip" for r in items[i].responses):
            return i
    return n


def current_slot(item: ReviewItem, mine: dict[int, str]) -> ShownResponse:
    """The response being decided: the first not decided, else the first skipped, else the first."""
    for r in item.responses:
        if r.id not in mine:
            return r
    for r in item.responses:
        if mine.get(r.id) == "skip":
            return r
    return item.responses[0]


def verdict_text(queue: QueueInfo, r: ShownResponse) -> str:
    """What the reviewer may see once they have decided (or asked): the model's verdict and the label."""
    parts = []
    if queue.reference is not None and r.reference_label is not None:
        who = "judge" if queue.reference == "judge" else "model checker"
        p = f", P(misaligned) {r.reference_p:.2f}" if r.reference_p is not None else ""
        parts.append(f"{who}: {r.reference_label}{p}")
    if r.label is not None:
        parts.append(f"{queue.label_meaning}: {r.label}")
    if queue.purpose == "checker":
        parts.append("no model checker: the reviewers decide")
    return " · ".join(parts) or "no verdict recorded"


def rate_text(seconds: Sequence[float]) -> str:
    """The reviewer's pace this session: decisions per minute and the median time per decision."""
    if not seconds:
        return "rate —"
    total = sum(seconds)
    per_min = 60 * len(seconds) / total if total > 0 else 0.0
    return f"{per_min:.1f}/min, median {statistics.median(seconds):.1f} s"


def read_sources(store: Store) -> list[tuple[str, str]]:
    """(label, source) for every queue a reviewer can start: a benchmark's gold labels, a judge run's verdicts, a
    build's model-checker decisions (the Review screen's new-queue dialog)."""
    out = [(f"gold labels of {b.name}@{b.version} ({b.responses:,} responses)", f"gold:{b.name}@{b.version}")
           for b in store.benchmarks()]
    out += [(f"verdicts of judge run {r[0]} ({r[1]} on {r[2]})", f"run:{r[0]}") for r in store.conn.execute(
        "SELECT r.id, m.name, b.name || '@' || b.version FROM runs r JOIN models m ON m.id = r.model_id "
        "JOIN benchmarks b ON b.id = r.benchmark_id WHERE r.method = 'judge' AND EXISTS "
        "(SELECT 1 FROM rollup_judge_items u WHERE u.run_id = r.id) ORDER BY r.id DESC")]
    out += [(f"model-checker decisions of build {r[0]} ({r[1]})", f"build:{r[0]}") for r in store.conn.execute(
        "SELECT b.id, b.name FROM build_runs b WHERE EXISTS (SELECT 1 FROM build_candidates c WHERE c.build_id = b.id "
        "AND c.p_misaligned IS NOT NULL) ORDER BY b.id DESC")]
    return out


def create_queue(store: Store, source: str, sample: int | None, seed: int) -> int:
    from misalign_tui.core.review.queues import build_sample_queue, gold_queue, run_queue

    kind, _, what = source.partition(":")
    if kind == "gold":
        return gold_queue(store, what, sample, seed).id
    if kind == "run":
        return run_queue(store, int(what), sample, seed).id
    return build_sample_queue(store, int(what), sample, seed).id
