"""``benchmark``: list, inspect and check benchmarks."""

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
from misalign_tui.core.store import BenchmarkInfo


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
    table = Table(title="Benchmarks", caption="hash: the first 12 hex digits of the content sha256 "
                  "(benchmark stats NAME shows it whole)")
    id_column(table, "name")
    table.add_column("version", justify="right")
    table.add_column("prompts", justify="right")
    table.add_column("responses", justify="right")
    id_column(table, "hash")
    id_column(table, "created")
    for b in rows:
        table.add_row(b.name, str(b.version), f"{b.prompts:,}", f"{b.responses:,}", (b.content_hash or "-")[:12],
                      b.created_at[:19].replace("T", " "))
    print_table(ctx.console, table)


@benchmark.command("stats")
@click.argument("name")
@format_option
@pass_ctx
def benchmark_stats(ctx: Context, name: str, fmt: str) -> None:
    """Counts per dimension, domain and semantic type (the paper's table columns where they apply)."""
    from misalign_tui.core.benchmark_checks import benchmark_statistics
    from misalign_tui.core.build.statistics import with_build_statistics

    b = _named_benchmark(ctx, name)
    stats = with_build_statistics(ctx.store, b.id, benchmark_statistics(ctx.store, b.id))
    if fmt == "json":
        emit_json({"name": b.name, "version": b.version, "hash": b.content_hash, **stats})
        return
    con = ctx.console
    con.print(styled(b.name, "bold"), f"v{b.version}  hash {b.content_hash}")
    con.print(f"{stats['prompts']} prompts, {stats['pairs']} pairs, {stats['responses']} responses; "
              f"{stats['multi_dimension_prompts']} prompts carry two or more dimensions; "
              f"{stats['domains_covered']}/{stats['domains_total']} domains covered; "
              f"{stats['missing_pairs']} missing pairs")
    summary = Table(title="Per dimension and semantic type")
    id_column(summary, "group")
    summary.add_column("prompts", justify="right")
    for dim, n in stats["per_dimension"].items():  # type: ignore[union-attr]
        summary.add_row(f"dimension {dim}", str(n))
    for t, n in stats["semantic_types"].items():  # type: ignore[union-attr]
        summary.add_row(f"type {t}", str(n))
    print_table(con, summary)
    languages = stats.get("languages") or []
    if len(languages) > 1:  # type: ignore[arg-type]
        lang_table = Table(title="Per language (parallel items link to an English prompt)")
        id_column(lang_table, "language")
        for col in ("prompts", "pairs", "parallel items"):
            lang_table.add_column(col, justify="right")
        for row in languages:  # type: ignore[union-attr]
            lang_table.add_row(row["language"], str(row["prompts"]), str(row["pairs"]), str(row["parallel_items"]))
        print_table(con, lang_table)
    table = Table(title="Per domain (a prompt counts under each of its domains)")
    for col in ("dimension", "domain", "prompts", "pairs", "final responses"):
        if col[0] in "pf":
            table.add_column(col, justify="right")
        else:
            id_column(table, col)
    for d in stats["per_domain"]:  # type: ignore[union-attr]
        table.add_row(d["dimension"], d["domain"], str(d["prompts"]), str(d["pairs"]), str(d["final_responses"]))
    print_table(con, table)
    if stats.get("built"):
        _print_build_table(ctx, stats)
        from misalign_tui.core.build.checker import measurement_line

        con.print(measurement_line(stats.get("checker")), markup=False, highlight=False)
        _print_build_reviews(ctx, b.id)


def _print_build_reviews(ctx: Context, benchmark_id: int) -> None:
    """Agreement of the build's reviewers with each other, with the generator's targets and the model checker."""
    from misalign_tui.core.build.statistics import build_id_for
    from misalign_tui.core.review.figures import build_figures, figures_lines
    from misalign_tui.core.text import printable

    build_id = build_id_for(ctx.store, benchmark_id)
    figures = build_figures(ctx.store, build_id) if build_id is not None else []
    if not figures:
        ctx.console.print("Reviews: none (a recipe with checker = \"human\" or review = \"sample:N\" makes a review "
                          "queue; misalign-tui review export --queue build --build ID samples one afterwards)",
                          highlight=False, markup=False)
    for f in figures:
        ctx.console.print(f"Reviews — {printable(f.scope)}", style="bold", highlight=False, markup=False)
        for line in figures_lines(f):
            ctx.console.print("  " + printable(line), highlight=False, markup=False, soft_wrap=True)


