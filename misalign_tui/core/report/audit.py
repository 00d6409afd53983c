"""Audit reports: one self-contained Markdown or HTML file an auditor can attach.

``build_report(store, run_ids, ...)`` gathers everything from the store (benchmark identity and item counts, each
model's file hash and settings, the run provenance, the measures of docs/measures.md from ``core.metrics``, paired tests,
the items each model got most wrong); ``render(report, "md"|"html")`` (report/render.py) only formats it (report/markdown.py, report/html.py,
from the format-neutral pieces of report/content.py). Every figure comes
from ``metrics.profile`` / ``trade_offs`` / ``compare``, so the report never disagrees with ``report --format
json`` or the TUI.

The HTML opens offline: inline CSS, hand-written inline SVG charts, no script, no font or image from anywhere,
and a Content-Security-Policy that forbids loading anything. All text that came from users or models (prompts,
responses, names, chat templates) is escaped: a prompt holding ``<script>`` stays text.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

from misalign_tui import __version__
from misalign_tui.core import metrics
from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.crosslingual import CrossLingual, cross_lingual
from misalign_tui.core.metrics.judge_quality import (
    AurocComparison,
    JudgeQuality,
    compare_auroc,
    judge_quality,
)
from misalign_tui.core.metrics.vocabulary import Metric, headline
from misalign_tui.core.report.quality import RunQuality, run_quality
from misalign_tui.core.review.figures import ReviewFigures, benchmark_figures, run_figures
from misalign_tui.core.runs.catalog import list_runs
from misalign_tui.core.store import RunInfo, Store, run_info
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES
from misalign_tui.core.views.explain import Explanation, explain_judge, open_run_backend, stored_preference
from misalign_tui.core.views.ladder import Ladder, ladder_families, read_ladder

ALPHA = 0.05
WORST_GROUPS = 5          # worst domains / semantic types listed per model
EXAMPLES_PER_RUN = 3      # items each model got most wrong
EXAMPLE_CHARS = 400       # texts in examples are cut to this many characters


# -- what the report holds ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DimensionCount:
    dimension: str              # metrics.UNTARGETED for responses not targeted at one dimension
    prompts: int                # prompts with a response targeted at it
    pairs: int
    responses: int
    aligned: int
    misaligned: int
    domains: int                # distinct domains of this dimension labelled on the benchmark's prompts


@dataclass(frozen=True)
class BenchmarkSummary:
    id: int
    name: str
    version: int
    content_hash: str | None
    description: str | None
    licence: str | None
    created_at: str
    source: dict[str, Any] | None
    recipe: dict[str, Any] | None
    prompts: int
    pairs: int
    responses: int
    by_dimension: tuple[DimensionCount, ...]
    by_semantic_type: tuple[tuple[str, int], ...]   # (type or "untyped", prompts)
    runs: tuple[int, ...]                            # report runs on this benchmark


@dataclass(frozen=True)
class Example:
    prompt_key: str
    prompt: str
    dimension: str
    detail: str                 # what went wrong, in words
    texts: tuple[tuple[str, str], ...]   # (caption, text): the response(s) shown
    item_id: int | None = None               # the response (judge) or pair (preference), as in export results
    explanation: Explanation | None = None   # why (core/views/explain.py): sentences or tokens
    explain_note: str | None = None          # why there is none (not asked, model unavailable, not stored)


@dataclass(frozen=True)
class RunSection:
    run: RunInfo
    status: str                 # lease-aware: a dead process's "running" run reads "interrupted"
    error: str | None
    model_file: str | None
    model_sha256: str | None    # the file hash recorded with the run
    registry_sha256: str | None  # the hash the model registry holds now (differs: the file changed since)
    quantization: str | None
    architecture: str | None
    parameters: int | None
    params: dict[str, Any]
    provenance: dict[str, Any]
    templates: tuple[tuple[int, str, str], ...]      # (index, name, exact text the model saw)
    overall: metrics.MetricRow | None
    by_dimension: tuple[metrics.MetricRow, ...]
    by_semantic_type: tuple[metrics.MetricRow, ...]
    by_domain: tuple[metrics.MetricRow, ...]
    worst_domains: tuple[metrics.MetricRow, ...]
    worst_types: tuple[metrics.MetricRow, ...]
    trade: metrics.TradeOffReport
    examples: tuple[Example, ...]
    quality: RunQuality | None = None                         # how good the judge is (report/quality.py)
    quality_by_type: tuple[JudgeQuality, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.run.model} (run {self.run.id})"


@dataclass(frozen=True)
class ComparisonSection:
    a: RunInfo
    b: RunInfo
    overall: metrics.ComparisonRow
    overall_p_holm: float       # Holm-adjusted across every pair of runs in the report
    overall_verdict: str | None  # "a" | "b" where that adjusted test holds
    group_by: str
    groups: tuple[metrics.ComparisonRow, ...]   # Holm-adjusted across the groups (metrics.compare)
    auroc: AurocComparison | None = None        # judge runs: AUROC, paired bootstrap over prompts


@dataclass(frozen=True)
class LanguageSection:
    """A run's English items against their parallel items (metrics.crosslingual), when it scored any."""

    run: RunInfo
    result: CrossLingual


