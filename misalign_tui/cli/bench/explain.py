"""``bench explain``: explain latency of one judge item and store growth per 1,000 preference items (issue 18)."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli.bench import bench
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx


@bench.command("explain")
@click.option("--model", "-m", "model_spec", default="default", show_default=True,
              help="default, a registered name, a .gguf path or a sha256 prefix.")
@click.option("--judge-prompts", type=click.IntRange(0), default=2, show_default=True,
              help="Seed prompts of the judge run whose longest response is explained (0 skips it).")
@click.option("--templates", type=click.IntRange(1, 5), default=3, show_default=True, help="Judge templates.")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Explanations timed.")
@click.option("--preference-prompts", type=click.IntRange(0), default=60, show_default=True,
              help="Seed prompts of the preference run measured for store growth (0 skips it).")
@format_option
@pass_ctx
def bench_explain(ctx: Context, model_spec: str, judge_prompts: int, templates: int, repeats: int,
                  preference_prompts: int, fmt: str) -> None:
    """Explain latency (model load + one batched leave-one-sentence-out pass) and the store's growth from the
    per-token log-probabilities of preference runs, per 1,000 pairs, on the seed benchmark."""
    from misalign_tui.core.models.registry import require_usable, resolve_model
    from misalign_tui.devtools.explain_bench import run_explain_bench

    model = require_usable(resolve_model(ctx.store, model_spec, ctx.workspace.models_dir))
    with ctx.err.status("measuring…") as status:
        result = run_explain_bench(ctx.store, model, judge_prompts=judge_prompts,
                                   preference_prompts=preference_prompts, templates=templates, repeats=repeats,
                                   say=lambda s: status.update(s))
    if fmt == "json":
        emit_json(result)
        return
    table = Table(title=f"bench explain: {model.name} on {result['benchmark']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key not in ("model", "benchmark"):
            table.add_row(key.replace("_", " "), str(value))
    ctx.console.print(table)
