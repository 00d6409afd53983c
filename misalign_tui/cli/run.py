"""``run``, ``runs list``, ``runs show``, ``runs resume``: evaluate a model on a benchmark and inspect the runs."""

from __future__ import annotations

import threading
import time
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx
from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.inference.remote import RemoteSettings
from misalign_tui.core.io.native import SEED_BENCHMARK
from misalign_tui.core.metrics.filters import FILTER_HELP, Filters
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.models.registry import discover, model_family, resolve_model
from misalign_tui.core.runs.catalog import RUN_FIELDS, get_run, list_runs
from misalign_tui.core.runs.evaluate import run_evaluation
from misalign_tui.core.runs.identity import resume_request
from misalign_tui.core.runs.request import DEFAULT_TEMPLATES, RunRequest, RunSpec, Sampling, resolve_request
from misalign_tui.core.runs.writer import RunProgress


def engine_options(f):
    """--n-ctx, --gpu-layers, --threads: shared by run and bench."""
    f = click.option("--threads", type=click.IntRange(1, None), help="CPU threads (default: all this process may use).")(f)
    f = click.option("--gpu-layers", type=int, help="Layers to offload to the GPU: -1 all, 0 CPU only "
                     "(default: all when llama.cpp was built with a GPU backend).")(f)
    f = click.option("--n-ctx", type=click.IntRange(64, None), default=4096, show_default=True,
                     help="Context size in tokens (longer prompts are cut from the left and flagged).")(f)
    return f


