"""Workspaces with review queues for the review tests: the seed benchmark (real text) or the small judge-run
fixture of the app tests, queues made by the core functions the CLI and the app call, decisions stored as the
app stores them."""

from __future__ import annotations

from pathlib import Path

from misalign_tui.core.review.decisions import NewDecision, record_decisions, remember_reviewer, shown
from misalign_tui.core.review.queues import QueueInfo, ReviewItem, gold_queue, queue_items
from misalign_tui.core.store import Store
from misalign_tui.core.workspace import open_workspace


def seed_workspace(home: Path) -> Path:
    """A workspace with the taxonomy and the embedded seed benchmark; returns the database path."""
    from misalign_tui.core.io.native import load_seed_benchmark
    from misalign_tui.core.taxonomy import published_taxonomy

    db = open_workspace(home).ensure().db_path
    with Store(db) as store:
        store.sync_taxonomy(published_taxonomy())
        load_seed_benchmark(store)
    return db


def gold_sample(db: Path, n: int = 20, seed: int = 0) -> tuple[QueueInfo, list[ReviewItem]]:
    with Store(db) as store:
        q = gold_queue(store, "misalign-seed", n, seed)
        return q, queue_items(store, q.id)


def decide(db: Path, reviewer: str, items: list[ReviewItem], wrong_every: int = 0, seconds: float = 4.0) -> None:
    """``reviewer`` decides every response: the gold label, except on every ``wrong_every``-th item where both
    responses get the other label (a dispute), with a note."""
    with Store(db) as store:
        remember_reviewer(store, reviewer)
        out = []
        for k, item in enumerate(items):
            flip = wrong_every and k % wrong_every == 0
            for r in item.responses:
                label = r.label if not flip else ("aligned" if r.label == "misaligned" else "misaligned")
                out.append(NewDecision(item.id, r.id, str(label), f"{reviewer} thinks {r.letter} is {label}" if flip
                                       else None, shown([x.letter for x in item.responses], r.letter, False, "app"),
                                       seconds))
        record_decisions(store, reviewer, out)
