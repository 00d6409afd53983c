"""``run``, ``runs list``, ``runs show``, ``runs resume``: evaluate a model on a benchmark and inspect the runs."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import (
    Context,
    emit_json,
    format_option,
    id_column,
    is_terminal,
    pass_ctx,
    print_table,
    styled,
)
from misalign_tui.cli.progress import ProgressLog, duration_text
from misalign_tui.core import metrics
from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.engine import GEN_BATCH, EngineSettings
from misalign_tui.core.inference.judge_templates import (
    JUDGE_TEMPLATES,
    POLARITIES,
    TEMPLATE_VERSION,
    TEMPLATE_VERSIONS,
)
from misalign_tui.core.inference.remote import RemoteSettings
from misalign_tui.core.inference.requests import Sampling
from misalign_tui.core.io.native import SEED_BENCHMARK
from misalign_tui.core.metrics.filters import FILTER_HELP, Filters
from misalign_tui.core.metrics.judge_quality import run_judge_quality
from misalign_tui.core.metrics.profile import BOOTSTRAP_RESAMPLES
from misalign_tui.core.metrics.vocabulary import METHODS, headline
from misalign_tui.core.models.registry import discover, model_family, resolve_model
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
    resolve_request,
)
from misalign_tui.core.runs.writer import RunProgress
from misalign_tui.core.store import Store


def engine_options(f):
    """--n-ctx, --gpu-layers, --threads: shared by run and bench."""
    f = click.option("--threads", type=click.IntRange(1, None), help="CPU threads (default: all this process may use).")(f)
    f = click.option("--gpu-layers", type=int, help="Layers to offload to the GPU: -1 all, 0 CPU only "
                     "(default: all when llama.cpp was built with a GPU backend).")(f)
    f = click.option("--n-ctx", type=click.IntRange(64, None), default=4096, show_default=True,
                     help="Context size in tokens (longer prompts are cut from the left and flagged).")(f)
    return f


def running_figure(store: Store, run_id: int, method: str) -> str:
    """The run's headline figure over the items stored so far (``AS 81.2%``), or "" before any."""
    key = headline(method)
    try:
        rows = metrics.profile(store, run_id)
    except Exception:  # noqa: BLE001 - a figure that cannot be read yet is left out, the run goes on
        return ""
    value = key.row_value(rows[0]) if rows else None
    return "" if value is None else f"{key.label} {100 * value:.1f}%"


