"""The quantization ladder: one model's quantization variants side by side, on the same benchmark and method.

Per variant (highest precision first): the headline metric and per-dimension figures with their 95 % intervals,
the **verdict flip rate** against the reference (the share of items scored by both whose verdict or preference
differs: judge — flagged or not; preference — aligned preferred or not; generate — satisfied or not), McNemar's
exact test against the reference on those items, model size, bits per weight and the measured speed. Tests are
Holm-adjusted: the overall tests across the variants, the per-dimension tests across variants × dimensions. For
each dimension the ladder names the first level (going down in bits per weight) whose adjusted test holds.

The reference is the highest-precision variant with a run, or the one the user names. The family comes from
the registry's lineage (``registry.model_family``); runs are picked by ``core.runs.catalog.runs_to_show``; every
figure comes from ``core.metrics`` (profile, compare), so the ladder never disagrees with ``report``.
The CLI (``compare ladder``), the Compare screen's ladder mode and the audit report all read ``read_ladder``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from misalign_tui.core import metrics
from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.judge_quality import judge_quality
from misalign_tui.core.metrics.profile import BOOTSTRAP_RESAMPLES
from misalign_tui.core.metrics.statistics import holm, wilson
from misalign_tui.core.metrics.vocabulary import METHODS, headline
from misalign_tui.core.models.registry import (
    ModelInfo,
    discover,
    family_root,
    list_models,
    model_family,
    resolve_model,
)
from misalign_tui.core.runs.catalog import runs_to_show, shown_status
from misalign_tui.core.store import RunInfo, Store, run_info

ALPHA = 0.05
SPEED_UNIT = {"judge": "judgments/s", "preference": "pairs/s", "generate": "prompts/s"}
_RESULT_TABLE = {"judge": "judge_results", "preference": "preference_results", "generate": "generations"}


@dataclass(frozen=True)
class DimensionFigure:
    dimension: str
    value: float | None                 # the method's headline metric on this dimension
    ci: tuple[float, float] | None
    n: int
    delta: float | None = None          # variant − reference, on the shared items
    shared: int = 0
    flips: int = 0
    flip_rate: float | None = None
    mcnemar_p: float | None = None
    mcnemar_p_holm: float | None = None  # across variants × dimensions
    change: str | None = None           # "worse" | "better" where the adjusted test holds

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class LadderVariant:
    model: ModelInfo
    is_reference: bool
    run: RunInfo | None
    value: float | None = None          # headline metric overall
    ci: tuple[float, float] | None = None
    n: int = 0
    dimensions: tuple[DimensionFigure, ...] = ()
    delta: float | None = None          # variant − reference, on the shared items
    shared: int = 0                     # items scored by both this variant and the reference
    flips: int = 0
    flip_rate: float | None = None
    flip_rate_ci: tuple[float, float] | None = None
    reference_only_right: int = 0
    variant_only_right: int = 0
    mcnemar_p: float | None = None
    mcnemar_p_holm: float | None = None  # across the variants
    change: str | None = None           # "worse" | "better" where the adjusted test holds
    items_per_s: float | None = None
    speed_source: str | None = None     # "run timing" (provenance) | "result timestamps" | None
    first_changes: tuple[str, ...] = ()  # dimensions whose first significant change is at this level
    # a judge run's AUROC against the gold labels with its bootstrap interval over prompts (docs/measures.md,
    # "How good the judge is"); None for other methods and for runs without both labels
    judge_auroc: float | None = None
    judge_auroc_ci: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return self.model.name

    def as_dict(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": m.name, "quantization": m.quantization, "quantized_to": m.quantized_to,
            "parent_sha256": m.parent_sha256, "sha256": m.sha256, "requantized": m.requantized,
            "quantizer": m.quantizer, "bits_per_weight": m.bits_per_weight, "size_bytes": m.size,
            "reference": self.is_reference, "run_id": self.run.id if self.run else None,
            "run_status": self.run.status if self.run else None,
            "value": self.value, "ci": self.ci, "n": self.n,
            "dimensions": [d.as_dict() for d in self.dimensions], "delta": self.delta,
            "shared_items": self.shared, "flips": self.flips, "flip_rate": self.flip_rate,
            "flip_rate_ci": self.flip_rate_ci, "reference_only_right": self.reference_only_right,
            "variant_only_right": self.variant_only_right, "mcnemar_p": self.mcnemar_p,
            "mcnemar_p_holm": self.mcnemar_p_holm, "change": self.change,
            "items_per_s": self.items_per_s, "speed_source": self.speed_source,
            "first_significant_changes": list(self.first_changes),
            "judge_auroc": self.judge_auroc, "judge_auroc_ci": self.judge_auroc_ci,
        }


@dataclass(frozen=True)
class Ladder:
    root: ModelInfo
    method: str
    metric: str                          # the method's headline metric key (metrics.vocabulary)
    benchmark: str | None
    reference: str | None
    variants: tuple[LadderVariant, ...]
    first_significant_change: dict[str, str | None] = field(default_factory=dict)
    alpha: float = ALPHA
    notes: tuple[str, ...] = ()

    @property
    def speed_unit(self) -> str:
        return SPEED_UNIT[self.method]

    def rung_labels(self) -> dict[str, str]:
        """A short label per variant for tables and charts: its type (``†`` requantized), numbered where two
        share one; the full names sit beside them in each face."""
        base = {v.name: (v.model.quantization or "?") + ("†" if v.model.requantized else "") for v in self.variants}
        shared = {label for label in base.values() if list(base.values()).count(label) > 1}
        seen: dict[str, int] = {}
        out = {}
        for name, label in base.items():
            if label in shared:
                seen[label] = seen.get(label, 0) + 1
                label = f"{label}#{seen[label]}"
            out[name] = label
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.root.name, "method": self.method, "metric": self.metric,
            "metric_name": metrics.METRICS[self.metric].name, "benchmark": self.benchmark,
            "reference": self.reference, "alpha": self.alpha, "speed_unit": self.speed_unit,
            "variants": [v.as_dict() for v in self.variants],
            "first_significant_change": self.first_significant_change, "notes": list(self.notes),
        }


def _choose_method(runs: dict[str, dict[str, RunInfo]], method: str | None) -> str:
    if method is not None:
        if method not in METHODS:
            raise UserError(f"--method {method}: use one of {', '.join(METHODS)}")
        return method
    # the method most of the family has runs of (judge first on a tie: the paper's protocol)
    return max(METHODS, key=lambda m: (len(runs[m]), -METHODS.index(m)))


def _speed(store: Store, run: RunInfo) -> tuple[float | None, str | None]:
    """Items per second as the run measured itself (``provenance.timing``, model loading excluded), else from
    the spread of its result timestamps (runs from before the timing was recorded)."""
    raw = store.conn.execute("SELECT provenance_json FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    try:
        timing = (json.loads(raw) if raw else {}).get("timing") or {}
    except ValueError:
        timing = {}
    seconds, items = float(timing.get("scoring_seconds") or 0), int(timing.get("items_scored") or 0)
    if seconds > 0 and items > 0:
        return items / seconds, "run timing"
    first, last, n = store.conn.execute(
        f"SELECT min(created_at), max(created_at), count(*) FROM {_RESULT_TABLE[run.method]} WHERE run_id = ?",
        (run.id,)).fetchone()
    if n and n > 1 and first and last:
        span = (datetime.fromisoformat(last.rstrip("Z")) - datetime.fromisoformat(first.rstrip("Z"))).total_seconds()
        if span > 0:
            return (n - 1) / span, "result timestamps"
    return None, None


def read_ladder(store: Store, model: str | ModelInfo, models_dir: Path | None = None, *,
                reference: str | None = None, method: str | None = None, benchmark: str | None = None,
                filters: metrics.Filters | Mapping[str, Any] | None = None, alpha: float = ALPHA,
                run_ids: Sequence[int] | None = None) -> Ladder:
    """The ladder of ``model``'s quantization family (see the module docstring). ``run_ids``: use only these
    runs (the audit report's), not each variant's run to show."""
    if isinstance(model, ModelInfo):
        info = model
    else:
        if models_dir is not None:
            discover(store, models_dir)
        info = resolve_model(store, model, models_dir or Path("."))
    flt = metrics.Filters.parse(filters)
    family = model_family(store, info)
    root = family_root(family)
    bench_id = store.benchmark(benchmark).id if benchmark else None
    names = [m.name for m in family]
    if run_ids is not None:
        given = [run_info(store, r) for r in run_ids]
        by_method = {m: {r.model: r for r in given if r.method == m and r.model in names
                         and (bench_id is None or r.benchmark_id == bench_id)} for m in METHODS}
    else:
        by_method = {m: {r.model: r for r in runs_to_show(store, models=names, methods=(m,),
                                                          benchmark_id=bench_id).runs} for m in METHODS}
    chosen = _choose_method(by_method, method)
    # a run whose process died reads 'interrupted', as in ``runs list``
    runs = {k: replace(r, status=shown_status(store, r)) for k, r in by_method[chosen].items()}
    notes: list[str] = []
    if len(family) < 2:
        notes.append(f"{info.name} has no quantization variants yet: misalign-tui models quantize {info.name} "
                     "--to Q8_0,Q4_K_M (add --allow-requantize for an already quantized file)")
    if bench_id is None and runs:
        counts: dict[int, int] = {}
        for r in runs.values():
            counts[r.benchmark_id] = counts.get(r.benchmark_id, 0) + 1
        bench_id = max(counts, key=lambda b: (counts[b], b))
        if len(counts) > 1:
            notes.append("the variants' latest runs are on different benchmarks; showing "
                         f"{store.benchmark_by_id(bench_id).name} (choose with --benchmark)")
        runs = {k: r for k, r in runs.items() if r.benchmark_id == bench_id}
    bench_name = None
    if bench_id is not None:
        b = store.benchmark_by_id(bench_id)
        bench_name = f"{b.name}@{b.version}"
    key = headline(chosen)
    with_runs = [m for m in family if m.name in runs]
    if reference is not None:
        if reference not in names:
            raise UserError(f"--reference {reference}: not in the quantization family of {info.name} "
                            f"({', '.join(names)})")
        if reference not in runs:
            raise UserError(f"--reference {reference}: has no {chosen} run with results"
                            + (f" on {bench_name}" if bench_name else "") + f"; misalign-tui run -m {reference}")
        ref_name: str | None = reference
    else:
        ref_name = with_runs[0].name if with_runs else None  # the family is ordered by bits per weight
    missing = [m.name for m in family if m.name not in runs]
    if missing:
        notes.append(f"no {chosen} run with results for {', '.join(missing)}"
                     + (f" on {bench_name}" if bench_name else "") + ": misalign-tui run --ladder "
                     f"{root.name} --method {chosen}")

    raw: list[dict[str, Any]] = []
    for m in family:
        run = runs.get(m.name)
        entry: dict[str, Any] = {"model": m, "run": run, "dims": []}
        if run is not None:
            # a judge run's AS gets its bootstrap interval over prompts (a preference accuracy its Wilson one)
            overall = metrics.profile(store, run.id, filters=flt,
                                      bootstrap=BOOTSTRAP_RESAMPLES if chosen == "judge" else 0)
            if overall:
                entry.update(value=key.row_value(overall[0]), ci=key.row_ci(overall[0]), n=key.row_n(overall[0]))
            entry["dims"] = [DimensionFigure(r.group or "", key.row_value(r), key.row_ci(r), key.row_n(r))
                             for r in metrics.profile(store, run.id, group_by="dimension", filters=flt,
                                                      bootstrap=BOOTSTRAP_RESAMPLES if chosen == "judge" else 0)]
            entry["speed"] = _speed(store, run)
            if ref_name is not None and m.name != ref_name:
                ref_run = runs[ref_name].id
                whole = metrics.compare(store, ref_run, run.id, filters=flt)
                entry["overall_test"] = whole[0] if whole else None
                entry["dim_tests"] = {r.group: r for r in
                                      metrics.compare(store, ref_run, run.id, group_by="dimension", filters=flt)}
        raw.append(entry)

    overall_keys = [i for i, e in enumerate(raw) if e.get("overall_test") is not None]
    overall_adj = dict(zip(overall_keys, holm([raw[i]["overall_test"].p_value for i in overall_keys]), strict=True))
    dim_keys = [(i, d) for i, e in enumerate(raw) for d in (e.get("dim_tests") or {})]
    dim_adj = dict(zip(dim_keys, holm([raw[i]["dim_tests"][d].p_value for i, d in dim_keys]), strict=True))

    def change(test: metrics.ComparisonRow, p_adj: float) -> str | None:
        if p_adj >= alpha or test.a_only == test.b_only:
            return None
        return "worse" if test.a_only > test.b_only else "better"  # a = the reference

    first: dict[str, str | None] = {}
    variants: list[LadderVariant] = []
    for i, e in enumerate(raw):
        m, run = e["model"], e["run"]
        test = e.get("overall_test")
        dims: list[DimensionFigure] = []
        tests = e.get("dim_tests") or {}
        for d in e["dims"]:
            t = tests.get(d.dimension)
            if t is not None:
                p_adj = dim_adj[(i, d.dimension)]
                flips = t.a_only + t.b_only
                d = DimensionFigure(d.dimension, d.value, d.ci, d.n, t.delta if t.delta is None else -t.delta,
                                    t.n_items, flips, flips / t.n_items if t.n_items else None, t.p_value, p_adj,
                                    change(t, p_adj))
            dims.append(d)
            first.setdefault(d.dimension, None)
        kwargs: dict[str, Any] = {}
        if test is not None:
            p_adj = overall_adj[i]
            flips = test.a_only + test.b_only
            kwargs = dict(delta=None if test.delta is None else -test.delta, shared=test.n_items, flips=flips, flip_rate=flips / test.n_items if test.n_items else None,
                          flip_rate_ci=wilson(flips, test.n_items), reference_only_right=test.a_only,
                          variant_only_right=test.b_only, mcnemar_p=test.p_value, mcnemar_p_holm=p_adj,
                          change=change(test, p_adj))
        elif run is not None and m.name == ref_name:
            kwargs = dict(shared=e.get("n", 0), flips=0, flip_rate=0.0)
        speed, source = e.get("speed", (None, None))
        if run is not None and chosen == "judge":
            quality = judge_quality(store, run.id, filters=flt, detail=False)
            if quality:
                kwargs.update(judge_auroc=quality[0].auroc, judge_auroc_ci=quality[0].auroc_ci)
        variants.append(LadderVariant(m, m.name == ref_name, run, e.get("value"), e.get("ci"), e.get("n", 0),
                                      tuple(dims), items_per_s=speed, speed_source=source, **kwargs))
    # the first level, going down in bits per weight, whose adjusted test holds, per dimension
    marked: list[LadderVariant] = []
    for v in variants:
        changes = []
        for d in v.dimensions:
            if d.change and first.get(d.dimension) is None:
                first[d.dimension] = v.name
                changes.append(d.dimension)
        marked.append(v if not changes else _with_first(v, tuple(changes)))
    if chosen == "preference":
        notes.append("preference on a base model measures the pretraining prior (length and register confound "
                     "it); read the flips beside the accuracy")
    return Ladder(root, chosen, key.key, bench_name, ref_name, tuple(marked), first, alpha, tuple(notes))


JUDGE_AUROC_MISSING = "n/a"  # a judge run without both gold labels among its items


def judge_auroc_text(v: LadderVariant, sep: str = ", ") -> str:
    """A variant's judge AUROC with its 95 % interval as every face shows it: a probability (0.5 = chance).
    ``sep`` between the bounds: the app's tables write them ``[a–b]``."""
    if v.judge_auroc is None:
        return JUDGE_AUROC_MISSING
    ci = f" [{v.judge_auroc_ci[0]:.2f}{sep}{v.judge_auroc_ci[1]:.2f}]" if v.judge_auroc_ci else ""
    return f"{v.judge_auroc:.2f}{ci}"


def _with_first(v: LadderVariant, changes: tuple[str, ...]) -> LadderVariant:
    return replace(v, first_changes=changes)


def ladder_families(store: Store, model_names: Sequence[str]) -> list[ModelInfo]:
    """The roots of the quantization families among ``model_names`` that have at least two members (the audit
    report adds a ladder section for each)."""
    models = {m.name: m for m in list_models(store)}
    roots: dict[int, ModelInfo] = {}
    for name in model_names:
        if name in models:
            family = model_family(store, models[name])
            if len(family) >= 2:
                root = family_root(family)
                roots.setdefault(root.id, root)
    return list(roots.values())
