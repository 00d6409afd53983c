"""``init`` and ``taxonomy``: create the workspace and show the normative domains."""

from __future__ import annotations

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx
from misalign_tui.core.models.registry import discover, ensure_default_model
from misalign_tui.core.taxonomy import DIMENSIONS, PAPER_DOMAIN_COUNT_TEXT, SEMANTIC_TYPES, read_user_domains


@cli.command()
@click.option("--no-model", is_flag=True, help="Skip assembling the default model (253 MB).")
@pass_ctx
def init(ctx: Context, no_model: bool) -> None:
    """Create the workspace: database, taxonomy, seed benchmark and the default model."""
    from misalign_tui.core.io.native import load_seed_benchmark

    store = ctx.store
    ctx.err.print(f"workspace: {ctx.workspace.home}")
    bid = load_seed_benchmark(store)
    if bid is not None:
        b = store.benchmark_by_id(bid)
        ctx.err.print(f"benchmark {b.name} v{b.version}: {b.prompts} prompts, {b.responses} responses")
    if not no_model:
        with ctx.err.status("assembling the default model (253 MB)…"):
            m = ensure_default_model(store, ctx.workspace.models_dir)
        ctx.err.print(f"default model: {m.name} ({m.sha256[:12] if m.sha256 else '?'}) at {m.path}")
    discover(store, ctx.workspace.models_dir)
    ctx.err.print("ready: misalign-tui run --model default, or misalign-tui to open the app")


@cli.group(invoke_without_command=True)
@format_option
@click.pass_context
def taxonomy(click_ctx: click.Context, fmt: str) -> None:
    """Dimensions, semantic types and domains (counts per dimension)."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    tax = ctx.store.taxonomy()
    counts = tax.counts()
    if fmt == "json":
        emit_json({
            "dimensions": counts,
            "total": sum(counts.values()),
            "paper_text_total": PAPER_DOMAIN_COUNT_TEXT,
            "semantic_types": list(SEMANTIC_TYPES),
            "domains": [{"dimension": d.dimension, "name": d.name, "source": d.source, "origin": d.origin}
                        for d in tax.domains],
        })
        return
    table = Table(title="Normative domains")
    table.add_column("dimension")
    table.add_column("domains", justify="right")
    table.add_column("source taxonomy")
    sources: dict[str, set[str]] = {}
    for d in tax.domains:
        sources.setdefault(d.dimension, set()).add(d.source)
    for dim in DIMENSIONS:
        table.add_row(dim, str(counts[dim]), ", ".join(sorted(sources.get(dim, set()))))
    table.add_row("total", str(sum(counts.values())), "")
    ctx.console.print(table)
    user = sum(1 for d in tax.domains if d.origin == "user")
    ctx.console.print(
        f"The paper's text says {PAPER_DOMAIN_COUNT_TEXT} domains (42 cultural); its published table lists 111 "
        f"(41 cultural), which is what ships here."
        + (f" {user} domain(s) were added by you." if user else "")
    )
    ctx.console.print(f"Semantic types: {', '.join(SEMANTIC_TYPES)}")


@taxonomy.command("add")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_ctx
def taxonomy_add(ctx: Context, file: str) -> None:
    """Add domains from a CSV with columns dimension,domain[,source]."""
    domains = read_user_domains(file)
    known = {d.name: d for d in ctx.store.taxonomy().domains}
    for d in domains:
        if d.name in known and known[d.name].dimension != d.dimension:
            raise click.UsageError(f"{file}: domain {d.name!r} already exists under {known[d.name].dimension}")
    from misalign_tui.core.taxonomy import Taxonomy

    added = ctx.store.sync_taxonomy(Taxonomy(tuple(domains)))
    ctx.err.print(f"{added} domain(s) added from {file}")
