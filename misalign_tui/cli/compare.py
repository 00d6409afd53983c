"""``compare ladder``: one model's quantization variants side by side (core/views/ladder.py), the command-line
twin of the Compare screen's ladder mode; ``compare languages RUN``: the English items against their parallel items
in every other language (core/metrics/crosslingual.py)."""

from __future__ import annotations

import click
from rich import box
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
from misalign_tui.core import metrics
from misalign_tui.core.metrics.crosslingual import CrossLingual, cross_lingual, verdict_words
from misalign_tui.core.metrics.filters import FILTER_HELP, Filters
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.store import run_info
from misalign_tui.core.text import printable
from misalign_tui.core.views.figures import p_short
from misalign_tui.core.views.ladder import Ladder, LadderVariant, judge_auroc_text, read_ladder

# one space between columns: the ladder's tables fit 80 columns without cutting a figure
_TABLE = dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _ci(ci: tuple[float, float] | list[float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _name(text: str) -> str:
    """A stored name or note with its control characters shown (the console reads no markup)."""
    return printable(text)


def _p(p: float | None) -> str:
    return "—" if p is None else p_short(p)


def _size(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def _delta(v: float | None) -> str:
    return "" if v is None else f"{100 * v + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _change(v: LadderVariant) -> str:
    if v.is_reference:
        return "reference"
    if v.run is None:
        return "no run"
    return {"worse": "worse", "better": "better"}.get(v.change or "", "n.s.")


@cli.group("compare")
def compare_group() -> None:
    """Side-by-side comparisons (the Compare screen's faces on the command line)."""


@compare_group.command("ladder")
@click.argument("model")
@click.option("--reference", help="The variant the others are tested against (default: the highest precision with "
              "a run).")
@click.option("--method", type=click.Choice(METHODS), help="Whose runs to line up (default: the method most of the "
              "family has runs of).")
@click.option("--benchmark", "-b", help="Benchmark name (name@version); default: the one most variants ran on.")
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@format_option
@pass_ctx
def compare_ladder(ctx: Context, model: str, reference: str | None, method: str | None, benchmark: str | None,
                   filters: tuple[str, ...], fmt: str) -> None:
    """MODEL's quantization ladder: per variant the headline metric and per-dimension figures with intervals,
    the verdict flip rate and McNemar's exact test against the reference (Holm-adjusted), size, bits per weight
    and measured speed; the first level at which each dimension changes significantly."""
    ladder = read_ladder(ctx.store, model, ctx.workspace.models_dir, reference=reference, method=method,
                         benchmark=benchmark, filters=Filters.parse(filters))
    if fmt == "json":
        emit_json(ladder.as_dict())
        return
    _tables(ctx, ladder)


def _tables(ctx: Context, ladder: Ladder) -> None:
    con = ctx.console
    key = metrics.METRICS[ladder.metric]
    rungs = ladder.rung_labels()
    con.print(styled(f"Quantization ladder of {ladder.root.name}", "bold"),
              f"— {ladder.method} on {_name(ladder.benchmark or 'no benchmark yet')}; reference "
              f"{_name(ladder.reference or 'none (no runs)')}", soft_wrap=True, highlight=False)
    judge = ladder.method == "judge"  # a judge AUROC exists only for judge runs
    ids = Table(**_TABLE)
    id_column(ids, "rung")
    id_column(ids, "model")
    ids.add_column("bits/w", justify="right", no_wrap=True)
    ids.add_column("size", justify="right", no_wrap=True)
    ids.add_column(ladder.speed_unit, justify="right", no_wrap=True)
    ids.add_column("run", justify="right", no_wrap=True)
    if judge:
        ids.add_column("judge AUROC [CI]", justify="right", no_wrap=True)
    for v in ladder.variants:
        m = v.model
        speed = "-" if v.items_per_s is None else f"{v.items_per_s:.2f}" + ("*" if v.speed_source ==
                                                                             "result timestamps" else "")
        ids.add_row(rungs[v.name], _name(m.name) + (" (reference)" if v.is_reference else ""),
                    "-" if m.bits_per_weight is None else f"{m.bits_per_weight:.2f}", _size(m.size), speed,
                    "-" if v.run is None else str(v.run.id) + ("" if v.run.complete else f" {v.run.status}"),
                    *((judge_auroc_text(v),) if judge else ()))
    print_table(con, ids)
    con.print()
    table = Table(**_TABLE,
                  title=f"{key.name} and verdict flips against the reference")
    table.add_column("rung", no_wrap=True)
    table.add_column(f"{key.label} [CI]", justify="right", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("Δ", justify="right", no_wrap=True)
    table.add_column("flips [CI]", justify="right", no_wrap=True)
    table.add_column("p (Holm)", justify="right", no_wrap=True)
    table.add_column("vs ref.", no_wrap=True)
    differ = []
    for v in ladder.variants:
        table.add_row(rungs[v.name], "no run" if v.run is None else f"{_pct(v.value)}{_ci(v.ci)}",
                      f"{v.n:,}" if v.run else "", _delta(v.delta),
                      "" if v.is_reference or v.flip_rate is None else f"{_pct(v.flip_rate)}{_ci(v.flip_rate_ci)}",
                      "" if v.is_reference or v.mcnemar_p is None else f"{_p(v.mcnemar_p)} ({_p(v.mcnemar_p_holm)})",
                      _change(v))
        if v.run is not None and not v.is_reference and v.shared != v.n:
            differ.append(f"{rungs[v.name]} {v.shared:,}")
    print_table(con, table)
    con.print("95 % intervals; Δ (points), flip rate and McNemar's exact p on the items both scored"
              + (f" ({', '.join(differ)})" if differ else "") + f", Holm across the variants (α = {ladder.alpha}); "
              f"n.s.: no significant change; {metrics.chance_note(ladder.method)}", soft_wrap=True, highlight=False,
              style="dim")
    dims = list(dict.fromkeys(d.dimension for v in ladder.variants for d in v.dimensions))
    if dims:
        per = Table(title=f"{key.name} by dimension (Holm across variants × dimensions)", **_TABLE)
        per.add_column("rung", no_wrap=True)
        per.add_column("dimension", no_wrap=True)
        per.add_column(f"{key.label} [CI]", justify="right", no_wrap=True)
        per.add_column("n", justify="right", no_wrap=True)
        per.add_column("Δ", justify="right", no_wrap=True)
        per.add_column("flips", justify="right", no_wrap=True)
        per.add_column("p (Holm)", justify="right", no_wrap=True)
        per.add_column("change", no_wrap=True)
        for v in ladder.variants:
            for d in v.dimensions:
                first = " (first)" if d.dimension in v.first_changes else ""
                per.add_row(rungs[v.name], d.dimension, f"{_pct(d.value)}{_ci(d.ci)}", f"{d.n:,}", _delta(d.delta),
                            "" if v.is_reference else f"{d.flips}/{d.shared}",
                            "" if v.is_reference or d.mcnemar_p is None else f"{_p(d.mcnemar_p)} ({_p(d.mcnemar_p_holm)})",
                            "reference" if v.is_reference else (d.change or "n.s.") + first)
        con.print()
        print_table(con, per)
        con.print()
    for dim, where in ladder.first_significant_change.items():
        con.print(f"first significant change on {dim}: {_name(where or 'none at any level')}", soft_wrap=True,
                  highlight=False)
    if any(v.speed_source == "result timestamps" for v in ladder.variants):
        con.print("* speed from the spread of the run's result timestamps (a run still going, or one made before "
                  "runs measured their own time)",
                  soft_wrap=True, highlight=False)
    if any(v.model.requantized for v in ladder.variants):
        con.print("† requantized from an already quantized file (models quantize --allow-requantize)",
                  soft_wrap=True, highlight=False)
    for note in ladder.notes:
        con.print(f"note: {_name(note)}", soft_wrap=True, highlight=False)
    if judge and all(v.judge_auroc is None for v in ladder.variants):
        con.print("judge AUROC: n/a — these runs' items do not hold both gold labels (aligned and misaligned), so "
                  "there is nothing to rank (docs/measures.md, \"How good the judge is\")", soft_wrap=True,
                  highlight=False, style="dim")


def _pct_ci(v: float | None, ci: tuple[float, float] | None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


@compare_group.command("languages")
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
    _languages_table(ctx, result)


def _languages_table(ctx: Context, result: CrossLingual) -> None:
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
        table.add_row(r.language, str(r.n), _pct_ci(r.english_accuracy, r.english_ci), _pct_ci(r.accuracy, r.ci),
                      str(r.english_only), str(r.language_only), f"{r.p_value:.3g}", f"{r.p_holm:.3g}",
                      verdict_words(r, result.alpha))
    print_table(con, table)
    con.print(styled("The changed items: right in English only, or right in the language only. McNemar's exact "
                     "test on them, Holm-adjusted across the languages.", "dim"))
