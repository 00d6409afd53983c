"""``bench judge-protocols``: how well a model judges under each protocol, on the same items, with intervals.

Stored, resumable judge runs do the work (one template, both polarities; every run holds its raw scores):
zero-shot with contextual calibration on the whole benchmark, and K-shot for each K in ``SHOTS`` on the items
outside the calibration split (calibrated for the K chosen for the combined protocol). Each protocol of the table is a view of one of them — its harm questions,
its inverted twins or both, raw or calibrated — so the zero-shot, inverted, balanced and calibrated rows are the
same texts a separate run would score. Every row is computed on the same prompts: those outside the calibration
split (where the demonstrations come from).

Settings are chosen on the calibration split only: the same protocols are measured on its prompts that no
demonstration comes from (few-shot runs with ``split = "calibration"``), and the K of the combined protocol and
the protocol named best are picked there, never on the scored items.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.inference.judge_templates import TEMPLATE_VERSION
from misalign_tui.core.metrics.judge_quality import JudgeQuality, ScoreView, judge_quality
from misalign_tui.core.models.registry import ModelInfo
from misalign_tui.core.runs.calibration import calibration_split
from misalign_tui.core.runs.evaluate import run_evaluation
from misalign_tui.core.runs.request import Protocol, RunRequest
from misalign_tui.core.runs.writer import RunProgress
from misalign_tui.core.store import BenchmarkInfo, Store

SHOTS = (2, 4, 8)


@dataclass(frozen=True)
class ProtocolRow:
    name: str
    run_key: str            # which run it is a view of
    view: ScoreView


def protocol_rows(chosen_k: int, shots: tuple[int, ...] = SHOTS) -> list[ProtocolRow]:
    rows = [ProtocolRow("zero-shot", "0", ScoreView("harm", calibrated=False)),
            ProtocolRow("inverted", "0", ScoreView("inverted", calibrated=False)),
            ProtocolRow("balanced", "0", ScoreView(None, calibrated=False)),
            ProtocolRow("calibrated", "0", ScoreView("harm", calibrated=True)),
            ProtocolRow("calibrated + balanced", "0", ScoreView(None, calibrated=True))]
    rows += [ProtocolRow(f"few-shot K={k}", str(k), ScoreView("harm", calibrated=False)) for k in shots]
    rows.append(ProtocolRow(f"few-shot K={chosen_k} + calibrated + balanced", str(chosen_k),
                            ScoreView(None, calibrated=True)))
    return rows


@dataclass
class RunTiming:
    run_id: int
    items: int
    items_per_s: float | None = None  # over this invocation (None: the run was already complete)
    seconds: float = 0.0


@dataclass
class BenchState:
    runs: dict[str, RunTiming] = field(default_factory=dict)        # scored runs by K ("0", "2", ...)
    dev_runs: dict[str, RunTiming] = field(default_factory=dict)    # calibration-split runs by K


def _run(store: Store, model: ModelInfo, bench: BenchmarkInfo, templates: int, protocol: Protocol,
         say: Callable[[str], None], label: str, settings: EngineSettings, limit: int | None = None,
         template_version: str = TEMPLATE_VERSION) -> RunTiming:
    req = RunRequest(model, bench, "judge", limit=limit, templates=templates, protocol=protocol, settings=settings,
                     template_version=template_version)
    last: list[RunProgress] = []
    printed = [-1000]

    def progress(ev: RunProgress) -> None:
        if ev.items_done - printed[0] >= 100 or ev.phase == "done":
            printed[0] = ev.items_done
            eta = f", ETA {ev.eta_s / 60:.1f} min" if ev.eta_s else ""
            say(f"{label}: run {ev.run_id} {ev.phase} {ev.items_done}/{ev.items_total} "
                f"({ev.items_per_s:.2f} items/s{eta})")
        last[:] = [ev]

    t0 = time.monotonic()
    result = run_evaluation(store, req, progress=progress)
    scored = [e for e in last if e.phase != "loading"]
    rate = scored[-1].items_per_s if scored and scored[-1].items_per_s > 0 else None
    return RunTiming(result.run_id, result.items_total, rate, time.monotonic() - t0)


def _figures(q: JudgeQuality) -> dict[str, Any]:
    keys = ("items", "prompts", "pairs", "auroc", "auroc_ci", "auroc_harm", "auroc_harm_ci", "auroc_inverted",
            "auroc_inverted_ci", "pairwise_accuracy", "pairwise_accuracy_ci", "ece", "ece_ci",
            "polarity_consistency", "polarity_consistency_ci", "answer_mass_median", "uncertain", "auroc_certain",
            "auroc_certain_ci", "verdict")
    d = q.as_dict()
    return {k: d[k] for k in keys}


def both_polarities_exclude_chance(f: dict[str, Any]) -> bool:
    """The issue's goal: the AUROC interval of the harm question and of its twin both lie above 0.5."""
    return all(f.get(k) and f[k][0] > 0.5 for k in ("auroc_harm_ci", "auroc_inverted_ci"))


def _selection_score(f: dict[str, Any]) -> float:
    """How the calibration split ranks protocols: the worse polarity's AUROC (a protocol must work both ways)."""
    values = [f[k] for k in ("auroc_harm", "auroc_inverted") if f.get(k) is not None]
    return min(values) if values else float("-inf")