@dataclass(frozen=True)
class AuditReport:
    generated_at: str
    tool_version: str
    filters: metrics.Filters
    group_by: str
    bootstrap: int
    seed: int
    benchmarks: tuple[BenchmarkSummary, ...]
    runs: tuple[RunSection, ...]
    comparisons: tuple[ComparisonSection, ...]
    comparisons_skipped: tuple[str, ...] = field(default=())   # why a pair of runs was not compared
    reviews: tuple[ReviewFigures, ...] = field(default=())      # gold-label and judge-verdict reviews
    languages: tuple[LanguageSection, ...] = field(default=())  # runs with parallel items scored
    ladders: tuple[Ladder, ...] = field(default=())             # quantization families with two or more runs in the report


# -- gathering ----------------------------------------------------------------------------------------------

def build_report(store: Store, run_ids: Sequence[int], *, group_by: str = "dimension",
                 filters: metrics.Filters | dict[str, Any] | None = None, bootstrap: int = 1000, seed: int = 0,
                 worst: int = WORST_GROUPS, examples: int = EXAMPLES_PER_RUN,
                 progress: Callable[[str], None] | None = None, explain: bool = True) -> AuditReport:
    """Everything the report shows, read from the store; the renderers add nothing but formatting.
    ``progress`` receives a line per run (bootstrap intervals over many prompts take seconds per run).
    ``explain``: the wrong items carry their explanation — a preference pair's stored token log-probabilities, a
    judge verdict's leave-one-sentence-out pass through the run's model (loaded once per run; a model that cannot
    be loaded is said in the report)."""
    flt = metrics.Filters.parse(filters)
    infos = [run_info(store, r) for r in dict.fromkeys(run_ids)]
    runs = []
    for i, info in enumerate(infos, 1):
        if progress:
            progress(f"run {info.id} ({info.model}): metrics {i}/{len(infos)}")
        runs.append(_run_section(store, info, flt, bootstrap, seed, worst, examples, explain, progress))
    by_bench: dict[int, list[int]] = {}
    for info in infos:
        by_bench.setdefault(info.benchmark_id, []).append(info.id)
    benchmarks = tuple(_benchmark_summary(store, bid, ids) for bid, ids in by_bench.items())
    if progress and len(infos) > 1:
        progress("paired comparisons")
    comparisons, skipped = _comparisons(store, infos, group_by, flt, bootstrap, seed)
    reviews = [f for bid in by_bench if (f := benchmark_figures(store, bid, bootstrap=bootstrap, seed=seed))]
    reviews += [f for info in infos if info.method == "judge"
                for f in run_figures(store, info.id, bootstrap=bootstrap, seed=seed)]
    languages = tuple(LanguageSection(info, res) for info in infos
                      if (res := cross_lingual(store, info.id, filters=flt, alpha=ALPHA)).rows)
    return AuditReport(
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), tool_version=__version__,
        filters=flt, group_by=group_by, bootstrap=bootstrap, seed=seed, benchmarks=benchmarks, runs=tuple(runs),
        comparisons=comparisons, comparisons_skipped=skipped, reviews=tuple(reviews), languages=languages,
        ladders=_ladders(store, infos, flt))


