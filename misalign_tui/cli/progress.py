"""Progress of long work (a run, a build) on stderr.

On a terminal a run draws Rich's live bar. When stderr is not a terminal (a file, a pipe, a CI log) a live bar
writes nothing until it ends, so there ``ProgressLog`` writes plain lines instead: one when the work starts or
changes phase, one at least every ``LOG_EVERY_S`` seconds while it goes on — repeated with the time since the
last finished item when no new progress arrived (a timer thread) — and one at the end.
Every clock read goes through ``clock`` so tests drive it with times they choose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from misalign_tui.core.text import printable

LOG_EVERY_S = 10.0


def duration_text(seconds: float | None) -> str:
    """``42 s``, ``8 min 07 s``, ``2 h 05 min``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressLog:
    """Plain progress lines, at most one per ``every_s`` unless forced, at least one per ``every_s`` while
    ``start``-ed (the timer repeats the last state with its age)."""

    def __init__(self, stream: TextIO, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.every_s = every_s
        self.clock = clock
        self.lock = threading.Lock()
        self.last_written: float | None = None   # when a line was last written
        self.last_state: str | None = None       # the latest state
        self.state_since: float | None = None    # when that state arrived
        self.pending = False                     # the latest state is not written yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self, now: float | None = None) -> bool:
        """Whether a new state would be written now (the caller may then refresh what costs a query)."""
        now = self.clock() if now is None else now
        return self.last_written is None or now - self.last_written >= self.every_s

    def update(self, line: str, now: float | None = None, *, force: bool = False) -> bool:
        """The latest state; written when forced or due, else kept for the timer. Returns whether it was written."""
        now = self.clock() if now is None else now
        with self.lock:
            if line != self.last_state:
                self.last_state, self.state_since, self.pending = line, now, True
            if force or self.last_written is None or now - self.last_written >= self.every_s:
                self._write(line, now)
                return True
            return False

    def tick(self, now: float | None = None) -> bool:
        """The timer: when no line was written for ``every_s``, write the latest state — with its age when it has
        not changed since it was last written."""
        now = self.clock() if now is None else now
        with self.lock:
            if self.last_state is None or self.last_written is None or now - self.last_written < self.every_s:
                return False
            if self.pending:
                self._write(self.last_state, now)
            else:
                age = now - (self.state_since if self.state_since is not None else now)
                self._write(f"{self.last_state} (no change for {duration_text(age)})", now)
            return True

    def _write(self, line: str, now: float) -> None:
        self.stream.write(printable(line) + "\n")
        self.stream.flush()
        self.last_written, self.pending = now, False

    def start(self) -> ProgressLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="progress-log", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    def __enter__(self) -> ProgressLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
