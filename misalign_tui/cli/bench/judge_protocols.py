"""``bench judge-protocols``: a model's judge quality under each protocol on the same items (devtools/judge_protocols.py)."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli.bench import bench
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx
from misalign_tui.cli.run import engine_options
from misalign_tui.core.inference.judge_templates import TEMPLATE_VERSION, TEMPLATE_VERSIONS


def _ci(v: float | None, ci: list[float] | None, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def protocol_table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title)
    for col in ("protocol", "AUROC", "AUROC harm q.", "AUROC inverted q.", "pairwise acc.", "ECE",
                "polarity consistency", "answer mass", "n"):
        table.add_column(col, justify="left" if col == "protocol" else "right", overflow="fold")
    for r in rows:
        mass = r.get("answer_mass_median")
        table.add_row(r["protocol"], _ci(r["auroc"], r["auroc_ci"]), _ci(r["auroc_harm"], r["auroc_harm_ci"]),
                      _ci(r["auroc_inverted"], r["auroc_inverted_ci"]),
                      _ci(r["pairwise_accuracy"], r["pairwise_accuracy_ci"], pct=True), _ci(r["ece"], r["ece_ci"]),
                      _ci(r["polarity_consistency"], r["polarity_consistency_ci"], pct=True),
                      "not measured" if mass is None else f"{100 * mass:.1f}%", f"{r['items']:,}")
    return table


@bench.command("judge-protocols")
@click.option("--model", "-m", "model_spec", default="default", show_default=True,
              help="default, a registered name, a .gguf path or a sha256 prefix.")
@click.option("--benchmark", "-b", default="misalign-seed", show_default=True, help="Benchmark name.")
@click.option("--templates", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Judge questions per item (each with its inverted twin).")
@click.option("--template-version", type=click.Choice(TEMPLATE_VERSIONS), default=TEMPLATE_VERSION, show_default=True,
              help="Judge templates of every run (judge-v1: the templates of runs made before judge-v2).")
@click.option("--bootstrap", type=click.IntRange(0), default=1000, show_default=True,
              help="Resamples over prompts for the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--shots", "shots_text", default="2,4,8", show_default=True,
              help="The K of the few-shot protocols, comma-separated.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Score only the first N prompts outside the calibration split (by id), every protocol on the "
                   "same ones: a deterministic subset when the whole table costs too long. Default: all.")
@engine_options
@format_option
@pass_ctx
def bench_judge_protocols(ctx: Context, model_spec: str, benchmark: str, templates: int, template_version: str,
                          bootstrap: int, seed: int,
                          shots_text: str, limit: int | None, n_ctx: int, gpu_layers: int | None, threads: int | None, fmt: str) -> None:
    """AUROC, pairwise accuracy, ECE and polarity consistency (each with its interval) for zero-shot, inverted,
    balanced, calibrated and few-shot judging (K = 2, 4, 8), on the same items, settings chosen on the
    calibration split. The runs are stored and resumable: the same command again continues, then prints."""
    from misalign_tui.core.io.native import SEED_BENCHMARK, load_seed_benchmark
    from misalign_tui.core.models.registry import require_usable, resolve_model
    from misalign_tui.devtools.judge_protocols import run_protocol_bench

    store = ctx.store
    if benchmark == SEED_BENCHMARK:
        load_seed_benchmark(store)
    model = require_usable(resolve_model(store, model_spec, ctx.workspace.models_dir))
    from misalign_tui.core.errors import UserError
    from misalign_tui.core.inference.engine import EngineSettings
    from misalign_tui.core.runs.request import MAX_SHOTS

    try:
        shots = tuple(sorted({int(x) for x in shots_text.split(",") if x.strip()}))
    except ValueError:
        raise UserError(f"--shots {shots_text}: write whole numbers separated by commas (2,4,8)") from None
    if not shots or not all(1 <= k <= MAX_SHOTS for k in shots):
        raise UserError(f"--shots {shots_text}: each K must be between 1 and {MAX_SHOTS}")
    settings = EngineSettings(n_ctx=n_ctx, n_gpu_layers=gpu_layers, n_threads=threads)
    result = run_protocol_bench(store, model, store.benchmark(benchmark), templates=templates, bootstrap=bootstrap,
                                seed=seed, settings=settings, shots=shots, limit=limit,
                                template_version=template_version, say=lambda s: ctx.err.print(s, highlight=False, markup=False))
    if fmt == "json":
        emit_json(result)
        return
    split = result["calibration_split"]
    con = ctx.console
    subset = (f" (the first {split['scored_prompts']} by id of the {split['scored_prompts_outside_split']} outside "
              "the split: --limit)") if result["limit"] is not None else ""
    con.print(protocol_table(
        f"{result['model']} on {result['benchmark']}@{result['benchmark_version']}, {result['template_version']}: "
        f"{split['scored_prompts']} scored prompts{subset} "
        f"({result['rows'][0]['items']:,} responses); {split['prompts_held_out']} prompts held out as the "
        f"calibration split", result["rows"]))
    con.print(protocol_table(f"Calibration split ({split['dev_prompts']} prompts no demonstration comes from): "
                             "where settings are chosen", result["calibration_split_rows"]))
    whole = result["zero_shot_whole_benchmark"]
    con.print(f"zero-shot on the whole benchmark ({whole['items']:,} responses): "
              f"AUROC {_ci(whole['auroc'], whole['auroc_ci'])}, pairwise {_ci(whole['pairwise_accuracy'], whole['pairwise_accuracy_ci'], True)}, "
              f"ECE {_ci(whole['ece'], whole['ece_ci'])}", highlight=False)
    con.print(f"chosen on the calibration split: K = {result['chosen_shots']}; best protocol there: "
              f"{result['best_on_calibration_split']}", highlight=False)
    met = result["goal_met_by"]
    con.print("AUROC interval above 0.5 in both polarities: " + (", ".join(met) if met else "no protocol"),
              highlight=False)
    for key, s in result["speed"].items():
        rate = "already complete" if s["items_per_s"] is None else f"{s['items_per_s']:.2f} items/s"
        con.print(f"run {s['run_id']} ({'zero-shot' if key == '0' else key + '-shot'}): {s['items']:,} items, "
                  f"{rate}, {s['prefix_tokens']} tokens before each item's text", highlight=False)
