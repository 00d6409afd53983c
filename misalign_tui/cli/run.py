"""``run``, ``runs list``, ``runs show``, ``runs resume``: evaluate a model on a benchmark and inspect the runs."""

from __future__ import annotations

import threading

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx
from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.inference.judge_templates import POLARITIES
from misalign_tui.core.inference.remote import RemoteSettings
from misalign_tui.core.io.native import SEED_BENCHMARK
from misalign_tui.core.metrics.filters import FILTER_HELP, Filters
from misalign_tui.core.metrics.judge_quality import run_judge_quality
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.runs.catalog import RUN_FIELDS, get_run, list_runs
from misalign_tui.core.runs.evaluate import run_evaluation
from misalign_tui.core.runs.identity import resume_request
from misalign_tui.core.runs.request import (
    DEFAULT_TEMPLATES,
    MAX_SHOTS,
    NORMALIZATIONS,
    Protocol,
    RunRequest,
    RunSpec,
    Sampling,
    resolve_request,
)
from misalign_tui.core.runs.writer import RunProgress

BOOTSTRAP_RESAMPLES = 1000


def engine_options(f):
    """--n-ctx, --gpu-layers, --threads: shared by run and bench."""
    f = click.option("--threads", type=click.IntRange(1, None), help="CPU threads (default: all this process may use).")(f)
    f = click.option("--gpu-layers", type=int, help="Layers to offload to the GPU: -1 all, 0 CPU only "
                     "(default: all when llama.cpp was built with a GPU backend).")(f)
    f = click.option("--n-ctx", type=click.IntRange(64, None), default=4096, show_default=True,
                     help="Context size in tokens (longer prompts are cut from the left and flagged).")(f)
    return f


class ProgressView:
    """Draws RunProgress events on stderr with rich (called from the working thread)."""

    def __init__(self, ctx: Context) -> None:
        self.progress = Progress(TextColumn("[bold]run {task.fields[run]}[/] {task.fields[phase]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=ctx.err, transient=False)
        self.tasks: dict[int, int] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, ev: RunProgress) -> None:
        with self.lock:
            fields = dict(run=ev.run_id, phase=f"{ev.method} {ev.phase}", rate=f"{ev.items_per_s:.2f} items/s")
            if ev.run_id not in self.tasks:
                self.tasks[ev.run_id] = self.progress.add_task("", total=ev.items_total, completed=ev.items_done,
                                                               **fields)
            else:
                self.progress.update(self.tasks[ev.run_id], total=ev.items_total, completed=ev.items_done, **fields)


@cli.command("run")
@click.option("--model", "-m", "model_spec", default="default", show_default=True,
              help="default, a registered name, a .gguf path or a sha256 prefix.")
@click.option("--method", type=click.Choice(METHODS), help="Default: judge for models with a chat template, "
              "preference for base models.")
@click.option("--judge-model", help="generate: the model that rates the answers (default: the model itself).")
@click.option("--benchmark", "-b", default=SEED_BENCHMARK, show_default=True, help="Benchmark name (name@version).")
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--limit", type=click.IntRange(1, None), help="Only the first N prompts (all their responses).")
@click.option("--templates", type=click.IntRange(1, None), default=DEFAULT_TEMPLATES, show_default=True,
              help="Paraphrased judge templates per item (the paper averaged 3 runs).")
@click.option("--shots", type=click.IntRange(0, MAX_SHOTS), default=0, show_default=True,
              help="judge: K demonstrations from the benchmark's calibration split (held out of scoring).")
@click.option("--calibrate", is_flag=True, help="judge: contextual calibration — divide out P(Yes) on a "
              "content-free response (\"N/A\") under the same template and shots.")
@click.option("--polarity", type=click.Choice(POLARITIES), default="harm", show_default=True,
              help="judge: harm (\"is it harmful?\"), inverted (its twin: Yes means aligned) or balanced (both, "
                   "averaged).")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default="none", show_default=True,
              help="preference: pmi subtracts each response's mean log-likelihood under a neutral context.")
@click.option("--temperature", type=float, default=0.7, show_default=True, help="generate: sampling temperature.")
@click.option("--top-p", type=float, default=0.9, show_default=True, help="generate: nucleus sampling.")
@click.option("--max-tokens", type=click.IntRange(1, None), default=512, show_default=True,
              help="generate: longest answer.")
@click.option("--seed", type=int, default=0, show_default=True, help="generate: sampling seed.")
@engine_options
@click.option("--concurrency", type=click.IntRange(1, 256), help="Remote models: items in flight over all their "
              "servers (default 4).")
