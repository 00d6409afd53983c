"""``bench remote``: judge items/s through an OpenAI-compatible server against the in-process engine."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli.bench import bench
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx
from misalign_tui.core.models.registry import resolve_model


@bench.command("remote")
@click.argument("url")
@click.option("--model", "model", default="default", show_default=True,
              help="The local copy of the served model, run in-process on the same items (name, path, or "
                   "'none' to skip).")
@click.option("--remote-model", help="Model name to ask the server for (default: the first it lists).")
@click.option("--items", type=click.IntRange(1, 100_000), default=16, show_default=True)
@click.option("--api-key-env", help="Environment variable holding the server's API key.")
@click.option("--scoring", type=click.Choice(["auto", "logit-bias", "echo"]), default="auto", show_default=True,
              help="Judge path: one request per item with logit_bias where the server honours it (auto), that "
                   "path or an error, or prompt log-probabilities (echo).")
@format_option
@pass_ctx
def bench_remote_cmd(ctx: Context, url: str, model: str, remote_model: str | None, items: int,
                     api_key_env: str | None, scoring: str, fmt: str) -> None:
    """Judge items/s through the server at concurrency 1, 4 and 8, and in-process on the same items."""
    from misalign_tui.devtools.remote_bench import bench_remote

    local_path, template = None, None
    if model != "none":
        info = resolve_model(ctx.store, model, ctx.workspace.models_dir)
        if info.is_remote:
            raise click.BadParameter("give the local GGUF copy of the served model, not a remote one",
                                     param_hint="--model")
        local_path, template = info.path, info.effective_chat_template
    result = bench_remote(url, remote_model=remote_model, local_model_path=local_path, chat_template=template,
                          items=items, api_key_env=api_key_env, scoring=scoring,
                          progress=lambda m: ctx.err.print(m))
    if fmt == "json":
        emit_json(result)
        return
    table = Table(title=f"judge throughput, {items} items: {url} ({result['judge_scoring']} path) vs in-process")
    for col in ("backend", "concurrency", "items", "seconds", "items/s", "requests/item"):
        table.add_column(col)
    for r in result["rows"]:
        per = r.get("requests_per_item")
        table.add_row(r["backend"], str(r["concurrency"] or "-"), str(r["items"]), f"{r['seconds']:.2f}",
                      f"{r['items_per_s']:.2f}", "-" if per is None else f"{per:.1f}")
    ctx.console.print(table)
    if result["max_abs_diff_p_misaligned"] is not None:
        ctx.console.print(f"largest |ΔP(misaligned)| remote vs in-process: {result['max_abs_diff_p_misaligned']:.4f}")
