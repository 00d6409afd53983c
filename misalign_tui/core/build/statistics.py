"""The paper's per-domain build table for a built benchmark, beside the published MISALIGNTRADE counts.

A prompt counts once, under the domain it was classified for (its most probable domain, or its first label when
the seed carried labels) or expanded for. Columns use the names of ``misaligntrade_published_stats.csv``:

- classified: seed prompts with labels (from the classifier, or given) in this domain
- expanded: prompts the expander wrote for this domain
- dedup_removed: of the prompts bound for the benchmark, those removed as near-duplicates
- generated: prompts that went on to response generation (kept after dedup)
- cf_aligned, cf_misaligned: response candidates rejected (filtering, checker, harm screen, dropped pairs)
- final_responses: responses in the published benchmark

``checker`` (``with_build_statistics``): the checker's AUROC and pairwise accuracy on seed pairs, as measured before
stage 2.
"""

from __future__ import annotations

import csv
import io
import json
import re
from importlib import resources
from typing import Any

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


def build_statistics(store: Store, benchmark_id: int) -> list[dict[str, Any]]:
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


def reason_category(reason: str | None) -> str:
    """A rejection reason without its figures: "checker judged it aligned on safety (P = 0.31)" →
    "checker judged it aligned on safety", "too short (2 words < 3)" → "too short"."""
    text = reason or "-"
    return re.split(r":| \(|;", text, maxsplit=1)[0].strip() or text


def rejection_reasons(store: Store, benchmark_id: int) -> list[dict[str, object]]:
    """Rejected candidates grouped by kind, label, stage and reason category (with one full reason as an
    example): what was filtered and why. Every row is in ``build_candidates`` (view ``build_rejections``)."""
    build_id = build_id_for(store, benchmark_id)
    if build_id is None:
        return []
    groups: dict[tuple[str, str | None, str, str], dict[str, object]] = {}
    for kind, label, stage, reason in store.conn.execute(
            "SELECT kind, label, stage, reason FROM build_candidates WHERE build_id = ? AND status = 'rejected' "
            "ORDER BY id", (build_id,)):
        key = (kind, label or None, stage or "-", reason_category(reason))
        g = groups.setdefault(key, {"kind": key[0], "label": key[1], "stage": key[2], "reason": key[3],
                                    "count": 0, "example": reason})
        g["count"] = int(g["count"]) + 1  # type: ignore[call-overload]
    return sorted(groups.values(), key=lambda g: (-int(g["count"]), str(g["stage"])))  # type: ignore[call-overload]


def with_build_statistics(store: Store, benchmark_id: int, stats: dict[str, Any]) -> dict[str, Any]:
    """``benchmark_statistics`` output, extended for a built benchmark: each ``per_domain`` entry gains the
    paper's columns (``classified`` … ``final_responses``, counted once per prompt under its build domain) and
    ``published``; domains the build touched but published nothing for are listed with 0 prompts; ``built``,
    ``build`` (totals), ``rejections`` and ``reviews`` (build_reviews) are added. A benchmark that was not built is returned unchanged
    with ``built: false``."""
    rows = build_statistics(store, benchmark_id)
    if not rows:
        return {**stats, "built": False}
    by_domain = {r["domain"]: r for r in rows}
    merged = []
    seen = set()
    for entry in stats["per_domain"]:
        extra = by_domain.get(entry["domain"])
        if extra is None:
            extra = {"dimension": entry["dimension"], "domain": entry["domain"], **dict.fromkeys(COLUMNS, 0),
                     "published": published_statistics().get(entry["domain"])}
        merged.append({**entry, **extra})
        seen.add(entry["domain"])
    for r in rows:
        if r["domain"] not in seen:
            merged.append({**r, "prompts": 0, "pairs": 0})
    order = {d.name: i for i, d in enumerate(store.taxonomy().domains)}
    merged.sort(key=lambda e: order.get(str(e["domain"]), len(order)))
    totals = {col: sum(int(r[col]) for r in rows) for col in COLUMNS}
    return {**stats, "built": True, "per_domain": merged, "build": totals,
            "rejections": rejection_reasons(store, benchmark_id), "checker": checker_measurement(store, benchmark_id),
            "reviews": build_reviews(store, benchmark_id)}


def checker_measurement(store: Store, benchmark_id: int) -> dict[str, Any] | None:
    """The build's checker as measured on seed pairs before stage 2 (core/build/checker.py), without the
    per-item scores; None when it was not measured."""
    build_id = build_id_for(store, benchmark_id)
    if build_id is None:
        return None
    raw = store.conn.execute("SELECT checker_json FROM build_runs WHERE id = ?", (build_id,)).fetchone()[0]
    if not raw:
        return None
    m = json.loads(raw)
    m.pop("scores", None)
    return m


def build_reviews(store: Store, benchmark_id: int) -> list[dict[str, Any]]:
    """The review figures of the build's queues (its human checker; samples of its model checker's decisions):
    agreement between reviewers, with the generator's targets and with the model checker (core.review.figures)."""
    from misalign_tui.core.review.figures import build_figures

    build_id = build_id_for(store, benchmark_id)
    return [] if build_id is None else [f.as_json() for f in build_figures(store, build_id)]
