"""Reviewed labels into a new benchmark version: a benchmark improves through review without rewriting history.

``publish_reviewed(store, "name@v")`` copies version v into version max + 1 with every response whose
reviewers' majority (across the gold and run queues that showed it; core.review.figures) disagrees with its
gold label relabelled. A pair whose two responses both flipped is swapped; a pair left with two responses of
the same label is no longer a pair (its responses stay, as single responses). Version v is untouched and every
run keeps pointing at the version it ran on; ``source_json`` of the new version lists each override with the
votes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from misalign_tui.core.errors import UserError
from misalign_tui.core.io.importer import copy_version_content
from misalign_tui.core.review.figures import benchmark_figures
from misalign_tui.core.store import BenchmarkInfo, Store, last_id


@dataclass(frozen=True)
class Override:
    prompt_key: str
    dimension: str | None
    old_label: str
    new_label: str
    votes: dict[str, int]


@dataclass(frozen=True)
class ReviewedVersion:
    benchmark: BenchmarkInfo
    previous: BenchmarkInfo
    overrides: tuple[Override, ...]
    pairs_swapped: int
    pairs_dissolved: int


def publish_reviewed(store: Store, benchmark: str) -> ReviewedVersion:
    """Write the reviewed version of ``benchmark`` (see the module docstring)."""
    old = store.benchmark(benchmark)
    figures = benchmark_figures(store, old.id, bootstrap=0)
    disputed = {d.response_id: d for d in (figures.listed if figures else ())
                if d.kind == "disputed" and d.response_id is not None and d.majority is not None}
    if not disputed:
        raise UserError(f"benchmark {old.name}@{old.version}: no reviewers' majority disputes a gold label; "
                        "nothing to override")
    c = store.conn
    with store.transaction():
        version = c.execute("SELECT coalesce(max(version), 0) + 1 FROM benchmarks WHERE name = ?",
                            (old.name,)).fetchone()[0]
        row = c.execute("SELECT description, licence FROM benchmarks WHERE id = ?", (old.id,)).fetchone()
        new_id = last_id(c.execute(
            "INSERT INTO benchmarks(name, version, description, licence) VALUES (?, ?, ?, ?)",
            (old.name, version, row["description"], row["licence"])))
        old_responses = [r[0] for r in c.execute(
            "SELECT r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE p.benchmark_id = ? "
            "ORDER BY r.id", (old.id,))]
        copy_version_content(c, old.id, new_id)
        new_responses = [r[0] for r in c.execute(
            "SELECT r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE p.benchmark_id = ? "
            "ORDER BY r.id", (new_id,))]
        new_of = dict(zip(old_responses, new_responses, strict=True))  # copied in id order
        overrides = []
        for rid, d in sorted(disputed.items()):
            c.execute("UPDATE responses SET label = ? WHERE id = ?", (d.majority, new_of[rid]))
            overrides.append(Override(d.prompt_key, d.dimension, str(d.label), str(d.majority), d.votes))
        swapped = dissolved = 0
        for pair_id, a_label, m_label in c.execute(
                "SELECT pr.id, ra.label, rm.label FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id "
                "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
                "WHERE p.benchmark_id = ?", (new_id,)).fetchall():
            if (a_label, m_label) == ("misaligned", "aligned"):
                c.execute("UPDATE pairs SET aligned_id = misaligned_id, misaligned_id = aligned_id WHERE id = ?",
                          (pair_id,))
                swapped += 1
            elif a_label == m_label:
                c.execute("DELETE FROM pairs WHERE id = ?", (pair_id,))
                dissolved += 1
        source = {"previous_version": old.version, "reviewed_from": f"{old.name}@{old.version}",
                  "reviewers": list(figures.reviewers) if figures else [],
                  "overrides": [{"prompt_key": o.prompt_key, "dimension": o.dimension, "from": o.old_label,
                                 "to": o.new_label, "votes": o.votes} for o in overrides],
                  "pairs_swapped": swapped, "pairs_dissolved": dissolved}
        c.execute("UPDATE benchmarks SET source_json = ? WHERE id = ?", (json.dumps(source, ensure_ascii=False), new_id))
        store.update_content_hash(new_id)
    return ReviewedVersion(store.benchmark_by_id(new_id), old, tuple(overrides), swapped, dissolved)
