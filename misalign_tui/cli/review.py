"""``review``: the Review screen's headless twin — export a queue as a decision file, import the decisions,
agreement statistics, and a benchmark version with the reviewed labels."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx, styled
from misalign_tui.core.errors import UserError
from misalign_tui.core.text import printable


@cli.group()
def review() -> None:
    """Review queues: build candidates, gold labels and judge verdicts decided by people."""


@review.command("list")
@format_option
@pass_ctx
def review_list(ctx: Context, fmt: str) -> None:
    """Every review queue with its size and how far each reviewer got."""
    from misalign_tui.core.review.decisions import current_decisions
    from misalign_tui.core.review.queues import list_queues

    store = ctx.store
    rows = []
    for q in list_queues(store):
        done: dict[str, set[int]] = {}
        for d in current_decisions(store, q.id):
            done.setdefault(d.reviewer, set()).add(d.item_id)
        rows.append({"id": q.id, "name": q.name, "kind": q.kind, "purpose": q.purpose, "items": q.items,
                     "reviewers": {r: len(items) for r, items in sorted(done.items())}, "created_at": q.created_at})
    if fmt == "json":
        emit_json(rows)
        return
    if not rows:
        ctx.console.print("no review queues yet: misalign-tui review export --queue gold --benchmark NAME "
                          "--sample 20 -o decisions.csv makes one (or the app's Review screen, key V)")
        return
    table = Table(title="Review queues")
    for col in ("id", "name", "items", "reviewers (items decided)"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], str(r["items"]),
                      ", ".join(f"{k} {v}" for k, v in r["reviewers"].items()) or "-")
    ctx.console.print(table)


@review.command("export")
@click.option("--queue", "kind", type=click.Choice(["gold", "build", "run"]), required=True,
              help="gold: a benchmark's labels; build: a build's stage-2 candidates; run: a judge run's verdicts.")
@click.option("--benchmark", help="gold: the benchmark (NAME or NAME@VERSION).")
@click.option("--build", "build_id", type=int, help="build: the build id (its human-checker queue, or with --sample "
                                                    "a sample of its model checker's decisions).")
@click.option("--run", "run_id", type=int, help="run: the judge run id.")
@click.option("--sample", type=int, help="Items to draw (seeded); leave out for every item.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample and of the A/B order.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Decision file to write: .csv or .jsonl.")
@pass_ctx
def review_export(ctx: Context, kind: str, benchmark: str | None, build_id: int | None, run_id: int | None,
                  sample: int | None, seed: int, output: Path) -> None:
    """Write a review queue as a decision file: one item a row, its id, what to read, and empty decision
    columns (decision_a, decision_b, note). The same options give the same queue and ids again."""
    from misalign_tui.core.review import queues
    from misalign_tui.core.review.exchange import export_queue, file_format

    file_format(output)
    given = {"gold": benchmark, "build": build_id, "run": run_id}
    names = {"gold": "--benchmark NAME", "build": "--build ID", "run": "--run ID"}
    if given[kind] is None:
        raise UserError(f"review export --queue {kind}: give {names[kind]}")
    extra = [names[k].split()[0] for k, v in given.items() if v is not None and k != kind]
    if extra:
        raise UserError(f"review export --queue {kind}: {', '.join(extra)} belongs to another queue kind")
    store = ctx.store
    if kind == "gold":
        queue = queues.gold_queue(store, str(benchmark), sample, seed)
    elif kind == "run":
        queue = queues.run_queue(store, int(run_id or 0), sample, seed)
    elif sample is not None:
        queue = queues.build_sample_queue(store, int(build_id or 0), sample, seed)
    else:
        row = store.conn.execute("SELECT id FROM review_queues WHERE build_id = ? AND purpose = 'checker'",
                                 (build_id,)).fetchone()
        if row is None:
            raise UserError(f"build {build_id} has no human-checker queue (its recipe does not set checker = "
                            "\"human\", or it has not reached stage 2); --sample N samples its model checker's "
                            "decisions")
        queue = queues.queue_info(store, int(row[0]))
    n = export_queue(store, queue, output)
    ctx.err.print(f"wrote {n} item(s) of review queue {printable(queue.name)!r} (id {queue.id}) to {output}; fill decision_a "
                  "(and decision_b for a pair) with aligned, misaligned, skip or flag (a flag needs a note), then: "
                  f"misalign-tui review import {output} --reviewer NAME", highlight=False, markup=False)


@review.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reviewer", required=True, help="Whose decisions these are (stored with every decision).")
@format_option
@pass_ctx
def review_import(ctx: Context, file: Path, reviewer: str, fmt: str) -> None:
    """Store the decisions of a filled decision file — all of them, or none when a line has a problem."""
    from misalign_tui.core.review.exchange import import_decisions
    from misalign_tui.core.review.queues import queue_info

    result = import_decisions(ctx.store, file, reviewer)
    waiting = []
    for qid in result.queues:
        q = queue_info(ctx.store, qid)
        if q.purpose == "checker":
            waiting.append(q.build_id)
    if fmt == "json":
        emit_json({"file": str(file), "reviewer": reviewer, "decisions": result.decisions, "items": result.items,
                   "undecided_rows": result.undecided_rows, "queues": list(result.queues),
                   "builds_to_resume": waiting})
        return
    ctx.console.print(f"imported {result.decisions} decision(s) on {result.items} item(s) by {reviewer}"
                      + (f"; {result.undecided_rows} row(s) left undecided" if result.undecided_rows else ""),
                      highlight=False, markup=False)
    for build_id in waiting:
        ctx.console.print(f"build {build_id} takes its human-checker decisions when it runs again (misalign-tui "
                          "build RECIPE resumes it)", highlight=False, markup=False)


@review.command("stats")
@click.option("--queue", "queue_spec", help="One queue (id or name); default: every queue.")
@click.option("--benchmark", help="Gold-label reviews of a benchmark across every queue that showed its responses.")
@click.option("--bootstrap", type=click.IntRange(0), default=2000, show_default=True,
              help="Resamples over prompts for the κ/α intervals (0: none).")
@format_option
@pass_ctx
def review_stats(ctx: Context, queue_spec: str | None, benchmark: str | None, bootstrap: int, fmt: str) -> None:
    """Agreement: between reviewers (Cohen's κ for two, Krippendorff's α for more), with the labels (dispute
    rate) and with the model (accuracy against the reviewers' majority, κ); 95 % intervals and n."""
    from misalign_tui.core.review.figures import benchmark_figures, figures_lines, queue_figures
    from misalign_tui.core.review.queues import find_queue, list_queues

    store = ctx.store
    if benchmark:
        b = store.benchmark(benchmark)
        found = benchmark_figures(store, b.id, bootstrap=bootstrap)
        figures = [found] if found else []
        if not figures:
            raise UserError(f"benchmark {b.name}@{b.version}: none of its responses has a review decision yet")
    elif queue_spec:
        figures = [queue_figures(store, find_queue(store, queue_spec).id, bootstrap=bootstrap)]
    else:
        figures = [queue_figures(store, q.id, bootstrap=bootstrap) for q in list_queues(store)]
    if fmt == "json":
        emit_json([f.as_json() for f in figures])
        return
    if not figures:
        ctx.console.print("no review queues yet (misalign-tui review export makes one)")
        return
    for f in figures:
        ctx.console.print(styled(f.scope, "bold"))
        for line in figures_lines(f):
            ctx.console.print("  " + printable(line), highlight=False, markup=False, soft_wrap=True)
        for d in f.listed[:20]:
            votes = ", ".join(f"{k} {v}" for k, v in d.votes.items()) or "no rating"
            notes = "; ".join(f"{r} ({k}): {n}" for r, k, n in d.notes)
            ctx.console.print(printable(f"  - {d.kind}: {d.prompt_key} ({d.dimension or 'untargeted'}) "
                                        f"{f.label_meaning} {d.label or '-'}, reviewers {votes}"
                                        + (f" — {notes}" if notes else "")),
                              highlight=False, markup=False, soft_wrap=True)
        if len(f.listed) > 20:
            ctx.console.print(f"  … and {len(f.listed) - 20} more (--format json lists them all)", highlight=False)


@review.command("publish")
@click.argument("benchmark")
@format_option
@pass_ctx
def review_publish(ctx: Context, benchmark: str, fmt: str) -> None:
    """Write BENCHMARK's next version with the reviewed labels overriding the disputed gold labels (the old
    version and the runs on it are untouched)."""
    from misalign_tui.core.review.overrides import publish_reviewed

    result = publish_reviewed(ctx.store, benchmark)
    new, old = result.benchmark, result.previous
    if fmt == "json":
        emit_json({"name": new.name, "version": new.version, "previous_version": old.version, "hash": new.content_hash,
                   "overrides": [{"prompt_key": o.prompt_key, "dimension": o.dimension, "from": o.old_label,
                                  "to": o.new_label, "votes": o.votes} for o in result.overrides],
                   "pairs_swapped": result.pairs_swapped, "pairs_dissolved": result.pairs_dissolved})
        return
    ctx.console.print(f"wrote {new.name}@{new.version} from {old.name}@{old.version}: {len(result.overrides)} "
                      f"label(s) overridden, {result.pairs_swapped} pair(s) swapped, {result.pairs_dissolved} "
                      f"pair(s) no longer pairs; {old.name}@{old.version} and its runs are unchanged",
                      highlight=False, markup=False)
    for o in result.overrides:
        ctx.console.print(printable(f"  {o.prompt_key} ({o.dimension or 'untargeted'}): {o.old_label} → "
                                    f"{o.new_label} ({', '.join(f'{k} {v}' for k, v in o.votes.items())})"),
                          highlight=False, markup=False)
