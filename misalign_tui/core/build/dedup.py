"""Step ``dedup``: SimHash fingerprints of every prompt, seeds included, then the near-duplicate rule.

Seeds come first, then expanded prompts, each in insertion order; a prompt within Hamming distance τ of an
already kept prompt is removed and linked to the earliest such kept prompt (core.fingerprint.dedup, whose
result equals exhaustive comparison). The step is one transaction: it either happened or it did not.
"""

from __future__ import annotations

import numpy as np

from misalign_tui.core.build.state import BuildContext
from misalign_tui.core.fingerprint import dedup, simhashes


def signed64(value: int) -> int:
    """SQLite integers are signed: store a 64-bit fingerprint as its two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def run_dedup(ctx: BuildContext) -> dict[str, int]:
    if ctx.step_done("dedup"):
        return ctx.step_counts("dedup")
    rows = ctx.store.conn.execute(
        "SELECT id, text, origin FROM build_prompts WHERE build_id = ? AND labelled = 1 "
        "ORDER BY origin = 'expanded', id", (ctx.build_id,)).fetchall()
    ctx.start_step("dedup", len(rows))
    tau, bits = ctx.recipe.dedup.tau, ctx.recipe.dedup.bits
    fps = simhashes([r["text"] for r in rows], bits)
    result = dedup(fps, tau, bits)
    ids = [r["id"] for r in rows]
    with ctx.store.transaction() as c:
        for k, row_id in enumerate(ids):
            kept = bool(result.kept[k])
            c.execute("UPDATE build_prompts SET fingerprint = ?, dedup_status = ?, duplicate_of = ?, "
                      "duplicate_distance = ? WHERE id = ?",
                      (signed64(int(fps[k])), "kept" if kept else "removed",
                       None if kept else ids[int(result.link[k])],
                       None if kept else int(result.distance[k]), row_id))
    origins = np.array([r["origin"] for r in rows], dtype=object)
    removed = ~result.kept
    counts = {"fingerprinted": len(rows), "removed": int(removed.sum()),
              "removed_expanded": int((removed & (origins == "expanded")).sum()),
              "removed_seed": int((removed & (origins == "seed")).sum())}
    ctx.finish_step("dedup", counts)
    if ctx.progress is not None:
        from misalign_tui.core.build.state import ProgressMeter

        meter = ProgressMeter(ctx, "dedup", len(rows), len(rows))
        meter.counts = dict(counts)
        meter.report()
    return counts
