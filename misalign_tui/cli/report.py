"""``report``: a run's profile (the measures of docs/measures.md) as rich tables, JSON or CSV, with paired comparisons; or a
self-contained audit report (Markdown or HTML, core/report/) for an auditor to attach."""

from __future__ import annotations

import csv
import itertools
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, data_stream, emit_json, id_column, pass_ctx, print_table, styled
from misalign_tui.core import metrics
from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.filters import FILTER_HELP, Filters
from misalign_tui.core.metrics.judge_quality import NOISE_P, compare_auroc
from misalign_tui.core.metrics.profile import BOOTSTRAP_RESAMPLES
from misalign_tui.core.metrics.vocabulary import METRICS, method_summary, significance_words, versus_reference
from misalign_tui.core.report.audit import build_report
from misalign_tui.core.report.quality import RunQuality, auroc_comparison_line, ratio_ci, run_quality
from misalign_tui.core.report.render import REPORT_FORMATS, render
from misalign_tui.core.runs.catalog import runs_to_show
from misalign_tui.core.store import RunInfo, run_info
from misalign_tui.core.taxonomy import DIMENSIONS


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _ci(ci: tuple[float, float] | list[float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _select_runs(ctx: Context, run_ids: tuple[int, ...], models: tuple[str, ...]) -> list[RunInfo]:
    """The runs named, plus the run to show for each model named (or for every model when nothing is named);
    the runs passed over for having no results are said on stderr."""
    runs = [run_info(ctx.store, r) for r in run_ids]
    if models or not run_ids:
        selection = runs_to_show(ctx.store, models=models or None, require=bool(models))
        runs += selection.runs
        if selection.skipped:
            ctx.err.print(selection.skipped_note(), style="dim")
    if not runs:
        raise UserError("no runs yet (none with results): misalign-tui run --model default profiles the default model")
    return runs


@cli.command()
@click.option("--run", "run_ids", type=int, multiple=True, help="Run id (repeatable).")
@click.option("--model", "models", multiple=True, help="Latest run of this model (repeatable).")
@click.option("--group-by", type=click.Choice(list(metrics.GROUPINGS)), default="dimension", show_default=True)
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "md", "html"]), default="table",
              show_default=True, help="json/csv: stdout carries the document alone; md/html: the audit report.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the md/html audit report to this file (default: stdout).")
