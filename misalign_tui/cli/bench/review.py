"""``bench review``: time per decision on the Review screen (key to next item, key to committed decision) on the
store of 1,000,000 result rows that ``bench ui`` builds."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from misalign_tui.cli.bench import bench
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx

TARGETS = {"next_item_p90_ms": 100.0}


@bench.command("review")
@click.option("--responses", type=click.IntRange(100), default=200_000, show_default=True,
              help="Responses in the synthetic benchmark.")
@click.option("--models", type=click.IntRange(1), default=5, show_default=True, help="Models with a judge run.")
@click.option("--keys", type=click.IntRange(1), default=100, show_default=True, help="Decisions to time.")
@click.option("--store", "store_home", type=click.Path(file_okay=False), default=None,
              help="Workspace for the synthetic store (default: <home>/bench-ui, shared with bench ui).")
@format_option
@pass_ctx
def bench_review(ctx: Context, responses: int, models: int, keys: int, store_home: str | None, fmt: str) -> None:
    """Build (or reuse) the synthetic store, sample a judge run's verdicts into a review queue, then decide
    KEYS items by keys headless: median, p90 and max from key to the next item painted, and to the commit."""
    from misalign_tui.devtools.review_benchmark import measure, prepare_queue
    from misalign_tui.devtools.ui_benchmark import build_store

    home = Path(store_home) if store_home else ctx.workspace.home / "bench-ui"
    ctx.err.print(f"store: {home} ({responses:,} responses, {models} models' judge runs)")
    info = build_store(home, responses, models, say=lambda m: ctx.err.print(m))
    queue = prepare_queue(home, keys)
    ctx.err.print(f"review queue {queue['queue_id']}: {queue['queue_items']} verdicts sampled in "
                  f"{queue['queue_create_s']} s; measuring the app headless…")
    result = {**measure(home, queue["queue_id"], keys), **queue, **info, "targets": TARGETS}
    result["within_targets"] = all(result[k] < v for k, v in TARGETS.items())
    if fmt == "json":
        emit_json(result)
        return
    table = Table(title="bench review")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    for key in ("decisions", "next_item_median_ms", "next_item_p90_ms", "next_item_max_ms", "stored_median_ms",
                "stored_max_ms", "queue_create_s", "result_rows"):
        table.add_row(key, f"{result[key]:,}", f"< {TARGETS[key]}" if key in TARGETS else "")
    ctx.console.print(table)
