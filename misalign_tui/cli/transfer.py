"""``import`` and ``export``: bring other datasets in, hand benchmarks and results over."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import (
    Context,
    data_stream,
    emit_json,
    format_option,
    id_column,
    pass_ctx,
    styled,
)
from misalign_tui.core.errors import UserError
from misalign_tui.core.io.presets import PRESETS


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--prompt", "prompt_col", metavar="COL", help="Column holding the prompt.")
@click.option("--aligned", "aligned_col", metavar="COL", help="Column holding the aligned response of a pair.")
@click.option("--misaligned", "misaligned_col", metavar="COL", help="Column holding the misaligned response.")
@click.option("--response", "response_col", metavar="COL", help="Column holding a single labelled response.")
@click.option("--label", "label_col", metavar="COL", help="Column holding its label (aligned/misaligned).")
@click.option("--dimension", "dimension_col", metavar="COL", help="Column holding the targeted dimension.")
@click.option("--domain", "domain_cols", metavar="COL", multiple=True,
              help="Column of domain names (repeatable; a cell may hold several; empty or None = no domain).")
@click.option("--semantic-type", "stype_col", metavar="COL", help="Column holding object/attribute/relation.")
@click.option("--id", "id_col", metavar="COL", help="Column holding a stable prompt id (default: file-line).")
@click.option("--language", "language_col", metavar="COL",
              help="Column holding each row's language, a BCP 47 tag (en, es, zh-Hans); default English, or "
                   "--set language=TAG for every row.")
@click.option("--set", "settings", metavar="FIELD=VALUE", multiple=True,
              help="A constant for every row: dimension, semantic_type, domain, label or language (BCP 47).")
@click.option("--aliases", type=click.Path(dir_okay=False, exists=True),
              help="CSV alias,domain mapping foreign names to ours.")
@click.option("--into", help="Target benchmark name (default: from the first file's name).")
@click.option("--preset", type=click.Choice(list(PRESETS)), help="Force a preset instead of detecting it.")
@click.option("--licence", "--license", "licence", help="The data's licence, stored with the benchmark.")
@click.option("--skip-bad", is_flag=True, help="Import the good rows; write bad ones to the reject file.")
@click.option("--reject-file", type=click.Path(dir_okay=False),
              help="Where bad and excluded rows go (JSON lines; default with --skip-bad: NAME.rejects.jsonl).")
@click.option("--strict-labels", is_flag=True, help="Treat a domain label that matches nothing as a bad row.")
@click.option("--no-dedup", is_flag=True,
              help="Keep near-duplicate prompts (SimHash Hamming <= 10); identical prompts still merge.")
@click.option("--no-header", is_flag=True,
              help="CSV/TSV without a header row: the first line is data and columns are named by position "
                   "(1, 2, …), e.g. --aligned 1 --misaligned 2.")
@click.option("--no-prompt", "prompt_less", is_flag=True,
              help="Rows are response pairs (or labelled responses) without a prompt: each row is its own item; "
                   "near-duplicates are found by comparing the responses.")
@click.option("--context", metavar="TEXT",
              help="With --no-prompt: a constant text stored as every item's prompt (rows still never merge).")
@format_option
@pass_ctx
def import_command(ctx: Context, files: tuple[str, ...], prompt_col: str | None, aligned_col: str | None,
                   misaligned_col: str | None, response_col: str | None, label_col: str | None,
                   dimension_col: str | None, domain_cols: tuple[str, ...], stype_col: str | None,
                   id_col: str | None, language_col: str | None, settings: tuple[str, ...], aliases: str | None, into: str | None,
                   preset: str | None, licence: str | None, skip_bad: bool, reject_file: str | None,
                   strict_labels: bool, no_dedup: bool, no_header: bool, prompt_less: bool, context: str | None,
                   fmt: str) -> None:
    """Import CSV, TSV, JSONL or JSON files (plain or gzip; UTF-8, or UTF-16/32 with a byte-order mark) into a
    new benchmark version.

    Presets (detected from the columns): native, native-csv, misaligntrade, hh-rlhf, xstest-completions,
    xstest-prompts. Files without responses import as seed prompts.

    \b
    Sentence pairs without a prompt column (each row its own item):
      misalign-tui import pairs.csv --no-prompt --aligned anti_stereotype \\
          --misaligned stereotype --set dimension=cultural
    A CSV without a header row (columns named by position):
      misalign-tui import rows.csv --no-header --prompt 1 --aligned 2 \\
          --misaligned 3 --set dimension=safety

    A row identical to an earlier row (same prompt, labels, pairs and responses) is skipped and counted as an
    exact duplicate whatever its id; the summary warns about them.
    """
    from misalign_tui.core.io.importer import ImportOptions, import_files, parse_settings

    if context is not None and not prompt_less:
        raise UserError("--context goes with --no-prompt (a constant context for rows without a prompt)")
    options = ImportOptions(
        into=into, preset=preset,
        columns={"prompt": prompt_col, "aligned": aligned_col, "misaligned": misaligned_col,
                 "response": response_col, "label": label_col, "dimension": dimension_col,
                 "domains": list(domain_cols), "semantic_type": stype_col, "id": id_col, "language": language_col},
        constants=parse_settings(settings), aliases=Path(aliases) if aliases else None, licence=licence,
        skip_bad=skip_bad, reject_file=Path(reject_file) if reject_file else None, strict_labels=strict_labels,
        dedup=not no_dedup, header=not no_header, prompt_less=prompt_less, context=context)
    store = ctx.store
    with ctx.err.status("importing…") as status:
        summary = import_files(store, list(files), options,
                               progress=lambda n: status.update(f"importing… {n:,} rows read"))
    if fmt == "json":
        emit_json(summary.as_json())
        return
    s = summary
    if s.changed:
        ctx.console.print(f"benchmark {s.benchmark} v{s.version} ({s.content_hash[:12]})"
                          + (f", based on v{s.previous_version}" if s.previous_version else ""))
    else:
        ctx.console.print(f"benchmark {s.benchmark} v{s.version} unchanged: nothing new in the file(s)")
    ctx.console.print(_summary_table(s))
    if s.exact_duplicates:
        lines = ", ".join(str(e["line"]) for e in s.examples.get("exact_duplicates", [])[:5])
        ctx.err.print(f"warning: {s.exact_duplicates:,} row(s) repeat an earlier row exactly (same prompt, labels "
                      f"and responses, whatever their ids) and were skipped — first at line(s) {lines}",
                      style="yellow")
    if s.unmatched_labels:
        ctx.console.print(styled(f"{len(s.unmatched_labels)} label(s) matched no domain", "yellow"),
                          f"({s.rows_with_unmatched_labels} rows imported without them; map them with --aliases):")
        for label, n in s.unmatched_labels.items():
            ctx.console.print(f"  {label!r}: {n} row(s)")
    if s.reject_file:
        ctx.console.print(f"rejected rows written to {s.reject_file}")


def _summary_table(s: object) -> Table:
    """Where every row read went (the row counts add up to rows read), then what was stored."""
    from misalign_tui.core.io.importer import ImportSummary

    assert isinstance(s, ImportSummary)
    excluded = sum(s.excluded_rows.values())
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    id_column(table, "what")
    table.add_column("count", justify="right")
    table.add_column("note")
    table.add_row("rows read", f"{s.rows_read:,}", "= the five lines below")
    table.add_row("  new prompts", f"{s.prompts_imported:,}", "rows stored as a prompt (an item) of their own")
    table.add_row("  merged", f"{s.merged_rows:,}", "rows that added pairs, responses or labels to a prompt")
    table.add_row("  duplicates skipped", f"{s.duplicates_skipped:,}",
                  f"{s.exact_duplicates:,} exact copies of an earlier row, {s.near_duplicates:,} near-duplicates, "
                  f"{s.already_present:,} already in the benchmark")
    table.add_row("  bad rows", f"{s.bad_rows:,}", "set aside (--skip-bad)" if s.bad_rows else "")
    table.add_row("  excluded", f"{excluded:,}", ", ".join(f"{r} {n:,}" for r, n in s.excluded_rows.items()))
    table.add_row("pairs stored", f"{s.pairs_imported:,}", "aligned + misaligned response each")
    table.add_row("responses stored", f"{s.responses_imported:,}",
                  f"{s.responses_imported - s.single_responses_imported:,} in pairs, "
                  f"{s.single_responses_imported:,} single labelled responses")
    table.add_row("prompts without responses", f"{s.prompts_without_responses:,}",
                  "seed prompts for the build pipeline" if s.prompts_without_responses else "")
    return table


@cli.group()
def export() -> None:
    """Write benchmarks and results to files."""


@contextmanager
def _output(ctx: Context, path: str | None) -> Iterator[TextIO]:
    """stdout (control characters shown on a terminal), or the file, written whole (core/io/atomic_file.py); a
    damaged database is said in one line."""
    from misalign_tui.core.io.atomic_file import atomic_text_file
    from misalign_tui.core.store import database_error

    try:
        if path is None or path == "-":
            yield data_stream(sys.stdout)
            return
        with atomic_text_file(path) as fh:
            yield fh
    except sqlite3.DatabaseError as exc:
        raise database_error(ctx.store.path, exc) from exc


@export.command("benchmark")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@pass_ctx
def export_benchmark_command(ctx: Context, name: str, fmt: str, output: str | None) -> None:
    """Write benchmark NAME (or NAME@VERSION) in this project's format; import reads it back unchanged."""
    from misalign_tui.core.io.export import export_benchmark

    with _output(ctx, output) as out:
        n = export_benchmark(ctx.store, name, fmt, out)
    ctx.err.print(f"{n} prompts written" + (f" to {output}" if output else ""))


@export.command("results")
@click.option("--run", "run_ids", type=int, multiple=True, help="Run id (repeatable; default: every run).")
@click.option("--model", help="Only runs of this model (name or sha256).")
@click.option("--benchmark", help="Only runs on this benchmark (NAME or NAME@VERSION).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@pass_ctx
def export_results_command(ctx: Context, run_ids: tuple[int, ...], model: str | None, benchmark: str | None,
                           fmt: str, output: str | None) -> None:
    """One row per item and run, with every field of provenance.

    CSV and JSON lines are machine formats: written to a file or a pipe they keep the exact stored text (control
    characters and escape sequences in prompts, responses or names included), so a program reads back what was
    stored; written to a terminal, control characters are shown (␛), never obeyed. For reading, use report
    --format md|html (neutralised and escaped)."""
    from misalign_tui.core.io.export import export_results

    with _output(ctx, output) as out:
        n = export_results(ctx.store, fmt, out, list(run_ids), model, benchmark)
    ctx.err.print(f"{n} result rows written" + (f" to {output}" if output else ""))
