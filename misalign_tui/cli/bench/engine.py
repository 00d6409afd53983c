"""``bench engine``: the inference engine's throughput against llama.cpp's raw rate and a naive baseline."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli.bench import bench
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx, styled
from misalign_tui.cli.run import engine_options


@bench.command("engine")
@click.option("--model", "-m", "model_spec", default="default", show_default=True,
              help="default, a registered name, a .gguf path or a sha256 prefix.")
@click.option("--items", "n_items", type=click.IntRange(2, None), default=200, show_default=True,
              help="Judge items (responses); preference uses the same texts as items/2 pairs.")
@click.option("--naive-items", type=click.IntRange(1, None), default=30, show_default=True,
              help="Items for the naive baseline (it is slow; its rate is what counts).")
@click.option("--preference-pairs", type=click.IntRange(0, None), default=20, show_default=True,
              help="Pairs for the preference measurement (a logits row over the whole vocabulary per response "
                   "token makes it slow on large vocabularies); 0 skips it.")
@click.option("--judge-k", type=click.IntRange(0, 5), default=3, show_default=True,
              help="Templates per item for the shared-body (judge-v2) vs judge-v1 comparison; 0 skips it.")
@click.option("--gen-prompts", type=click.IntRange(0, None), default=16, show_default=True,
              help="Prompts for the generation measurement; 0 skips it.")
@click.option("--gen-tokens", type=click.IntRange(1, None), default=64, show_default=True,
              help="Tokens sampled per prompt in the generation measurement.")
@click.option("--gen-batches", default="1,4,8,16", show_default=True,
              help="Batch sizes for the generation measurement (sequences decoded together), comma-separated.")
@click.option("--benchmark", "-b", help="Benchmark to take items from (default: the seed benchmark when loaded).")
@engine_options
@format_option
@pass_ctx
def bench_engine(ctx: Context, model_spec: str, n_items: int, naive_items: int, preference_pairs: int,
                 judge_k: int, gen_prompts: int, gen_tokens: int, gen_batches: str, benchmark: str | None,
                 n_ctx: int,
                 gpu_layers: int | None, threads: int | None, fmt: str) -> None:
    """Raw prompt-processing rate, judge/preference items/s and unique tokens/s, naive baseline, peak RSS."""
    from misalign_tui.core.inference.engine import Engine, EngineSettings
    from misalign_tui.core.io.native import load_seed_benchmark
    from misalign_tui.core.models.registry import require_usable, resolve_model
    from misalign_tui.devtools.engine_bench import bench_items, run_engine_bench

    try:
        batches = tuple(int(b) for b in gen_batches.split(",") if b.strip())
    except ValueError:
        raise click.BadParameter(f"{gen_batches!r}: batch sizes as whole numbers, e.g. 1,4,8,16",
                                 param_hint="--gen-batches") from None
    if any(b < 1 for b in batches):
        raise click.BadParameter("batch sizes must be at least 1", param_hint="--gen-batches")
    store = ctx.store
    load_seed_benchmark(store)
    model = require_usable(resolve_model(store, model_spec, ctx.workspace.models_dir))
    items, source = bench_items(store, benchmark, max(1, n_items // 2))
    with ctx.err.status("loading the model…"):
        engine = Engine(model.path or "", chat_template=model.effective_chat_template,
                        settings=EngineSettings(n_ctx=n_ctx, n_gpu_layers=gpu_layers, n_threads=threads))
    try:
        with ctx.err.status("measuring…") as status:
            result = run_engine_bench(engine, items, naive_items=naive_items, preference_pairs=preference_pairs,
                                      gen_prompts=gen_prompts, gen_tokens=gen_tokens, gen_batches=batches,
                                      judge_k=judge_k,
                                      say=lambda s: status.update(s))
    finally:
        engine.close()
    result = {"model": model.name, "model_sha256": model.sha256, "items_source": source, **result}
    if fmt == "json":
        emit_json(result)
        return
    table = Table(title=f"bench engine: {model.name} on {result['device']}, {result['threads']} threads ({source})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("raw prompt processing (512 tokens)", f"{result['raw_tokens_per_s']:.0f} tokens/s"),
        ("judge", f"{result['judge_items_per_s']:.2f} items/s"),
        ("judge unique tokens", f"{result['judge_tokens_per_s']:.0f} tokens/s "
                                f"({result['judge_tokens_per_s_vs_raw']:.0%} of raw)"),
        ("naive (reset per item)", f"{result['naive_items_per_s']:.2f} items/s"),
        ("judge speed-up over naive", f"{result['judge_speedup_vs_naive']:.1f}×"),
    ]
    if result.get("preference_items_per_s"):
        rows.append(("preference", f"{result['preference_items_per_s']:.2f} pairs/s"))
    if result.get("judge_k3_items_per_s"):
        k = result["judge_k"]
        rows.append((f"judge, {k} templates, shared body (judge-v2)",
                     f"{result['judge_k3_items_per_s']:.2f} items/s ({result['judge_k3_unique_tokens']} tokens)"))
        rows.append((f"judge, {k} templates, judge-v1",
                     f"{result['judge_k3_v1_items_per_s']:.2f} items/s ({result['judge_k3_v1_unique_tokens']} tokens)"))
        rows.append(("shared body speed-up", f"{result['judge_k3_speedup_vs_v1']:.2f}× (tokens bound "
                                             f"{result['judge_k3_token_ratio_bound']:.2f}×)"))
    for b, rate in (result.get("generate_tokens_per_s") or {}).items():
        rows.append((f"generation, batch {b}", f"{rate:.1f} tokens/s"))
    rows.append(("peak resident memory", f"{result['peak_rss_mb']:.0f} MB"))
    for r in rows:
        table.add_row(*r)
    ctx.console.print(table)
    for name, ok in result["targets"].items():
        ctx.console.print(styled("met", "green") if ok else styled("missed", "red"), name.replace("_", " "))