@click.option("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES, show_default=True,
              help="Resamples over prompts for the AS intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="md/html: explain the items each model got most wrong (a judge run's model is loaded for it).")
@pass_ctx
def report(ctx: Context, run_ids: tuple[int, ...], models: tuple[str, ...], group_by: str,
           filters: tuple[str, ...], fmt: str, output: Path | None, bootstrap: int, seed: int,
           explain: bool) -> None:
    """Profile runs: Coverage, FFR, AS, preference accuracy, satisfaction and trade-off rates with intervals.

    With no --run or --model: for each model, its latest run that has results (complete or not; the status is
    shown; later runs without results are named on stderr).
    --format md|html writes the audit report: benchmark identity, model hashes and settings, metrics, trade-offs,
    worst groups, paired tests and charts, in one file that opens offline."""
    store = ctx.store
    flt = Filters.parse(filters)
    if output is not None and fmt not in REPORT_FORMATS:
        raise UserError(f"-o {output}: only the md and html reports are written to a file; add --format html")
    if output is not None and not output.parent.resolve().is_dir():
        raise UserError(f"{output}: cannot write the report (folder {output.parent} does not exist); "
                        "create it or choose another path")
    runs = _select_runs(ctx, run_ids, models)
    if fmt in REPORT_FORMATS:
        doc = render(build_report(
            store, [r.id for r in runs], group_by=group_by, filters=flt, bootstrap=bootstrap, seed=seed,
            progress=lambda line: ctx.err.print(line, style="dim"), explain=explain), fmt)
        _write_report(ctx, doc, output)
        return
    docs = []
    quality: dict[int, RunQuality] = {}
    for run in runs:
        overall = metrics.profile(store, run.id, filters=flt, bootstrap=bootstrap, seed=seed)
        groups = metrics.profile(store, run.id, group_by=group_by, filters=flt, bootstrap=bootstrap, seed=seed)
        tr = metrics.trade_offs(store, run.id, flt)
        docs.append((run, overall[0] if overall else None, groups, tr))
        quality[run.id] = run_quality(store, run, group_by, flt, bootstrap, seed)
    comparisons = []
    for (ra, *_), (rb, *_) in itertools.combinations(docs, 2):
        if ra.method != rb.method:
            continue
        rows = metrics.compare(store, ra.id, rb.id, group_by=group_by, filters=flt)
        if rows and sum(r.n_items for r in rows):
            auroc = (compare_auroc(store, ra.id, rb.id, filters=flt, bootstrap=bootstrap, seed=seed)
                     if ra.method == "judge" else None)
            comparisons.append((ra, rb, rows, auroc))

    if fmt == "json":
        from misalign_tui.core.metrics.crosslingual import cross_lingual

        languages = {run.id: res for run, *_ in docs if (res := cross_lingual(store, run.id, filters=flt)).rows}
        emit_json(_json(docs, comparisons, group_by, flt, quality, languages))
    elif fmt == "csv":
        _csv(docs, group_by, quality)
    else:
        _tables(ctx, docs, comparisons, group_by, quality)


def _write_report(ctx: Context, doc: str, output: Path | None) -> None:
    """stdout, or the file given, written whole (a temporary file renamed) so no half report is left."""
    if output is None:
        sys.stdout.write(doc if doc.endswith("\n") else doc + "\n")
        return
    tmp = output.with_name(output.name + ".part")
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{output}: cannot write the report ({exc.strerror or exc}); choose another path") from exc
    ctx.err.print(f"wrote {output} ({len(doc.encode()):,} bytes)")


def _run_dict(run: RunInfo) -> dict[str, Any]:
    return {"run_id": run.id, "model": run.model, "benchmark": run.benchmark, "method": run.method,
            "status": run.status, "complete": run.complete, "templates": run.templates,
            "items_done": run.items_done, "items_total": run.items_total, "judge_model": run.judge_model,
            "chance": metrics.chance_note(run.method)}


def _json(docs: list[Any], comparisons: list[Any], group_by: str, flt: metrics.Filters,
          quality: dict[int, RunQuality], languages: dict[int, Any] | None = None) -> dict[str, Any]:
    """The JSON document; ``languages``: run id → its cross-lingual view, for the runs that scored parallel
    items (the key ``languages`` appears only on those runs)."""
    out_runs = []
    for run, overall, groups, tr in docs:
        d = _run_dict(run)
        q = quality[run.id]
        d["protocol"] = q.protocol
        d["overall"] = overall.as_dict() if overall else None
        if overall:
            d.update({k: v for k, v in overall.as_dict().items()
                      if k in ("coverage", "ffr", "alignment_score", "preference_accuracy", "satisfaction")})
        d["headline"] = metrics.headline(run.method).key
        d["headline_vs_reference"] = _headline_words(run, overall) or None
        d.update(tr.as_dict())
        d.update(q.headline_json())
        d["group_by"] = group_by
        by_group = q.groups_json()
        d["groups"] = [{**g.as_dict(), "headline_vs_reference": _headline_words(run, g) or None,
                        **by_group.get(g.group, {})} for g in groups]
        if languages and run.id in languages:
            d["languages"] = [r.as_dict() for r in languages[run.id].rows]
        out_runs.append(d)
    return {
        "filters": flt.as_lists(),
        "runs": out_runs,
        "comparisons": [{"run_a": a.id, "model_a": a.model, "run_b": b.id, "model_b": b.model,
                         "group_by": group_by, "rows": [r.as_dict() for r in rows],
                         **({"auroc": auroc.as_dict()} if auroc is not None else {})}
                        for a, b, rows, auroc in comparisons],
    }


CSV_COLUMNS = ["run_id", "model", "method", "status", "group_by", "group", "responses", "coverage", "coverage_lo",
               "coverage_hi", "ffr", "ffr_lo", "ffr_hi", "alignment_score", "alignment_score_lo",
               "alignment_score_hi", "template_as_min", "template_as_max", "template_as_std", "pairs",
               "preference_accuracy", "preference_accuracy_lo", "preference_accuracy_hi", "prompt_dimensions",
               "satisfaction", "satisfaction_lo", "satisfaction_hi", "trade_off_rate", "trade_off_baseline",
               "trade_off_excess", "headline_vs_reference", "auroc", "auroc_lo", "auroc_hi", "pairwise_accuracy",
               "pairwise_accuracy_lo", "pairwise_accuracy_hi", "ece", "ece_lo", "ece_hi", "answer_mass_median",
               "polarity_consistency", "polarity_consistency_lo", "polarity_consistency_hi", "judge_verdict"]


def _csv(docs: list[Any], group_by: str, quality: dict[int, RunQuality]) -> None:
    w = csv.DictWriter(data_stream(sys.stdout), fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for run, overall, groups, tr in docs:
        q = quality[run.id]
        by_group = q.groups_json()
        for row, gb in [(overall, None), *((g, group_by) for g in groups)]:
            if row is None:
                continue
            d = {**row.as_dict(), **(q.headline_json() if gb is None else by_group.get(row.group, {}))}
            flat: dict[str, Any] = {"run_id": run.id, "model": run.model, "method": run.method,
                                    "status": run.status, "group_by": gb or "", "group": row.group or "",
                                    "headline_vs_reference": _headline_words(run, row)}
            for k, v in d.items():
                if k.endswith("_ci"):
                    base = k[:-3]
                    flat[f"{base}_lo"], flat[f"{base}_hi"] = (v or [None, None])
                else:
                    flat[k] = v
            if gb is None:
                flat.update({"trade_off_rate": tr.rate, "trade_off_baseline": tr.baseline,
                             "trade_off_excess": tr.excess})
            w.writerow(flat)


def _headline_words(run: RunInfo, row: Any) -> str:
    """``significantly below chance (50 %)`` when the headline figure's interval excludes its reference, else ""."""
    key = metrics.headline(run.method)
    return versus_reference(key, key.row_ci(row)) if row is not None else ""


def _metric_columns(run: RunInfo, group_by: str) -> list[tuple[str, Any]]:
    """(header, cell function) of the profile table: the method's measures with intervals, the words for an
    interval that excludes the reference, satisfaction, n."""
    cols: list[tuple[str, Any]] = []
    key = metrics.headline(run.method)
    if run.method == "judge":
        cols = [("Coverage", lambda r: _pct(r.coverage) + _ci(r.coverage_ci)),
                ("FFR", lambda r: _pct(r.ffr) + _ci(r.ffr_ci)),
                ("AS", lambda r: _pct(r.alignment_score) + _ci(r.alignment_score_ci)),
                ("vs coin-flip judge 50 %", lambda r: significance_words(key, r.alignment_score_ci))]
        if run.templates > 1:
            cols.append(("AS per template min–max", lambda r: "" if r.template_as_min is None else
                         f"{_pct(r.template_as_min)}–{_pct(r.template_as_max)}"))
    elif run.method == "preference":
        cols = [("Preference acc.", lambda r: _pct(r.preference_accuracy) + _ci(r.preference_accuracy_ci)),
                ("vs chance 50 %", lambda r: significance_words(key, r.preference_accuracy_ci))]
    cols.append(("Satisfaction", lambda r: _pct(r.satisfaction) + _ci(r.satisfaction_ci)))
    unit = {"judge": "responses", "preference": "pairs"}.get(run.method, "prompt_dimensions")
    cols.append(("n", lambda r, unit=unit: f"{getattr(r, unit):,}"))
    return cols


def _tables(ctx: Context, docs: list[Any], comparisons: list[Any], group_by: str,
            quality: dict[int, RunQuality]) -> None:
    """Each run: a header, its profile table, the headline in a sentence, the trade-off rate and T[d1 → d2];
    then the paired comparisons. Tables that do not fit the terminal are stacked (``print_table``)."""
    con = ctx.console
    for run, overall, groups, tr in docs:
        q = quality[run.id]
        state = "complete" if run.complete else f"{run.status}, {run.items_done:,}/{run.items_total:,} items"
        con.print(styled(run.model, "bold"), f"— run {run.id}, {run.method} ({q.protocol}) on {run.benchmark}, "
                  f"{method_summary(run.method, run.templates, run.judge_model)} — {state}")
        for line in q.lines():
            con.print(line, highlight=False)
        table = Table(caption=f"95 % intervals in brackets; {metrics.chance_note(run.method)}; "
                              "\"significantly\": the interval excludes that level")
        cols = _metric_columns(run, group_by)
        id_column(table, group_by)
        for name, _ in cols:
            table.add_column(name, justify="left" if name.startswith("vs ") else "right")
        rows = [[row.group or "all", *(fn(row) for _, fn in cols)] for row in [*groups, *([overall] if overall else [])]]
        for r in rows:
            table.add_row(*r, style="bold" if r[0] == "all" and r is rows[-1] and overall else None)
        print_table(con, table)
        if overall is not None:
            key = metrics.headline(run.method)
            words = _headline_words(run, overall)
            con.print(f"{key.name}: {_pct(key.row_value(overall))}{_ci(key.row_ci(overall))} over "
                      f"{key.row_n(overall):,} {key.unit}"
                      + (f" — {words}" if words else f"; {metrics.chance_note(run.method)}"))
        if tr.rate is None:
            con.print(f"Trade-off rate: n/a — {tr.reason}")
        else:
            con.print(f"Trade-off rate: {_pct(tr.rate)}{_ci(tr.ci)} over {tr.n_prompts} prompts; independence "
                      f"baseline {_pct(tr.baseline)}, excess {100 * tr.excess:+.1f} points")
            pw = Table(title="T[row → column]: satisfies row, fails column (baseline in brackets)")
            dims = [d for d in DIMENSIONS if d in tr.satisfaction]
            id_column(pw, "")
            for d in dims:
                pw.add_column(d, justify="right")
            for d1 in dims:
                cells = []
                for d2 in dims:
                    c = tr.pairwise.get((d1, d2))
                    cells.append("—" if d1 == d2 or c is None or c.rate is None else
                                 f"{_pct(c.rate)} ({_pct(c.baseline)}) n={c.n}")
                pw.add_row(d1, *cells)
            print_table(con, pw)
        if q.judge_rows:
            print_table(con, _quality_table(q, group_by))
        con.print()
    for a, b, rows, auroc in comparisons:
        t = Table(title=f"{a.model} (A, run {a.id}) vs {b.model} (B, run {b.id}): McNemar exact, Holm across "
                        f"{group_by}s")
        label = METRICS[rows[0].metric].label if rows[0].metric in METRICS else rows[0].metric
        headers = [group_by, "shared", f"{label} A", f"{label} B", "Δ", "A only right", "B only right", "p",
                   "p (Holm)", "verdict"]
        for col in headers:
            if col in (group_by, "verdict"):
                id_column(t, col)
            else:
                t.add_column(col, justify="right")
        for r in rows:
            verdict = {"a": f"{a.model} beats {b.model}", "b": f"{b.model} beats {a.model}"}.get(
                r.verdict or "", "no significant difference")
            cells = [r.group or "all", f"{r.n_items:,}", _pct(r.value_a), _pct(r.value_b),
                     "n/a" if r.delta is None else f"{100 * r.delta:+.1f}", str(r.a_only), str(r.b_only),
                     f"{r.p_value:.3g}", f"{r.p_holm:.3g}", verdict]
            t.add_row(*cells)
        print_table(con, t)
        if auroc is not None:
            con.print(auroc_comparison_line(a.model, b.model, auroc), markup=False, highlight=False)


def _quality_table(q: RunQuality, group_by: str) -> Table:
    """AUROC, pairwise accuracy and ECE per group, each with and without the uncertain items."""
    t = Table(title=f"How good is the judge — uncertain: |P − 0.5| ≤ {NOISE_P} (pairs: |ΔP| ≤ {NOISE_P})")
    id_column(t, group_by)
    for col in ("AUROC", "certain only", "pairwise acc.", "certain only", "ECE", "uncertain", "n"):
        t.add_column(col, justify="right")
    for j in [*q.judge_groups, *q.judge_rows]:
        t.add_row(j.group or "all", ratio_ci(j.auroc, j.auroc_ci), ratio_ci(j.auroc_certain, j.auroc_certain_ci),
                  _pct(j.pairwise_accuracy) + _ci(j.pairwise_accuracy_ci),
                  _pct(j.pairwise_accuracy_certain) + _ci(j.pairwise_accuracy_certain_ci),
                  ratio_ci(j.ece, j.ece_ci, 3), f"{j.uncertain:,}", f"{j.items:,}")
    return t