def _ladders(store: Store, infos: list[RunInfo], flt: metrics.Filters) -> tuple[Ladder, ...]:
    """A quantization ladder for each family with runs of two or more of its members in the report (the
    report's own runs, not each variant's latest)."""
    ids = [i.id for i in infos]
    out = []
    for root in ladder_families(store, [i.model for i in infos]):
        ladder = read_ladder(store, root, filters=flt, alpha=ALPHA, run_ids=ids)
        if sum(v.run is not None for v in ladder.variants) >= 2:
            out.append(ladder)
    return tuple(out)


def _json_or_none(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"unreadable": raw}
    return value if isinstance(value, dict) else {"value": value}


def _benchmark_summary(store: Store, benchmark_id: int, run_ids: list[int]) -> BenchmarkSummary:
    c = store.conn
    b = c.execute("SELECT * FROM benchmarks WHERE id = ?", (benchmark_id,)).fetchone()
    prompts = c.execute("SELECT count(*) FROM prompts WHERE benchmark_id = ?", (benchmark_id,)).fetchone()[0]
    resp = {r[0]: r[1:] for r in c.execute(
        "SELECT coalesce(r.dimension, ''), count(DISTINCT r.prompt_id), count(*), sum(r.label = 'aligned'), "
        "sum(r.label = 'misaligned') FROM responses r JOIN prompts p ON p.id = r.prompt_id "
        "WHERE p.benchmark_id = ? GROUP BY 1", (benchmark_id,))}
    pairs = {r[0]: r[1] for r in c.execute(
        "SELECT coalesce(pr.dimension, ''), count(*) FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id "
        "WHERE p.benchmark_id = ? GROUP BY 1", (benchmark_id,))}
    domains = {r[0]: r[1] for r in c.execute(
        "SELECT d.dimension, count(DISTINCT pd.domain_id) FROM prompt_domains pd JOIN domains d ON d.id = "
        "pd.domain_id JOIN prompts p ON p.id = pd.prompt_id WHERE p.benchmark_id = ? GROUP BY 1", (benchmark_id,))}
    dims = []
    for d in [*DIMENSIONS, *sorted(set(resp) - set(DIMENSIONS) - {""}), ""]:
        if d not in resp and d not in pairs and not domains.get(d):
            continue
        n_prompts, n_resp, al, mis = resp.get(d, (0, 0, 0, 0))
        dims.append(DimensionCount(d or metrics.UNTARGETED, n_prompts, pairs.get(d, 0), n_resp, al or 0, mis or 0,
                                   domains.get(d, 0)))
    types = dict(c.execute("SELECT coalesce(semantic_type, ''), count(*) FROM prompts WHERE benchmark_id = ? "
                           "GROUP BY 1", (benchmark_id,)).fetchall())
    by_type = tuple((t or "untyped", types[t]) for t in [*SEMANTIC_TYPES, *sorted(set(types) - set(SEMANTIC_TYPES))]
                    if t in types)
    return BenchmarkSummary(
        id=benchmark_id, name=b["name"], version=b["version"], content_hash=b["content_hash"],
        description=b["description"], licence=b["licence"], created_at=b["created_at"],
        source=_json_or_none(b["source_json"]), recipe=_json_or_none(b["recipe_json"]), prompts=prompts,
        pairs=sum(pairs.values()), responses=sum(v[1] for v in resp.values()), by_dimension=tuple(dims),
        by_semantic_type=by_type, runs=tuple(run_ids))


def _ranked_worst(rows: Sequence[metrics.MetricRow], key: Metric, limit: int) -> tuple[metrics.MetricRow, ...]:
    """Lowest first by the upper end of the 95 % interval (a group with few items is not "worst" by chance
    alone), then by the estimate; groups without a value are left out."""
    scored = [r for r in rows if key.row_value(r) is not None]

    def order(r: metrics.MetricRow) -> tuple[float, float, int]:
        ci = key.row_ci(r)
        v = key.row_value(r) or 0.0
        return (ci[1] if ci else v, v, -key.row_n(r))

    return tuple(sorted(scored, key=order)[:limit])


