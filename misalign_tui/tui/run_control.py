"""Runs started from the app: a queue of requests, one thread worker, pause and cancel signals passed down.

The worker calls the core's evaluation (``misalign_tui.core.evaluate``) with a progress callback and a
``threading.Event`` for cancel; pausing blocks inside that callback, between items, so no item is half done.
A cancelled run is left 'interrupted' by the core and resumes when the same request is queued again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from misalign_tui.core.errors import Cancelled, UserError


@dataclass(frozen=True)
class RunRequest:
    model: str
    method: str = "judge"  # judge | preference | generate
    judge_model: str | None = None
    benchmark: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    templates: int = 1
    resume_run_id: int | None = None

    @property
    def key(self) -> str:
        return f"{self.model}/{self.method}"


@dataclass(frozen=True)
class RunStatus:
    key: str
    request: RunRequest
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


def execute(db_path: object, request: RunRequest, signals: RunSignals,
            report: Callable[[RunStatus], None]) -> RunStatus:
    """Run one request to the end (or until cancelled); returns its final status. Runs in a worker thread."""
    status = RunStatus(request.key, request, "running")
    report(status)
    try:
        from misalign_tui.core import evaluate  # lands with the engine issue
    except ImportError:
        return replace(status, state="failed",
                       error="the evaluation engine is not installed in this build (core/evaluate.py)")
    started = time.perf_counter()
    first_done: list[int] = []

    def on_progress(event: object) -> None:
        signals.wait_if_paused()
        done = int(getattr(event, "done", 0))
        total = int(getattr(event, "total", 0))
        if not first_done:
            first_done.append(done)  # a resumed run starts with items already done
        elapsed = time.perf_counter() - started
        rate = (done - first_done[0]) / elapsed if elapsed > 0 and done > first_done[0] else None
        nonlocal status
        status = replace(status, run_id=getattr(event, "run_id", status.run_id), done=done, total=total,
                         items_per_s=rate, eta_s=(total - done) / rate if rate else None,
                         running_as=getattr(event, "alignment_score", None))
        report(status)

    try:
        result = evaluate.run_from_request(db_path, request, progress=on_progress, cancel=signals.cancel)
    except Cancelled:
        return replace(status, state="interrupted")
    except UserError as exc:
        return replace(status, state="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing run is shown; the app lives on
        return replace(status, state="failed", error=f"{type(exc).__name__}: {exc}")
    if signals.cancel.is_set():
        return replace(status, state="interrupted")
    return replace(status, state="complete", run_id=getattr(result, "run_id", status.run_id))