_PAPER_COLUMNS = (("classified", "Cls"), ("expanded", "Exp."), ("dedup_removed", "Dedup."), ("generated", "Gen."),
                  ("cf_aligned", "CF al."), ("cf_misaligned", "CF mis."), ("final_responses", "FGR"))


def _print_build_table(ctx: Context, stats: dict) -> None:
    """The paper's per-domain build table, each cell "ours (MISALIGNTRADE's)", then the rejections."""
    table = Table(title="Build, the paper's columns: this build (published MISALIGNTRADE)",
                  caption="A prompt counts once, under the domain it was classified or expanded for. "
                          "CF: response candidates filtered (rejected at any stage). FGR: final responses.")
    id_column(table, "dimension")
    id_column(table, "domain")
    for _, head in _PAPER_COLUMNS:
        table.add_column(head, justify="right")
    for d in stats["per_domain"]:
        pub = d.get("published") or {}
        table.add_row(d["dimension"], d["domain"], *(
            f"{d[col]} ({pub[col]})" if col in pub else str(d[col]) for col, _ in _PAPER_COLUMNS))
    totals = stats["build"]
    table.add_row("all", "", *(str(totals[col]) for col, _ in _PAPER_COLUMNS), end_section=True)
    print_table(ctx.console, table)
    rejections = Table(title="Rejected candidates (each one, with its text: SQL view build_rejections)")
    for col in ("kind", "label", "stage", "reason", "count"):
        if col == "count":
            rejections.add_column(col, justify="right")
        elif col == "reason":
            rejections.add_column(col)
        else:
            id_column(rejections, col)
    for r in stats["rejections"]:
        rejections.add_row(r["kind"], r["label"] or "-", r["stage"], r["reason"], str(r["count"]))
    if not stats["rejections"]:
        rejections.add_row("-", "-", "-", "nothing was rejected", "0")
    print_table(ctx.console, rejections)


@benchmark.command("check")
@click.argument("name")
@format_option
@pass_ctx
def benchmark_check(ctx: Context, name: str, fmt: str) -> None:
    """Exit 1 with the list of problems: thin domains, missing pairs, unknown domains, near-duplicates,
    pairs whose lengths differ by more than 2x (words; characters for unspaced scripts), parallel items whose
    source, structure or language does not hold."""
    from misalign_tui.core.benchmark_checks import check_benchmark, language_counts

    b = _named_benchmark(ctx, name)
    problems = check_benchmark(ctx.store, b.id)
    languages = language_counts(ctx.store, b.id)
    parallel = sum(int(str(r["parallel_items"])) for r in languages)
    if fmt == "json":
        emit_json({"name": b.name, "version": b.version, "ok": not problems,
                   "problems": [{"kind": p.kind, "detail": p.detail} for p in problems], "languages": languages})
    elif problems:
        for p in problems:
            ctx.console.print(str(p), soft_wrap=True, markup=False)
        ctx.err.print(f"{b.name}: {len(problems)} problem(s)")
    else:
        extra = (f" ({parallel} parallel items in {len(languages) - 1} languages besides English: "
                 + ", ".join(str(r["language"]) for r in languages[1:]) + ")") if parallel else ""
        ctx.console.print(f"{b.name} v{b.version}: no problems{extra}", soft_wrap=True, markup=False)
    if problems:
        raise SystemExit(1)


def _named_benchmark(ctx: Context, name: str) -> BenchmarkInfo:
    """The benchmark ``name`` names; an embedded one (misalign-seed, misalign-seed-languages) is loaded first."""
    from misalign_tui.core.io.native import load_embedded

    load_embedded(ctx.store, name.partition("@")[0])
    return ctx.store.benchmark(name)
