"""``compare``: paired views of one run — ``compare languages RUN``: the English items against their parallel
items in every other language (core/metrics/crosslingual.py)."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import (
    Context,
    emit_json,
    format_option,
    id_column,
    pass_ctx,
    print_table,
    styled,
)
from misalign_tui.core.metrics.crosslingual import CrossLingual, cross_lingual, verdict_words
from misalign_tui.core.metrics.filters import FILTER_HELP, Filters
from misalign_tui.core.store import run_info


def _pct(v: float | None, ci: tuple[float, float] | None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


@cli.group()
def compare() -> None:
    """Paired comparisons within one run."""


@compare.command("languages")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@format_option
@pass_ctx
def compare_languages(ctx: Context, run_id: int, filters: tuple[str, ...], fmt: str) -> None:
    """RUN's English items paired with their parallel items: per language, the share right in English and in
    the language (Wilson 95 % intervals) and McNemar's exact test on the items whose verdict changes,
    Holm-adjusted across the languages. Profile a model on misalign-seed-languages first:
    misalign-tui run --benchmark misalign-seed-languages --filter parallel=yes"""
    result = cross_lingual(ctx.store, run_id, filters=Filters.parse(filters))
    if fmt == "json":
        emit_json(result.as_dict())
        return
    _table(ctx, result)


def _table(ctx: Context, result: CrossLingual) -> None:
    run = run_info(ctx.store, result.run_id)
    con = ctx.console
    con.print(styled(f"run {run.id}", "bold"), styled(f"{run.model} · {run.method} · {run.benchmark}"))
    if not result.rows:
        con.print(styled(result.note))
        return
    table = Table(title=f"Across languages: {result.metric}, each English item against its parallel item "
                        f"(n = paired {result.unit})")
    id_column(table, "language")
    for col in ("n", "English", "this language", "right in en only", "right here only", "McNemar p", "Holm p"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("reading")
    for r in result.rows:
        table.add_row(r.language, str(r.n), _pct(r.english_accuracy, r.english_ci), _pct(r.accuracy, r.ci),
                      str(r.english_only), str(r.language_only), f"{r.p_value:.3g}", f"{r.p_holm:.3g}",
                      verdict_words(r, result.alpha))
    print_table(con, table)
    con.print(styled("The changed items: right in English only, or right in the language only. McNemar's exact "
                     "test on them, Holm-adjusted across the languages.", "dim"))
