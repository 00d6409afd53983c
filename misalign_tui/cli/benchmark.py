"""``benchmark``: list, inspect and check benchmarks."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx


@cli.group()
def benchmark() -> None:
    """Benchmarks in the workspace."""


@benchmark.command("list")
@format_option
@pass_ctx
def benchmark_list(ctx: Context, fmt: str) -> None:
    """Every benchmark version with its content hash and size."""
    rows = ctx.store.benchmarks()
    if fmt == "json":
        emit_json([{"name": b.name, "version": b.version, "hash": b.content_hash, "prompts": b.prompts,
                    "responses": b.responses, "created_at": b.created_at} for b in rows])
        return
    if not rows:
        ctx.console.print("no benchmarks yet: misalign-tui init loads the seed benchmark")
        return
    table = Table(title="Benchmarks")
    for col in ("name", "version", "prompts", "responses", "hash", "created"):
        table.add_column(col)
    for b in rows:
        table.add_row(b.name, str(b.version), str(b.prompts), str(b.responses), (b.content_hash or "-")[:12],
                      b.created_at[:19])
    ctx.console.print(table)
