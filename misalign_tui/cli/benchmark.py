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


@benchmark.command("stats")
@click.argument("name")
@format_option
@pass_ctx
def benchmark_stats(ctx: Context, name: str, fmt: str) -> None:
    """Counts per dimension, domain and semantic type (the paper's table columns where they apply)."""
    from misalign_tui.core.benchmark_checks import benchmark_statistics
    from misalign_tui.core.build.statistics import with_build_statistics

    b = ctx.store.benchmark(name)
    stats = with_build_statistics(ctx.store, b.id, benchmark_statistics(ctx.store, b.id))
    if fmt == "json":
        emit_json({"name": b.name, "version": b.version, "hash": b.content_hash, **stats})
        return
    con = ctx.console
    con.print(f"[bold]{b.name}[/] v{b.version}  hash {b.content_hash}")
    con.print(f"{stats['prompts']} prompts, {stats['pairs']} pairs, {stats['responses']} responses; "
              f"{stats['multi_dimension_prompts']} prompts carry two or more dimensions; "
              f"{stats['domains_covered']}/{stats['domains_total']} domains covered; "
              f"{stats['missing_pairs']} missing pairs")
    summary = Table(title="Per dimension and semantic type")
    summary.add_column("group")
    summary.add_column("prompts", justify="right")
    for dim, n in stats["per_dimension"].items():  # type: ignore[union-attr]
        summary.add_row(f"dimension {dim}", str(n))
    for t, n in stats["semantic_types"].items():  # type: ignore[union-attr]
        summary.add_row(f"type {t}", str(n))
    con.print(summary)
    table = Table(title="Per domain (a prompt counts under each of its domains)")
    for col in ("dimension", "domain", "prompts", "pairs", "final responses"):
        table.add_column(col, justify="right" if col[0] in "pf" else "left")
    for d in stats["per_domain"]:  # type: ignore[union-attr]
        table.add_row(d["dimension"], d["domain"], str(d["prompts"]), str(d["pairs"]), str(d["final_responses"]))
    con.print(table)
    if stats.get("built"):
        _print_build_table(ctx, stats)
        from misalign_tui.core.build.checker import measurement_line

        con.print(measurement_line(stats.get("checker")), markup=False, highlight=False)


_PAPER_COLUMNS = (("classified", "Cls"), ("expanded", "Exp."), ("dedup_removed", "Dedup."), ("generated", "Gen."),
                  ("cf_aligned", "CF al."), ("cf_misaligned", "CF mis."), ("final_responses", "FGR"))


def _print_build_table(ctx: Context, stats: dict) -> None:
    """The paper's per-domain build table, each cell "ours (MISALIGNTRADE's)", then the rejections."""
    table = Table(title="Build, the paper's columns: this build (published MISALIGNTRADE)",
                  caption="A prompt counts once, under the domain it was classified or expanded for. "
                          "CF: response candidates filtered (rejected at any stage). FGR: final responses.")
    table.add_column("dimension")
    table.add_column("domain")
    for _, head in _PAPER_COLUMNS:
        table.add_column(head, justify="right")
    for d in stats["per_domain"]:
        pub = d.get("published") or {}
        table.add_row(d["dimension"], d["domain"], *(
            f"{d[col]} ({pub[col]})" if col in pub else str(d[col]) for col, _ in _PAPER_COLUMNS))
    totals = stats["build"]
    table.add_row("all", "", *(str(totals[col]) for col, _ in _PAPER_COLUMNS), end_section=True)
    ctx.console.print(table)
    rejections = Table(title="Rejected candidates (each one, with its text: SQL view build_rejections)")
    for col in ("kind", "label", "stage", "reason", "count"):
        rejections.add_column(col, justify="right" if col == "count" else "left")
    for r in stats["rejections"]:
        rejections.add_row(r["kind"], r["label"] or "-", r["stage"], r["reason"], str(r["count"]))
    if not stats["rejections"]:
        rejections.add_row("-", "-", "-", "nothing was rejected", "0")
    ctx.console.print(rejections)


@benchmark.command("check")
@click.argument("name")
@format_option
@pass_ctx
def benchmark_check(ctx: Context, name: str, fmt: str) -> None:
    """Exit 1 with the list of problems: thin domains, missing pairs, unknown domains, near-duplicates,
    pairs whose lengths differ by more than 2x."""
    from misalign_tui.core.benchmark_checks import check_benchmark

    b = ctx.store.benchmark(name)
    problems = check_benchmark(ctx.store, b.id)
    if fmt == "json":
        emit_json({"name": b.name, "version": b.version, "ok": not problems,
                   "problems": [{"kind": p.kind, "detail": p.detail} for p in problems]})
    elif problems:
        for p in problems:
            ctx.console.print(str(p), soft_wrap=True, markup=False)
        ctx.err.print(f"{b.name}: {len(problems)} problem(s)")
    else:
        ctx.console.print(f"{b.name} v{b.version}: no problems")
    if problems:
        raise SystemExit(1)
