"""``bench``: measurements that back the figures in the README."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx


@cli.group()
def bench() -> None:
    """Speed, memory and judge-quality measurements that print figures (engine, dedup, ui, review, remote,
    explain, judge-protocols)."""


@bench.command("dedup")
@click.option("--n", "n", type=click.IntRange(1), default=50_000, show_default=True,
              help="Prompts in the synthetic corpus.")
@click.option("--tau", type=click.IntRange(0, 64), default=10, show_default=True, help="Hamming threshold.")
@click.option("--bits", type=click.Choice(["8", "16", "32", "64"]), default="64", show_default=True,
              help="Fingerprint width.")
@click.option("--seed", type=int, default=20260211, show_default=True, help="Fixes the corpus.")
@click.option("--package-n", type=click.IntRange(0), default=5_000, show_default=True,
              help="Prompts given to the simhash package's SimhashIndex (0 skips it; it slows badly at large tau).")
@click.option("--exhaustive/--no-exhaustive", default=True, show_default=True,
              help="Also run the exhaustive comparison and check the results are equal.")
@format_option
@pass_ctx
def bench_dedup(ctx: Context, n: int, tau: int, bits: str, seed: int, package_n: int, exhaustive: bool,
                fmt: str) -> None:
    """Time SimHash fingerprinting + near-duplicate removal on a synthetic corpus with 5 % planted
    near-duplicates, against exhaustive comparison and the simhash package's own index."""
    from misalign_tui.devtools.dedup_benchmark import run_dedup_benchmark

    result = run_dedup_benchmark(n, tau, int(bits), seed, package_n, exhaustive,
                                 report=lambda msg: ctx.err.print(msg, highlight=False))
    if fmt == "json":
        emit_json(result)
        return
    table = Table(title=f"Dedup of {n} prompts, tau={tau}, {bits}-bit SimHash ({result['corpus']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    ctx.console.print(table)


# The subcommands in this package register themselves on ``bench``.
from misalign_tui.cli.bench import engine, explain, judge_protocols, remote, review, ui  # noqa: E402,F401
