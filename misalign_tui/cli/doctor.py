"""``doctor``: check the workspace database in full (a damaged file is refused for writing; this says why)."""

from __future__ import annotations

import sys

import click

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx
from misalign_tui.core.errors import UserError


@cli.command("doctor")
@format_option
@pass_ctx
def doctor(ctx: Context, fmt: str) -> None:
    """Check the workspace database with SQLite's PRAGMA integrity_check (every page, record and index),
    without changing it; exit code 2 when it is damaged."""
    from misalign_tui.core.store import check_database

    path = ctx.workspace.db_path
    problems = check_database(path)
    if fmt == "json":
        emit_json({"database": str(path), "check": "PRAGMA integrity_check", "ok": not problems,
                   "problems": problems})
        if problems:
            sys.exit(2)
        return
    if problems:
        first = problems[0].replace("\n", " ")
        raise UserError(f"{path}: damaged: PRAGMA integrity_check found {len(problems)} problem(s), first: {first}; "
                        "restore a backup, or export what is still readable (export benchmark, export results)")
    click.echo(f"{path}: ok (PRAGMA integrity_check)")