def _run_section(store: Store, run: RunInfo, flt: metrics.Filters, bootstrap: int, seed: int,
                 worst: int, examples: int, explain: bool = False,
                 progress: Callable[[str], None] | None = None) -> RunSection:
    c = store.conn
    raw = c.execute("SELECT r.params_json, r.provenance_json, r.model_sha256, r.error, m.path, m.sha256, "
                    "m.quantization, m.architecture, m.parameters FROM runs r JOIN models m ON m.id = r.model_id "
                    "WHERE r.id = ?", (run.id,)).fetchone()
    listed = list_runs(store, run.id)
    status = listed[0]["status"] if listed else run.status
    prov = _json_or_none(raw["provenance_json"]) or {}
    key = headline(run.method)

    def prof(group_by: str | None) -> tuple[metrics.MetricRow, ...]:
        return tuple(metrics.profile(store, run.id, group_by=group_by, filters=flt, bootstrap=bootstrap, seed=seed))

    overall = prof(None)
    by_domain = prof("domain")
    by_type = prof("semantic_type")
    return RunSection(
        run=run, status=status, error=raw["error"],
        model_file=PurePath(raw["path"]).name if raw["path"] else None,
        model_sha256=raw["model_sha256"] or prov.get("model_sha256"), registry_sha256=raw["sha256"],
        quantization=prov.get("quantization") or raw["quantization"],
        architecture=prov.get("architecture") or raw["architecture"], parameters=raw["parameters"],
        params=_json_or_none(raw["params_json"]) or {}, provenance=prov,
        templates=tuple((r[0], r[1], r[2]) for r in c.execute(
            "SELECT template, name, text FROM run_templates WHERE run_id = ? ORDER BY template", (run.id,))),
        overall=overall[0] if overall else None, by_dimension=prof("dimension"), by_semantic_type=by_type,
        by_domain=by_domain, worst_domains=_ranked_worst(by_domain, key, worst),
        worst_types=_ranked_worst(by_type, key, worst), trade=metrics.trade_offs(store, run.id, flt),
        examples=_explained(store, run, _examples(store, run, flt, examples), explain, progress),
        quality=run_quality(store, run, "dimension", flt, bootstrap, seed),
        quality_by_type=tuple(judge_quality(store, run.id, group_by="semantic_type", filters=flt, bootstrap=bootstrap,
                                            seed=seed)))


def _explained(store: Store, run: RunInfo, found: tuple[Example, ...], explain: bool,
               progress: Callable[[str], None] | None) -> tuple[Example, ...]:
    """The examples with their explanations, or the reason they have none."""
    if run.method not in ("judge", "preference") or not found:
        return found
    if not explain:
        return tuple(replace(e, explain_note="explanation not asked for (report --no-explain)") for e in found)
    ids = [int(e.item_id or 0) for e in found]
    if run.method == "preference":
        out = []
        for e, pid in zip(found, ids, strict=True):
            x = stored_preference(store, run, pid)
            out.append(replace(e, explanation=x, explain_note=None if x else (
                f"no token log-probabilities stored with run {run.id} (scored before they were kept); "
                f"misalign-tui explain {run.id} {pid} recomputes them")))
        return tuple(out)
    if progress:
        progress(f"run {run.id} ({run.model}): explaining {len(found)} wrong item(s) through the run's model")
    try:
        backend = open_run_backend(store, run)
    except UserError as exc:
        return tuple(replace(e, explain_note=f"explanation not computed: {exc}") for e in found)
    try:
        return tuple(replace(e, explanation=explain_judge(store, run, rid, backend), explain_note=None)
                     for e, rid in zip(found, ids, strict=True))
    except UserError as exc:
        return tuple(replace(e, explain_note=f"explanation not computed: {exc}") for e in found)
    finally:
        backend.close()


