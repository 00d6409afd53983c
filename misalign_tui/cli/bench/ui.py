"""``bench ui``: the app's first paint, filter-change repaint and memory on a store of 1,000,000 result rows."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from misalign_tui.cli.bench import bench
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx

TARGETS = {"first_paint_s": 1.5, "filter_median_ms": 150.0, "peak_rss_mb": 400.0}


@bench.command("ui")
@click.option("--responses", type=click.IntRange(100), default=200_000, show_default=True,
              help="Responses in the synthetic benchmark.")
@click.option("--models", type=click.IntRange(1), default=5, show_default=True, help="Models with a judge run.")
@click.option("--store", "store_home", type=click.Path(file_okay=False), default=None,
              help="Workspace for the synthetic store (default: <home>/bench-ui); reused when it matches.")
@format_option
@pass_ctx
def bench_ui(ctx: Context, responses: int, models: int, store_home: str | None, fmt: str) -> None:
    """Build (or reuse) a synthetic store, then time the app headless: first paint, filter repaint, memory."""
    from misalign_tui.devtools.ui_benchmark import build_store, measure

    home = Path(store_home) if store_home else ctx.workspace.home / "bench-ui"
    ctx.err.print(f"store: {home} ({responses:,} responses, {models} models' judge runs)")
    info = build_store(home, responses, models, say=lambda m: ctx.err.print(m))
    ctx.err.print("measuring the app headless…")
    result = {**measure(home), **info, "targets": TARGETS}
    result["within_targets"] = all(result[k] < v for k, v in TARGETS.items())
    if fmt == "json":
        emit_json(result)
        return
    table = Table(title="bench ui")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    for key in ("first_paint_s", "dashboard_s", "filter_median_ms", "filter_p90_ms", "filter_max_ms", "peak_rss_mb",
                "result_rows", "store_build_s"):
        table.add_row(key, f"{result[key]:,}", f"< {TARGETS[key]}" if key in TARGETS else "")
    ctx.console.print(table)
