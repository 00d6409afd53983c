"""Runs started from the app: a queue of requests, one thread worker, pause and cancel signals passed down.

The worker calls the core's evaluation (``misalign_tui.core.runs.evaluate``) with a progress callback and a
``threading.Event`` for cancel; pausing blocks inside that callback, between items, so no item is half done.
A cancelled run is left 'interrupted' by the core and resumes when the same request is queued again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from misalign_tui.core.errors import Cancelled, UserError


@dataclass(frozen=True)
class QueuedRun:
    model: str
    method: str = "auto"  # auto (judge with a chat template, else preference) | judge | preference | generate
    judge_model: str | None = None
    benchmark: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    templates: int = 3  # paraphrased judge templates, as the CLI's default
    resume_run_id: int | None = None

    @property
    def key(self) -> str:
        return f"{self.model}/{self.method}"


@dataclass(frozen=True)
class RunStatus:
    key: str
    request: QueuedRun
    state: str = "queued"  # queued, running, paused, complete, interrupted, failed
    run_id: int | None = None
    done: int = 0
    total: int = 0
    items_per_s: float | None = None
    eta_s: float | None = None
    running_as: float | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("complete", "interrupted", "failed")


class RunSignals:
    """What the UI thread may do to a running queue: pause, resume, cancel."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.resume = threading.Event()
        self.resume.set()

    def wait_if_paused(self) -> None:
        while not self.resume.wait(0.1):
            if self.cancel.is_set():
                return


def execute(workspace: Any, request: QueuedRun, signals: RunSignals,
            report: Callable[[RunStatus], None]) -> RunStatus:
    """Run one request to the end (or until cancelled); returns its final status. Runs in a worker thread."""
    from misalign_tui.core import metrics
    from misalign_tui.core.io.native import SEED_BENCHMARK, load_seed_benchmark
    from misalign_tui.core.models.registry import resolve_model
    from misalign_tui.core.runs import evaluate
    from misalign_tui.core.store import Store

    status = RunStatus(request.key, request, "running")
    report(status)
    try:
        with Store(workspace.db_path) as store, Store(workspace.db_path) as reader:
            req = _evaluation_request(store, workspace, request, resolve_model, SEED_BENCHMARK, load_seed_benchmark,
                                      evaluate)
            status = replace(status, request=replace(request, method=req.method or evaluate.default_method(req.model)))
            last_as = [0.0, None]

            def on_progress(event: evaluate.RunProgress) -> None:
                nonlocal status
                signals.wait_if_paused()
                now = time.monotonic()
                if event.items_done and now - last_as[0] > 1.0:  # a running AS, read from the rollups
                    last_as[0] = now
                    try:
                        rows = metrics.profile(reader, event.run_id)
                        last_as[1] = rows[0].alignment_score if event.method == "judge" else rows[0].pair_accuracy
                    except Exception:  # noqa: BLE001 - a figure that cannot be read yet is left blank
                        pass
                status = replace(status, run_id=event.run_id, done=event.items_done, total=event.items_total,
                                 items_per_s=event.items_per_s or None, eta_s=event.eta_s, running_as=last_as[1],
                                 state="paused" if not signals.resume.is_set() else "running")
                report(status)

            result = evaluate.run_evaluation(store, req, progress=on_progress, cancel=signals.cancel)
            rows = metrics.profile(reader, result.run_id)
            final = rows[0].alignment_score if status.request.method == "judge" else rows[0].pair_accuracy
    except Cancelled:
        return replace(status, state="interrupted")
    except UserError as exc:
        return replace(status, state="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing run is shown; the app lives on
        return replace(status, state="failed", error=f"{type(exc).__name__}: {exc}")
    return replace(status, state="complete" if result.status == "complete" else result.status,
                   run_id=result.run_id, done=result.items_done, total=result.items_total, running_as=final,
                   eta_s=None)


def _evaluation_request(store: Any, workspace: Any, request: QueuedRun, resolve_model: Any, seed_name: str,
                        load_seed: Any, evaluate: Any) -> Any:
    """The core's RunRequest for a queued run; a resumed run takes its parameters from its row."""
    filters, limit, templates = request.filters, request.limit, request.templates
    benchmark_name = request.benchmark or seed_name
    if request.resume_run_id is not None:
        row = store.conn.execute("SELECT params_json FROM runs WHERE id = ?", (request.resume_run_id,)).fetchone()
        params = json.loads(row[0]) if row else {}
        filters = {("semantic_type" if k == "type" else k): v for k, v in params.get("filters", {}).items()}
        limit, templates = params.get("limit"), params.get("templates", templates)
    if benchmark_name == seed_name:
        load_seed(store)
    bench = store.benchmark(benchmark_name)
    model = resolve_model(store, request.model, workspace.models_dir)
    judge = resolve_model(store, request.judge_model, workspace.models_dir) if request.judge_model else None
    method = None if request.method == "auto" else request.method
    return evaluate.RunRequest(model, bench, method, judge,
                               evaluate.Filters(filters.get("dimension"), filters.get("domain"),
                                                filters.get("semantic_type")),
                               limit, templates)