class ProgressView:
    """RunProgress events on stderr (called from the working thread): Rich's live bar on a terminal, plain lines
    (``ProgressLog``: done/total, rate, ETA, the running headline figure) at least every 10 s elsewhere."""

    def __init__(self, ctx: Context, *, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 figure: Callable[[int, str], str] | None = None, live: bool | None = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(stream) if live is None else live
        self.figure = figure if figure is not None else (lambda run_id, method: running_figure(ctx.store, run_id,
                                                                                                method))
        self.clock = clock
        self.log = ProgressLog(stream, clock=clock)
        self.progress = Progress(TextColumn("[bold]run {task.fields[run]}[/] {task.fields[phase]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[figure]}"), console=ctx.err, transient=False) \
            if self.live else None
        self.tasks: dict[int, int] = {}
        self.phases: dict[int, str] = {}
        self.figures: dict[int, tuple[float, str]] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> ProgressView:
        if self.progress is not None:
            self.progress.start()
        else:
            self.log.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
        else:
            self.log.stop()

    def _figure(self, ev: RunProgress, now: float, every_s: float) -> str:
        """The running figure, read from the store at most every ``every_s`` (and at the end)."""
        last = self.figures.get(ev.run_id)
        if ev.items_done and (last is None or now - last[0] >= every_s or ev.phase == "done"):
            self.figures[ev.run_id] = last = (now, self.figure(ev.run_id, ev.method))
        return last[1] if last else ""

    @staticmethod
    def line(ev: RunProgress, figure: str) -> str:
        """``run 3 judge scoring: 120/333 items (36.0%), 0.42 items/s, ETA 8 min 27 s, AS 81.2% so far``"""
        share = f" ({100 * ev.items_done / ev.items_total:.1f}%)" if ev.items_total else ""
        parts = [f"run {ev.run_id} {ev.method} {ev.phase}: {ev.items_done:,}/{ev.items_total:,} items{share}"]
        if ev.phase != "loading":
            parts.append(f"{ev.items_per_s:.2f} items/s")
            if ev.phase != "done":
                parts.append(f"ETA {duration_text(ev.eta_s)}")
        if figure:
            parts.append(figure if ev.phase == "done" else f"{figure} so far")
        return ", ".join(parts)

    def __call__(self, ev: RunProgress) -> None:
        with self.lock:
            now = self.clock()
            if self.progress is None:
                changed = self.phases.get(ev.run_id) != ev.phase
                self.phases[ev.run_id] = ev.phase
                due = changed or ev.phase == "done" or self.log.due(now)
                # read again for a line written now, and at least every line interval: the timer's lines take the
                # latest state, so a figure read only for 'due' events stayed the first one read for the whole run
                figure = self._figure(ev, now, 0.0 if due else self.log.every_s)
                self.log.update(self.line(ev, figure), now, force=due)
                return
            fields = dict(run=ev.run_id, phase=f"{ev.method} {ev.phase}", rate=f"{ev.items_per_s:.2f} items/s",
                          figure=self._figure(ev, now, 1.0))
            if ev.run_id not in self.tasks:
                self.tasks[ev.run_id] = self.progress.add_task("", total=ev.items_total, completed=ev.items_done,
                                                               **fields)
            else:
                self.progress.update(self.tasks[ev.run_id], total=ev.items_total, completed=ev.items_done, **fields)


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
@click.option("--templates", type=click.IntRange(1, len(JUDGE_TEMPLATES)), default=DEFAULT_TEMPLATES,
              show_default=True, help=f"Paraphrased judge templates per item, 1 to {len(JUDGE_TEMPLATES)} (the paper "
              "averaged 3 runs).")
@click.option("--template-version", type=click.Choice(TEMPLATE_VERSIONS), default=TEMPLATE_VERSION, show_default=True,
              help="Judge templates: judge-v2 shares one body between the questions (fast); judge-v1 repeats "
                   "earlier runs' templates.")
@click.option("--gen-batch", type=click.IntRange(1, 32), default=GEN_BATCH, show_default=True,
              help="generate: answers sampled together (the same seed and batch size give the same text).")
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
def run_cmd(ctx: Context, model_specs: tuple[str, ...], ladder_spec: str | None, method: str | None,
            judge_model: str | None, benchmark: str, filters: tuple[str, ...], limit: int | None, templates: int,
            template_version: str, gen_batch: int, shots: int, calibrate: bool, polarity: str, normalize: str,
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
    protocol = Protocol(shots, calibrate, polarity, normalize)
    # every model is resolved before any work starts, so a mistyped name fails at once
    requests = [resolve_request(ctx.store, ctx.workspace.models_dir,
                                RunSpec(name, method, judge_model, benchmark, flt, limit, templates, n_ctx,
                                        gpu_layers, threads, Sampling(temperature, top_p, max_tokens, seed),
                                        concurrency, protocol, template_version, gen_batch))
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
        ctx.err.print(styled(f"{i}/{len(requests)}", "bold"), req.model.name, highlight=False)
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
    quality = run_judge_quality(store, result.run_id, bootstrap=BOOTSTRAP_RESAMPLES)
    summary = {**{f: run[f] for f in RUN_FIELDS}, "resumed": result.resumed, "judge_run_id": result.judge_run_id,
               "device": (run["provenance"] or {}).get("engine", {}).get("device"),
               "judge_verdict": quality.verdict if quality else None}
    if fmt == "json":
        emit_json(summary)
        return summary
    verb = "resumed" if result.resumed else "finished"
    prov = run["provenance"] or {}
    ctx.err.print(f"run {result.run_id} {verb}: {run['status']}, {run['items_done']}/{run['items_total']} items "
                  f"({run['method']}, {prov.get('protocol') or 'zero-shot'}, {run['model']} on {run['benchmark']})",
                  soft_wrap=True, markup=False, highlight=False)
    split = prov.get("calibration_split")
    if split:
        ctx.err.print(f"calibration split: {split['prompts_held_out']} of {split['prompts_total']} prompts held out "
                      f"of scoring, {len(split['demonstrations'])} shown as demonstrations", highlight=False)
    if quality is not None:
        ctx.err.print(f"judge: {quality.verdict}", markup=False, highlight=False)
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
    table = Table(title="Runs", caption="judge templates: paraphrased judge questions per item (judge and "
                  "generate runs; a preference run asks none)")
    for col in ("id", "model", "benchmark", "method", "status"):
        id_column(table, col)
    table.add_column("items", justify="right")
    table.add_column("judge templates", justify="right")
    for col in ("started", "finished"):
        id_column(table, col)
    for r in rows:
        table.add_row(str(r["id"]), r["model"], r["benchmark"], r["method"], r["status"],
                      f"{r['items_done']:,}/{r['items_total']:,}",
                      "-" if r["method"] == "preference" else str(r["templates"]),
                      (r["started_at"] or "")[:19].replace("T", " "), (r["finished_at"] or "-")[:19].replace("T", " "))
    print_table(ctx.console, table)


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
    table = Table(show_header=False, title=f"run {run_id}", box=None, padding=(0, 2, 0, 0))
    id_column(table, "field", style="bold")
    table.add_column("value", overflow="fold")
    preference = run["method"] == "preference"
    for key in (*RUN_FIELDS, "judge_model", "model_sha256", "error"):
        if run.get(key) is not None and not (preference and key == "templates"):
            table.add_row(key, str(run[key]))
    prov = run.get("provenance") or {}
    eng = prov.get("engine", {})
    for key in ("device", "threads", "n_ctx", "llama_cpp_python"):
        if key in eng:
            table.add_row(key, str(eng[key]))
    params = dict(run.get("params") or {})
    if preference:  # stored with every run's identity, but a preference run asks no judge question
        params.pop("templates", None)
        params.pop("template_version", None)
    table.add_row("params", ", ".join(f"{k}={v}" for k, v in params.items()))
    for t in run["templates_text"]:
        table.add_row(f"template {t['template']} ({t['name']})", t["text"])
    ctx.console.print(table)