class ProgressView:
    """Draws RunProgress events on stderr (called from the working thread): bars on a terminal; when stderr is a
    file (nohup, a log), a line per phase and then every ``LOG_EVERY_S`` seconds, with rate and ETA."""

    LOG_EVERY_S = 30.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.live = ctx.err.is_terminal
        self.progress = Progress(TextColumn("[bold]run {task.fields[run]}[/] {task.fields[phase]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=ctx.err, transient=False)
        self.tasks: dict[int, int] = {}
        self.logged: dict[int, tuple[str, float]] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> ProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def __call__(self, ev: RunProgress) -> None:
        with self.lock:
            if not self.live:
                self._log(ev)
                return
            fields = dict(run=ev.run_id, phase=f"{ev.method} {ev.phase}", rate=f"{ev.items_per_s:.2f} items/s")
            if ev.run_id not in self.tasks:
                self.tasks[ev.run_id] = self.progress.add_task("", total=ev.items_total, completed=ev.items_done,
                                                               **fields)
            else:
                self.progress.update(self.tasks[ev.run_id], total=ev.items_total, completed=ev.items_done, **fields)

    def _log(self, ev: RunProgress) -> None:
        now = time.monotonic()
        phase, at = self.logged.get(ev.run_id, ("", 0.0))
        if ev.phase == phase and now - at < self.LOG_EVERY_S:
            return
        self.logged[ev.run_id] = (ev.phase, now)
        eta = f", ETA {ev.eta_s / 60:.1f} min" if ev.eta_s is not None and ev.phase == "scoring" else ""
        stamp = time.strftime("%H:%M:%S")
        self.ctx.err.print(f"{stamp} run {ev.run_id} {ev.method} {ev.phase}: {ev.items_done}/{ev.items_total} items, "
                           f"{ev.items_per_s:.2f} items/s{eta}", soft_wrap=True, highlight=False)


@cli.command("run")
@click.option("--model", "-m", "model_specs", multiple=True,
              help="default, a registered name, a .gguf path or a sha256 prefix; repeat to queue several models "
                   "(run one after another).  [default: default]")
@click.option("--ladder", "ladder_spec", help="Queue MODEL's whole quantization family (models quantize): the "
              "parent and every variant, highest precision first.")
@click.option("--method", type=click.Choice(METHODS), help="Default: judge for models with a chat template, "
              "preference for base models.")
@click.option("--judge-model", help="generate: the model that rates the answers (default: the model itself).")
@click.option("--benchmark", "-b", default=SEED_BENCHMARK, show_default=True, help="Benchmark name (name@version).")
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--limit", type=click.IntRange(1, None), help="Only the first N prompts (all their responses).")
@click.option("--templates", type=click.IntRange(1, None), default=DEFAULT_TEMPLATES, show_default=True,
              help="Paraphrased judge templates per item (the paper averaged 3 runs).")
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
def run_cmd(ctx: Context, model_specs: tuple[str, ...], ladder_spec: str | None, method: str | None,
            judge_model: str | None, benchmark: str, filters: tuple[str, ...], limit: int | None, templates: int,
            temperature: float, top_p: float, max_tokens: int, seed: int, n_ctx: int, gpu_layers: int | None,
            threads: int | None, concurrency: int | None, fmt: str) -> None:
    """Evaluate a model (or several, queued) on a benchmark; the same command again resumes unfinished runs."""
    names = list(model_specs)
    if ladder_spec:
        discover(ctx.store, ctx.workspace.models_dir)
        names += [m.name for m in model_family(ctx.store, resolve_model(ctx.store, ladder_spec,
                                                                         ctx.workspace.models_dir))]
    names = list(dict.fromkeys(names or ["default"]))
    flt = Filters.parse(filters)
    # every model is resolved before any work starts, so a mistyped name fails at once
    requests = [resolve_request(ctx.store, ctx.workspace.models_dir,
                                RunSpec(name, method, judge_model, benchmark, flt, limit, templates, n_ctx,
                                        gpu_layers, threads, Sampling(temperature, top_p, max_tokens, seed),
                                        concurrency))
                for name in names]
    if len(requests) == 1:
        _run_and_report(ctx, requests[0], fmt)
        return
    _run_queue(ctx, requests, fmt, ladder_spec)


def _run_queue(ctx: Context, requests: list[RunRequest], fmt: str, ladder: str | None = None) -> None:
    """Several runs one after another (as the Run screen queues them): a failing run is reported and the queue
    goes on; Ctrl+C interrupts the current run and names the ones not started."""
    done: list[dict[str, Any]] = []
    failed: list[str] = []
    for i, req in enumerate(requests, 1):
        ctx.err.print(f"[bold]{i}/{len(requests)}[/] {req.model.name}", highlight=False)
        try:
            done.append(_run_and_report(ctx, req, None))
        except UserError as exc:
            failed.append(f"{req.model.name}: {exc}")
            ctx.err.print(f"error: {req.model.name}: {exc}", soft_wrap=True, highlight=False)
        except (KeyboardInterrupt, Cancelled):
            rest = ", ".join(r.model.name for r in requests[i:])
            if rest:
                ctx.err.print(f"not started: {rest}", soft_wrap=True, highlight=False)
            raise
    if fmt == "json":
        emit_json({"runs": done, "failed": failed})
    elif done:
        ctx.err.print("next: " + (f"misalign-tui compare ladder {ladder}" if ladder else
                                  "misalign-tui report " + " ".join(f"--run {d['id']}" for d in done)),
                      soft_wrap=True, highlight=False)
    if failed:
        raise UserError(f"{len(failed)} of {len(requests)} runs failed ({'; '.join(failed)})")


def _run_and_report(ctx: Context, req: RunRequest, fmt: str | None) -> dict[str, Any]:
    store = ctx.store
    with ProgressView(ctx) as view:
        result = run_evaluation(store, req, progress=view)
    run = get_run(store, result.run_id)
    summary = {**{f: run[f] for f in RUN_FIELDS}, "resumed": result.resumed, "judge_run_id": result.judge_run_id,
               "device": (run["provenance"] or {}).get("engine", {}).get("device")}
    if fmt == "json":
        emit_json(summary)
        return summary
    verb = "resumed" if result.resumed else "finished"
    ctx.err.print(f"run {result.run_id} {verb}: {run['status']}, {run['items_done']}/{run['items_total']} items "
                  f"({run['method']}, {run['model']} on {run['benchmark']})", soft_wrap=True, highlight=False)
    if result.judge_run_id:
        ctx.err.print(f"the judge model's own judge run: {result.judge_run_id}")
    if fmt is not None:
        ctx.err.print(f"next: misalign-tui report --run {result.run_id}")
    return summary


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
