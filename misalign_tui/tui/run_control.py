"""Runs started from the app: a queue of requests, one thread worker, pause and cancel signals passed down.

A queued run is a core ``RunSpec`` (the same the CLI's ``run`` builds) or the id of a stored run to resume; the
core turns either into its request (``resolve_request`` / ``resume_request``), so a run started on the CLI
resumes here as the same run. The worker calls the core's evaluation with a progress callback and a
``threading.Event`` for cancel; pausing blocks inside that callback, between items, so no item is half done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.runs.request import RunSpec
from misalign_tui.core.workspace import Workspace


@dataclass(frozen=True)
class QueuedRun:
    """What the Run screen queues: a new run (``spec``) or the stored run ``resume_run_id``."""

    model: str                      # shown in the progress table
    method: str = "auto"            # auto (judge with a chat template, else preference) | judge | preference | generate
    spec: RunSpec | None = None
    resume_run_id: int | None = None

    @property
    def key(self) -> str:
        return f"run {self.resume_run_id}" if self.resume_run_id is not None else f"{self.model}/{self.method}"


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
    headline: float | None = None       # the method's headline figure so far (metrics.vocabulary.HEADLINE)
    headline_ci: tuple[float, float] | None = None
    headline_n: int = 0
    headline_label: str = ""
    error: str | None = None
    verdict: str | None = None          # judge runs, once finished: how good the judge is (metrics/judge_quality.py)

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


def execute(workspace: Workspace, request: QueuedRun, signals: RunSignals,
            report: Callable[[RunStatus], None]) -> RunStatus:
    """Run one request to the end (or until cancelled); returns its final status. Runs in a worker thread."""
    from misalign_tui.core import metrics
    from misalign_tui.core.metrics.judge_quality import run_judge_quality
    from misalign_tui.core.metrics.vocabulary import headline
    from misalign_tui.core.runs.evaluate import run_evaluation
    from misalign_tui.core.runs.identity import resume_request
    from misalign_tui.core.runs.request import default_method, resolve_request
    from misalign_tui.core.runs.writer import RunProgress
    from misalign_tui.core.store import Store

    status = RunStatus(request.key, request, "running")
    report(status)
    try:
        with Store(workspace.db_path) as store, Store(workspace.db_path) as reader:
            if request.resume_run_id is not None:
                req = resume_request(store, request.resume_run_id)
            else:
                req = resolve_request(store, workspace.models_dir, request.spec or RunSpec(request.model))
            method = req.method or default_method(req.model)
            key = headline(method)
            status = replace(status, request=replace(request, model=req.model.name, method=method),
                             headline_label=key.label)
            last = [0.0]

            def figure(run_id: int) -> dict[str, Any]:
                """The headline so far, its interval and n (read from the rollups); blank before any result."""
                rows = metrics.profile(reader, run_id)
                if not rows:
                    return {"headline": None, "headline_ci": None, "headline_n": 0}
                return {"headline": key.row_value(rows[0]), "headline_ci": key.row_ci(rows[0]),
                        "headline_n": key.row_n(rows[0])}

            def on_progress(event: RunProgress) -> None:
                nonlocal status
                signals.wait_if_paused()
                now = time.monotonic()
                figures: dict[str, Any] = {}
                if event.items_done and now - last[0] > 1.0:  # a running figure, read from the rollups
                    last[0] = now
                    try:
                        figures = figure(event.run_id)
                    except Exception:  # noqa: BLE001 - a figure that cannot be read yet is left as it was
                        pass
                status = replace(status, run_id=event.run_id, done=event.items_done, total=event.items_total,
                                 items_per_s=event.items_per_s or None, eta_s=event.eta_s,
                                 state="paused" if not signals.resume.is_set() else "running", **figures)
                report(status)

            result = run_evaluation(store, req, progress=on_progress, cancel=signals.cancel)
            final = figure(result.run_id)
            quality = run_judge_quality(reader, result.run_id) if method == "judge" else None
    except Cancelled:
        return replace(status, state="interrupted")
    except UserError as exc:
        return replace(status, state="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing run is shown; the app lives on
        return replace(status, state="failed", error=f"{type(exc).__name__}: {exc}")
    return replace(status, state="complete" if result.status == "complete" else result.status,
                   run_id=result.run_id, done=result.items_done, total=result.items_total, eta_s=None,
                   verdict=quality.verdict if quality else None, **final)