@format_option
@pass_ctx
def run_cmd(ctx: Context, model_spec: str, method: str | None, judge_model: str | None, benchmark: str,
            filters: tuple[str, ...], limit: int | None, templates: int, shots: int, calibrate: bool,
            polarity: str, normalize: str, temperature: float, top_p: float, max_tokens: int, seed: int, n_ctx: int,
            gpu_layers: int | None, threads: int | None, concurrency: int | None, fmt: str) -> None:
    """Evaluate a model on a benchmark; the same command again resumes an unfinished run."""
    spec = RunSpec(model_spec, method, judge_model, benchmark, Filters.parse(filters), limit, templates, n_ctx,
                   gpu_layers, threads, Sampling(temperature, top_p, max_tokens, seed), concurrency,
                   Protocol(shots, calibrate, polarity, normalize))
    _run_and_report(ctx, resolve_request(ctx.store, ctx.workspace.models_dir, spec), fmt)


def _run_and_report(ctx: Context, req: RunRequest, fmt: str) -> None:
    store = ctx.store
    with ProgressView(ctx) as view:
        result = run_evaluation(store, req, progress=view)
    run = get_run(store, result.run_id)
    quality = run_judge_quality(store, result.run_id, bootstrap=BOOTSTRAP_RESAMPLES)
    if fmt == "json":
        emit_json({**{f: run[f] for f in RUN_FIELDS}, "resumed": result.resumed,
                   "judge_run_id": result.judge_run_id, "device": (run["provenance"] or {}).get("engine", {})
                   .get("device"), "judge_verdict": quality.verdict if quality else None})
        return
    verb = "resumed" if result.resumed else "finished"
    prov = run["provenance"] or {}
    ctx.err.print(f"run {result.run_id} {verb}: {run['status']}, {run['items_done']}/{run['items_total']} items "
                  f"({run['method']}, {prov.get('protocol') or 'zero-shot'}, {run['model']} on {run['benchmark']})",
                  markup=False, highlight=False)
    split = prov.get("calibration_split")
    if split:
        ctx.err.print(f"calibration split: {split['prompts_held_out']} of {split['prompts_total']} prompts held out "
                      f"of scoring, {len(split['demonstrations'])} shown as demonstrations", highlight=False)
    if quality is not None:
        ctx.err.print(f"judge: {quality.verdict}", markup=False, highlight=False)
    if result.judge_run_id:
        ctx.err.print(f"the judge model's own judge run: {result.judge_run_id}")
    ctx.err.print(f"next: misalign-tui report --run {result.run_id}")


@cli.group()
def runs() -> None:
    """Evaluation runs in the workspace."""


@runs.command("list")
@format_option
@pass_ctx
def runs_list(ctx: Context, fmt: str) -> None:
    """Every run with its status and progress."""
    rows = list_runs(ctx.store)
    if fmt == "json":
        emit_json([{f: r[f] for f in RUN_FIELDS} for r in rows])
        return
    if not rows:
        ctx.console.print("no runs yet: misalign-tui run --model default")
        return
    table = Table(title="Runs")
    for col in ("id", "model", "benchmark", "method", "status", "items", "templates", "started", "finished"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["model"], r["benchmark"], r["method"], r["status"],
                      f"{r['items_done']}/{r['items_total']}", str(r["templates"]), (r["started_at"] or "")[:19],
                      (r["finished_at"] or "-")[:19])
    ctx.console.print(table)


@runs.command("resume")
@click.argument("run_id", type=int)
@click.option("--gpu-layers", type=int, help="Layers to offload to the GPU (not part of the run's identity).")
@click.option("--threads", type=click.IntRange(1, None), help="CPU threads (not part of the run's identity).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Remote models: items in flight.")
@format_option
@pass_ctx
def runs_resume(ctx: Context, run_id: int, gpu_layers: int | None, threads: int | None, concurrency: int | None,
                fmt: str) -> None:
    """Continue an interrupted or failed run with exactly the parameters it started with (whichever face
    started it)."""
    req = resume_request(ctx.store, run_id, settings=EngineSettings(n_gpu_layers=gpu_layers, n_threads=threads),
                         remote=RemoteSettings(concurrency=concurrency) if concurrency else None)
    _run_and_report(ctx, req, fmt)


@runs.command("show")
@click.argument("run_id", type=int)
@format_option
@pass_ctx
def runs_show(ctx: Context, run_id: int, fmt: str) -> None:
    """One run: parameters, provenance and the exact templates the model saw."""
    run = get_run(ctx.store, run_id)
    if fmt == "json":
        emit_json(run)
        return
    table = Table(show_header=False, title=f"run {run_id}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in (*RUN_FIELDS, "judge_model", "model_sha256", "error"):
        if run.get(key) is not None:
            table.add_row(key, str(run[key]))
    prov = run.get("provenance") or {}
    eng = prov.get("engine", {})
    for key in ("device", "threads", "n_ctx", "llama_cpp_python"):
        if key in eng:
            table.add_row(key, str(eng[key]))
    table.add_row("params", str(run.get("params")))
    for t in run["templates_text"]:
        table.add_row(f"template {t['template']} ({t['name']})", t["text"])
    ctx.console.print(table)
