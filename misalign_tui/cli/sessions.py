"""``sessions``: saved comparisons from the TUI's Sessions screen, listed, shown and deleted headless."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import (
    Context,
    emit_json,
    format_option,
    id_column,
    json_text,
    pass_ctx,
    print_table,
)
from misalign_tui.core.sessions import delete_session, list_sessions, load_session


@cli.group()
def sessions() -> None:
    """Saved comparisons (models, benchmark, filters, metric, grouping)."""


@sessions.command("list")
@format_option
@pass_ctx
def sessions_list(ctx: Context, fmt: str) -> None:
    """Every saved session, newest first."""
    rows = list_sessions(ctx.store)
    if fmt == "json":
        emit_json([s.as_dict() for s in rows])
        return
    if not rows:
        ctx.console.print("no sessions yet: in the app, press s on the Explore screen to save one")
        return
    table = Table(title="Sessions")
    for col in ("name", "models", "benchmark", "metric", "grouping", "filters", "updated"):
        if col in ("models", "filters"):
            table.add_column(col)
        else:
            id_column(table, col)
    for s in rows:
        st = s.state
        table.add_row(s.name, ", ".join(st.models) or "all", st.benchmark or "-", st.metric, st.grouping,
                      ", ".join(f"{k}={v}" for k, v in st.filters.items()) or "-", s.updated_at[:19].replace("T", " "))
    print_table(ctx.console, table)


@sessions.command("show")
@click.argument("name")
@format_option
@pass_ctx
def sessions_show(ctx: Context, name: str, fmt: str) -> None:
    """One saved session."""
    s = load_session(ctx.store, name)
    if fmt == "json":
        emit_json(s.as_dict())
        return
    ctx.console.print(json_text(s.as_dict()))


@sessions.command("delete")
@click.argument("name")
@pass_ctx
def sessions_delete(ctx: Context, name: str) -> None:
    """Forget a saved session."""
    delete_session(ctx.store, name)
    ctx.err.print(f"deleted session {name}")


@sessions.command("report")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False), help="Markdown file (default: <home>/reports/NAME.md).")
@pass_ctx
def sessions_report(ctx: Context, name: str, out: str | None) -> None:
    """Write a saved session's tables (every grouping, its metric and filters) as Markdown."""
    from pathlib import Path

    from misalign_tui.core.report.session import write_session_report

    path = write_session_report(ctx.workspace, load_session(ctx.store, name), Path(out) if out else None)
    ctx.err.print(f"report written: {path}")
    ctx.console.print(str(path))
