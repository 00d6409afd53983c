"""What every build step shares: the build's row, its step states, progress reports, engines per role.

A step is resumable because each finished unit of work is committed with a unique key (a prompt key, a
candidate's unit + attempt, a pair unit) and a restart skips what exists. A step's row says whether it is done,
how many units it has and the counts it produced.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from misalign_tui.core.build.recipe import Recipe
from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.models.registry import ModelInfo
from misalign_tui.core.store import Store

BUILD_N_CTX = 2048  # few-shot prompts and short answers fit; a smaller KV cache loads faster
STEPS = ("seed", "classify", "expand", "dedup", "pairs", "publish")


def free_cpu_threads(window_s: float = 0.25) -> int:
    """Threads for llama.cpp: the CPUs this process may use, less those other work keeps busy now.

    llama.cpp's worker threads wait for each other at every layer; when another process holds a core, two
    threads on two cores run slower than one (measured here with the default model under a load average of 8
    on 2 cores: 0.8 against 5.9 generated tokens/s). Busy CPUs are read from ``/proc/stat`` over ``window_s``
    while this process waits, not from the load average: that one-minute average still counts a command that
    has just finished, and a build started after one ran on one thread to the end (the demo: 256 s against
    158 s). Where ``/proc/stat`` is missing, every CPU. A model's own ``n_threads`` setting overrides this.
    """
    from misalign_tui.core.inference.engine import default_threads

    cpus = default_threads()
    busy = busy_cpus(window_s)
    return cpus if busy is None else threads_beside(cpus, busy)


def threads_beside(cpus: int, busy: float) -> int:
    """Threads for ``cpus`` usable CPUs when other work keeps ``busy`` CPUs busy: the rest, at least one."""
    return max(1, min(cpus, cpus - round(busy)))


def busy_cpus(window_s: float, stat: str = "/proc/stat") -> float | None:
    """How many of the machine's CPUs were busy (not idle or waiting on I/O) over the next ``window_s``."""
    try:
        with open(stat, encoding="ascii") as f:
            first = f.readline()
        time.sleep(window_s)
        with open(stat, encoding="ascii") as f:
            second = f.readline()
        return busy_between(first, second, os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        return None


def busy_between(first: str, second: str, cpus: int) -> float | None:
    """Busy CPUs between two readings of ``/proc/stat``'s ``cpu`` line (user nice system idle iowait irq
    softirq steal, in ticks summed over the CPUs)."""
    a = [int(x) for x in first.split()[1:9]]
    b = [int(x) for x in second.split()[1:9]]
    total = sum(b) - sum(a)
    if total <= 0:
        return None
    idle = (b[3] + b[4]) - (a[3] + a[4])
    return (1 - idle / total) * cpus


class AwaitingReview(UserError):
    """The build stopped at stage 2 because reviewers (``checker = "human"``) have candidates to decide;
    running it again once they are decided resumes from their decisions. Not a failure: exit code 3."""

    exit_code = 3

    def __init__(self, build_id: int, queue: str, items: int) -> None:
        self.build_id, self.queue, self.items = build_id, queue, items
        super().__init__(f"build {build_id} paused at stage 2: {items} item(s) of review queue {queue!r} await a "
                         "decision (the app's Review screen, or misalign-tui review export --queue build --build "
                         f"{build_id} -o FILE and review import); run the build again to resume from the decisions")


@dataclass(frozen=True)
class StepProgress:
    """One progress report: ``done`` of ``total`` units, with rate (units/s) and ETA over this session."""

    step: str
    done: int
    total: int
    rate: float | None
    eta_s: float | None
    counts: dict[str, int]
    message: str = ""


ProgressFn = Callable[[StepProgress], None]


@dataclass
class BuildContext:
    store: Store
    build_id: int
    recipe: Recipe
    models: dict[str, ModelInfo]  # role -> model; generators as generator:0, generator:1, ...
    progress: ProgressFn | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    _engines: dict[str, Any] = field(default_factory=dict)

    @property
    def generators(self) -> list[ModelInfo]:
        return [m for role, m in sorted(self.models.items()) if role.startswith("generator:")]

    def engine(self, role: str) -> Any:
        """The engine for a role's model, loaded once per model file and shared between roles."""
        return self.engine_for(self.models[role])

    def engine_for(self, model: ModelInfo) -> Any:
        """One engine per model file (and chat template), with the model's own GPU-layer and thread settings."""
        from misalign_tui.core.inference.engine import Engine, EngineSettings

        key = f"{model.path or model.name}\0{model.effective_chat_template}"
        if key not in self._engines:
            settings = EngineSettings(n_ctx=BUILD_N_CTX, n_gpu_layers=model.n_gpu_layers,
                                      n_threads=model.n_threads or free_cpu_threads())
            if not model.path:
                raise UserError(f"model {model.name}: the build runs local GGUF files only")
            self._engines[key] = Engine(model.path, chat_template=model.effective_chat_template, settings=settings)
        return self._engines[key]

    def close(self) -> None:
        for engine in self._engines.values():
            close = getattr(engine, "close", None)
            if callable(close):
                close()
        self._engines.clear()

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    # -- step state -------------------------------------------------------------------------------------

    def step_done(self, step: str) -> bool:
        row = self.store.conn.execute("SELECT status FROM build_steps WHERE build_id = ? AND step = ?",
                                      (self.build_id, step)).fetchone()
        return bool(row and row[0] == "done")

    def start_step(self, step: str, total: int) -> None:
        with self.store.transaction() as c:
            c.execute(
                "INSERT INTO build_steps(build_id, step, status, items_total, started_at) "
                "VALUES (?, ?, 'running', ?, strftime('%Y-%m-%dT%H:%M:%fZ','now')) "
                "ON CONFLICT(build_id, step) DO UPDATE SET status = 'running', items_total = excluded.items_total",
                (self.build_id, step, total),
            )

    def finish_step(self, step: str, counts: dict[str, int]) -> None:
        with self.store.transaction() as c:
            c.execute("UPDATE build_steps SET status = 'done', counts_json = ?, items_done = items_total, "
                      "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE build_id = ? AND step = ?",
                      (json.dumps(counts, sort_keys=True), self.build_id, step))

    def step_counts(self, step: str) -> dict[str, int]:
        row = self.store.conn.execute("SELECT counts_json FROM build_steps WHERE build_id = ? AND step = ?",
                                      (self.build_id, step)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}


class ProgressMeter:
    """Rate and ETA for a step, counting only units done in this session (resumed units are instant)."""

    def __init__(self, ctx: BuildContext, step: str, total: int, already: int = 0) -> None:
        self.ctx, self.step, self.total = ctx, step, total
        self.done = already
        self._start_done = already
        self._t0 = time.monotonic()
        self.counts: dict[str, int] = {}
        self.report()  # the step's size at once, before its first unit finishes

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def tick(self, n: int = 1, message: str = "") -> None:
        self.done += n
        with self.ctx.store.transaction() as c:
            c.execute("UPDATE build_steps SET items_done = ? WHERE build_id = ? AND step = ?",
                      (self.done, self.ctx.build_id, self.step))
        self.report(message)

    def report(self, message: str = "") -> None:
        if self.ctx.progress is None:
            return
        elapsed = time.monotonic() - self._t0
        fresh = self.done - self._start_done
        rate = fresh / elapsed if elapsed > 0 and fresh else None
        eta = (self.total - self.done) / rate if rate else None
        self.ctx.progress(StepProgress(self.step, self.done, self.total, rate, eta, dict(self.counts), message))
