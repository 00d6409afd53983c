"""``build``: run a benchmark recipe (or the built-in demo) with local models."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import click

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, is_terminal, pass_ctx
from misalign_tui.cli.progress import ProgressLog, duration_text


def _format_progress(p: object) -> str:
    from misalign_tui.core.build.state import StepProgress

    assert isinstance(p, StepProgress)
    rate = f"{p.rate:.2f}/s" if p.rate else "-"
    eta = f"ETA {duration_text(p.eta_s)}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(p.counts.items()))
    return f"{p.step}: {p.done}/{p.total}  {rate}  {eta}" + (f"  [{counts}]" if counts else "") + \
        (f"  {p.message}" if p.message else "")


class BuildProgressView:
    """Build progress on stderr: a line per change (a finished unit, a new step). When stderr is not a terminal
    (a log), ``ProgressLog``'s timer also repeats the last line at least every 10 s while a long unit runs, so a
    log never goes quiet."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic, live: bool | None = None
                 ) -> None:
        self.live = is_terminal(stream) if live is None else live
        self.clock = clock
        self.log = ProgressLog(stream, clock=clock)
        self.last_line = ""

    def __enter__(self) -> BuildProgressView:
        if not self.live:
            self.log.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.stop()

    def __call__(self, p: object) -> None:
        line = _format_progress(p)
        if line != self.last_line:
            self.log.update(line, self.clock(), force=True)
        self.last_line = line


@cli.command("build")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--demo", is_flag=True, help="Run the small built-in recipe (2 domains x 3 types, default model).")
@format_option
@pass_ctx
def build(ctx: Context, recipe: str | None, demo: bool, fmt: str) -> None:
    """Build a benchmark from RECIPE (TOML): classify, expand, dedup, pairs with rejection sampling.
    Running the same recipe again resumes where it stopped."""
    from pathlib import Path

    from misalign_tui.core.build.checker import measurement_line
    from misalign_tui.core.build.pipeline import run_build
    from misalign_tui.core.build.recipe import DEMO_RECIPE, demo_recipe, read_recipe
    from misalign_tui.core.build.statistics import build_statistics, checker_measurement
    from misalign_tui.core.errors import UserError

    if demo == bool(recipe):
        raise UserError("build: give a RECIPE file or --demo (one of them)")
    parsed = demo_recipe() if demo else read_recipe(recipe or "")
    text = DEMO_RECIPE if demo else Path(recipe or "").read_text(encoding="utf-8")
    store = ctx.store
    from misalign_tui.core.io.native import load_seed_benchmark

    load_seed_benchmark(store)
    view = BuildProgressView(sys.stderr)

    # llama.cpp's log lines (warnings about the vocabulary, the SWA cache) stay out of the terminal.
    llama_log = logging.getLogger("misalign_tui.llama")
    if not llama_log.handlers:
        llama_log.addHandler(logging.NullHandler())
        llama_log.propagate = False
    # Ctrl+C asks the build to stop at the next token or unit (the engine checks the event); what is finished
    # is committed and a rerun resumes. A second Ctrl+C interrupts at once.
    cancel = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        ctx.err.print("stopping after the item in flight (Ctrl+C again to stop at once)…", highlight=False)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    from misalign_tui.core.build.state import AwaitingReview

    try:
        with view:
            result = run_build(store, parsed, ctx.workspace.models_dir, progress=view, cancel=cancel,
                               recipe_text=text)
    except AwaitingReview as paused:
        # Not a failure: reviewers decide stage 2 (checker = "human"); the same command resumes afterwards.
        if fmt == "json":
            emit_json({"name": parsed.name, "build_id": paused.build_id, "status": "awaiting review",
                       "review_queue": paused.queue, "items_awaiting": paused.items})
        ctx.err.print(str(paused), highlight=False, markup=False, soft_wrap=True)
        raise SystemExit(paused.exit_code) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    stats = build_statistics(store, result.benchmark_id)
    if fmt == "json":
        emit_json({"name": result.name, "version": result.version, "build_id": result.build_id,
                   "resumed": result.resumed, "steps": result.counts, "per_domain": stats,
                   "checker": checker_measurement(store, result.benchmark_id)})
        return
    ctx.console.print(f"built {result.name} v{result.version} (build {result.build_id}"
                      f"{', resumed' if result.resumed else ''})")
    for step, counts in result.counts.items():
        ctx.console.print(f"  {step}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                          highlight=False)
    ctx.console.print(measurement_line(checker_measurement(store, result.benchmark_id)), markup=False,
                      highlight=False)
    ctx.console.print(f"misalign-tui benchmark stats {result.name} shows the per-domain table")