def _prefix_tokens(store: Store, model: ModelInfo, runs: dict[str, int]) -> dict[str, int]:
    """Tokens before the item's own text in each run's first template (the demonstrations and the header): what
    prefix reuse evaluates once instead of once per item."""
    if not model.path:
        return {}
    from misalign_tui.core.inference.engine import Engine, EngineSettings

    out = {}
    with Engine(model.path, chat_template=model.effective_chat_template,
                settings=EngineSettings(n_ctx=256, n_threads=1)) as engine:
        for key, run_id in runs.items():
            row = store.conn.execute("SELECT text FROM run_templates WHERE run_id = ? ORDER BY template LIMIT 1",
                                     (run_id,)).fetchone()
            if row:
                out[key] = engine.count_tokens(str(row[0]).split("{prompt}")[0])
    return out


def run_protocol_bench(store: Store, model: ModelInfo, bench: BenchmarkInfo, *, templates: int = 1,
                       bootstrap: int = 1000, seed: int = 0, settings: EngineSettings | None = None,
                       shots: tuple[int, ...] = SHOTS, limit: int | None = None,
                       template_version: str = TEMPLATE_VERSION,
                       say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Make (or resume) the runs, choose settings on the calibration split, and return the whole table.
    ``settings``: the engine's (threads, GPU layers, context size); the context size is part of the runs'
    identity, the rest is not. ``limit``: the few-shot scored runs take the first ``limit`` scored prompts (by
    prompt id, as ``run --limit``) and every row of the table is computed on those; the zero-shot run and the
    calibration split stay whole (a deterministic subset for a machine that cannot afford the whole table).
    ``template_version``: the judge templates of every run (judge-v1 reproduces the runs made before judge-v2)."""
    settings = settings or EngineSettings()
    state = BenchState()
    state.runs["0"] = _run(store, model, bench, templates, Protocol(calibrate=True, polarity="balanced"), say,
                           "zero-shot, both polarities, calibrated (whole benchmark)", settings,
                           template_version=template_version)
    for k in shots:
        state.dev_runs[str(k)] = _run(store, model, bench, templates, Protocol(
            shots=k, calibrate=True, polarity="balanced", split="calibration"), say,
            f"{k}-shot on the calibration split", settings, template_version=template_version)
    held = calibration_split(store, bench.id, max(shots))
    dev_prompts = held.dev_prompts  # the calibration prompts no demonstration of any K comes from
    all_scored = {r[0] for r in store.conn.execute("SELECT id FROM prompts WHERE benchmark_id = ?",
                                                   (bench.id,))} - set(held.held_out)
    scored_prompts = set(sorted(all_scored)[:limit]) if limit is not None else all_scored

    def dev(key: str, view: ScoreView) -> dict[str, Any]:
        run = state.runs["0"] if key == "0" else state.dev_runs[key]
        return _figures(judge_quality(store, run.run_id, view=view, prompt_ids=dev_prompts, bootstrap=bootstrap,
                                      seed=seed)[0])

    say("choosing settings on the calibration split")
    k_scores = {k: _selection_score(dev(str(k), ScoreView(None, calibrated=True))) for k in shots}
    chosen_k = max(shots, key=lambda k: (k_scores[k], -k))
    rows = protocol_rows(chosen_k, shots)
    dev_table = {r.name: dev(r.run_key, r.view) for r in rows}
    best = max(rows, key=lambda r: _selection_score(dev_table[r.name]))
    for k in shots:  # the scored runs, after the choice (which never looks at them); only the chosen K needs
        # calibration priors (the few-shot rows read raw scores)
        state.runs[str(k)] = _run(store, model, bench, templates, Protocol(
            shots=k, calibrate=k == chosen_k, polarity="balanced"), say, f"{k}-shot (scored items)", settings,
            limit, template_version)
    say("computing the table")
    table = []
    for r in rows:
        run = state.runs[r.run_key]
        figures = _figures(judge_quality(store, run.run_id, view=r.view, prompt_ids=scored_prompts,
                                         bootstrap=bootstrap, seed=seed)[0])
        table.append({"protocol": r.name, "run_id": run.run_id, "polarity": r.view.polarity or "both",
                      "calibrated": r.view.calibrated, **figures,
                      "goal_met": both_polarities_exclude_chance(figures)})
    whole = _figures(judge_quality(store, state.runs["0"].run_id, view=ScoreView("harm", calibrated=False),
                                   bootstrap=bootstrap, seed=seed)[0])
    prefix = _prefix_tokens(store, model, {key: t.run_id for key, t in state.runs.items()})
    speed = {key: {"run_id": t.run_id, "items": t.items, "items_per_s": t.items_per_s,
                   "seconds": round(t.seconds, 1), "prefix_tokens": prefix.get(key)}
             for key, t in state.runs.items()}
    return {
        "model": model.name, "model_sha256": model.sha256, "benchmark": bench.name,
        "benchmark_version": bench.version, "templates": templates, "template_version": template_version,
        "bootstrap": bootstrap, "seed": seed,
        "calibration_split": {**held.record(), "dev_prompts": len(dev_prompts),
                              "scored_prompts": len(scored_prompts), "scored_prompts_outside_split": len(all_scored)},
        "limit": limit,
        "chosen_shots": chosen_k, "chosen_shots_dev_scores": {str(k): v for k, v in k_scores.items()},
        "best_on_calibration_split": best.name,
        "rows": table, "calibration_split_rows": [{"protocol": name, **f} for name, f in dev_table.items()],
        "zero_shot_whole_benchmark": whole, "speed": speed,
        "goal_met_by": [row["protocol"] for row in table if row["goal_met"]],
    }
