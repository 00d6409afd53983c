"""The paper's per-domain build table for a built benchmark, beside the published MISALIGNTRADE counts.

A prompt counts once, under the domain it was classified for (its most probable domain, or its first label when
the seed carried labels) or expanded for. Columns use the names of ``misaligntrade_published_stats.csv``:

- classified: seed prompts with labels (from the classifier, or given) in this domain
- expanded: prompts the expander wrote for this domain
- dedup_removed: of the prompts bound for the benchmark, those removed as near-duplicates
- generated: prompts that went on to response generation (kept after dedup)
- cf_aligned, cf_misaligned: response candidates rejected (filtering, checker, harm screen, dropped pairs)
- final_responses: responses in the published benchmark
"""

from __future__ import annotations

import csv
import io
import json
from importlib import resources

from misalign_tui.core.store import Store

COLUMNS = ("classified", "expanded", "dedup_removed", "generated", "cf_aligned", "cf_misaligned",
           "final_responses")


def published_statistics() -> dict[str, dict[str, int]]:
    """The paper's published per-domain counts, by domain name."""
    text = resources.files("misalign_tui.data").joinpath("misaligntrade_published_stats.csv").read_text("utf-8")
    return {r["domain"]: {k: int(r[k]) for k in COLUMNS} for r in csv.DictReader(io.StringIO(text))}


def build_id_for(store: Store, benchmark_id: int) -> int | None:
    row = store.conn.execute("SELECT id FROM build_runs WHERE benchmark_id = ? ORDER BY id DESC LIMIT 1",
                             (benchmark_id,)).fetchone()
    return int(row[0]) if row else None


def build_statistics(store: Store, benchmark_id: int) -> list[dict[str, object]]:
    """Per domain (taxonomy order, domains the build touched): dimension, domain, the seven columns, and
    ``published`` with the MISALIGNTRADE counts for the same domain (None for a domain the paper lacks).
    Empty for a benchmark that was not built."""
    build_id = build_id_for(store, benchmark_id)
    if build_id is None:
        return []
    c = store.conn
    include_seeds = bool(json.loads(c.execute("SELECT recipe_json FROM build_runs WHERE id = ?",
                                              (build_id,)).fetchone()[0])["dedup"]["include_seeds"])
    counts: dict[str, dict[str, int]] = {}

    def add(domain: str | None, column: str, n: int) -> None:
        if domain is None:
            return
        counts.setdefault(domain, dict.fromkeys(COLUMNS, 0))[column] += n

    bound = "(p.origin = 'expanded' OR ?)"
    queries = {
        "classified": ("SELECT p.stats_domain, count(*) FROM build_prompts p WHERE p.build_id = ? "
                       "AND p.origin = 'seed' AND p.labelled = 1 GROUP BY 1", (build_id,)),
        "expanded": ("SELECT p.stats_domain, count(*) FROM build_prompts p WHERE p.build_id = ? "
                     "AND p.origin = 'expanded' GROUP BY 1", (build_id,)),
        "dedup_removed": (f"SELECT p.stats_domain, count(*) FROM build_prompts p WHERE p.build_id = ? AND {bound} "
                          "AND p.dedup_status = 'removed' GROUP BY 1", (build_id, int(include_seeds))),
        "generated": (f"SELECT p.stats_domain, count(*) FROM build_prompts p WHERE p.build_id = ? AND {bound} "
                      "AND p.dedup_status = 'kept' GROUP BY 1", (build_id, int(include_seeds))),
        "cf_aligned": ("SELECT p.stats_domain, count(*) FROM build_candidates k JOIN build_prompts p "
                       "ON p.id = k.build_prompt_id WHERE k.build_id = ? AND k.kind = 'response' "
                       "AND k.label = 'aligned' AND k.status = 'rejected' GROUP BY 1", (build_id,)),
        "cf_misaligned": ("SELECT p.stats_domain, count(*) FROM build_candidates k JOIN build_prompts p "
                          "ON p.id = k.build_prompt_id WHERE k.build_id = ? AND k.kind = 'response' "
                          "AND k.label = 'misaligned' AND k.status = 'rejected' GROUP BY 1", (build_id,)),
        "final_responses": ("SELECT bp.stats_domain, count(r.id) FROM prompts q JOIN build_prompts bp "
                            "ON bp.build_id = ? AND bp.key = q.key JOIN responses r ON r.prompt_id = q.id "
                            "WHERE q.benchmark_id = ? GROUP BY 1", (build_id, benchmark_id)),
    }
    for column, (sql, args) in queries.items():
        for domain, n in c.execute(sql, args):
            add(domain, column, n)
    published = published_statistics()
    out = []
    for dom in store.taxonomy().domains:
        if dom.name in counts:
            out.append({"dimension": dom.dimension, "domain": dom.name, **counts[dom.name],
                        "published": published.get(dom.name)})
    return out


def rejection_reasons(store: Store, benchmark_id: int) -> list[dict[str, object]]:
    """Rejected candidates grouped by kind, stage and reason's first words: what was filtered and why."""
    build_id = build_id_for(store, benchmark_id)
    if build_id is None:
        return []
    rows = store.conn.execute(
        "SELECT kind, label, stage, reason, count(*) FROM build_candidates WHERE build_id = ? AND status = 'rejected' "
        "GROUP BY kind, label, stage, reason ORDER BY count(*) DESC", (build_id,)).fetchall()
    return [{"kind": r[0], "label": r[1] or None, "stage": r[2], "reason": r[3], "count": r[4]} for r in rows]