def _cut(text: str | None, limit: int = EXAMPLE_CHARS) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _examples(store: Store, run: RunInfo, flt: metrics.Filters, limit: int) -> tuple[Example, ...]:
    """The items the model got most wrong (furthest on the wrong side), for a reader to see what failing means."""
    if limit <= 0:
        return ()
    params: list[Any] = [run.id]
    where = " AND ".join(["u.run_id = ?", *metrics.filter_conditions(flt, "u", params, store)])
    out = []
    if run.method == "judge":
        for r in store.conn.execute(
                "SELECT p.key, p.text, u.dimension, u.label, r.text, u.p_sum / u.n_templates, u.n_templates, "
                "u.response_id "
                "FROM rollup_judge_items u JOIN responses r ON r.id = u.response_id JOIN prompts p ON p.id = "
                f"u.prompt_id WHERE {where} AND u.flagged != (u.label = 'misaligned') "
                "ORDER BY abs(u.p_sum / u.n_templates - 0.5) DESC, u.response_id LIMIT ?", [*params, limit]):
            verdict = "flagged as misaligned" if r[3] == "aligned" else "passed as aligned"
            out.append(Example(r[0], _cut(r[1]), r[2] or metrics.UNTARGETED,
                               f"{r[3]} response {verdict}: mean P(misaligned) {r[5]:.3f} over {r[6]} template(s)",
                               ((f"{r[3]} response", _cut(r[4])),), item_id=r[7]))
    elif run.method == "preference":
        for r in store.conn.execute(
                "SELECT p.key, p.text, u.dimension, ra.text, rm.text, avg(x.aligned_logprob / max(x.aligned_tokens, 1)"
                " - x.misaligned_logprob / max(x.misaligned_tokens, 1)) AS margin, count(*), u.pair_id "
                "FROM rollup_pair_outcomes u JOIN pairs pr ON pr.id = u.pair_id JOIN prompts p ON p.id = u.prompt_id "
                "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
                "JOIN preference_results x ON x.run_id = u.run_id AND x.pair_id = u.pair_id "
                f"WHERE {where} AND NOT u.satisfied GROUP BY u.pair_id ORDER BY margin, u.pair_id LIMIT ?",
                [*params, limit]):
            out.append(Example(r[0], _cut(r[1]), r[2] or metrics.UNTARGETED,
                               f"prefers the misaligned response: mean per-token log-likelihood margin "
                               f"(aligned − misaligned) {r[5]:+.3f} over {r[6]} template(s)",
                               (("aligned response", _cut(r[3])), ("misaligned response", _cut(r[4]))),
                               item_id=r[7]))
    else:
        for r in store.conn.execute(
                "SELECT p.key, p.text, u.dimension, g.text, u.p_sum / u.n_templates, u.n_templates "
                "FROM rollup_prompt_satisfaction u JOIN prompts p ON p.id = u.prompt_id LEFT JOIN generations g "
                "ON g.run_id = u.run_id AND g.prompt_id = u.prompt_id AND g.template = 0 "
                f"WHERE {where} AND NOT u.satisfied AND u.n_templates > 0 "
                "ORDER BY u.p_sum / u.n_templates DESC, u.prompt_id LIMIT ?", [*params, limit]):
            out.append(Example(r[0], _cut(r[1]), r[2] or metrics.UNTARGETED,
                               f"answer judged misaligned on {r[2]}: judge's mean P(misaligned) {r[4]:.3f} over "
                               f"{r[5]} template(s)", (("the model's answer", _cut(r[3])),)))
    return tuple(out)


def _comparisons(store: Store, infos: list[RunInfo], group_by: str, flt: metrics.Filters, bootstrap: int = 1000,
                 seed: int = 0) -> tuple[tuple[ComparisonSection, ...], tuple[str, ...]]:
    found, skipped = [], []
    for a, b in itertools.combinations(infos, 2):
        if a.method != b.method:
            skipped.append(f"{a.model} (run {a.id}, {a.method}) and {b.model} (run {b.id}, {b.method}): "
                           "different methods")
            continue
        overall = metrics.compare(store, a.id, b.id, filters=flt)
        if not overall or not overall[0].n_items:
            skipped.append(f"{a.model} (run {a.id}) and {b.model} (run {b.id}): no items scored by both")
            continue
        groups = metrics.compare(store, a.id, b.id, group_by=group_by, filters=flt, alpha=ALPHA)
        found.append((a, b, overall[0], groups))
    adjusted = metrics.holm([x[2].p_value for x in found])
    out = []
    for (a, b, row, groups), p_adj in zip(found, adjusted, strict=True):
        verdict = None
        if p_adj < ALPHA and row.a_only != row.b_only:
            verdict = "a" if row.a_only > row.b_only else "b"
        auroc = (compare_auroc(store, a.id, b.id, filters=flt, bootstrap=bootstrap, seed=seed)
                 if a.method == "judge" else None)
        out.append(ComparisonSection(a, b, row, p_adj, verdict, group_by, tuple(groups), auroc))
    return tuple(out), tuple(skipped)
