"""Finished items reach the database here: buffered, committed in small transactions with the run's
``items_done`` and heartbeat, and reported as ``RunProgress`` events to a callback from the working thread
(the app posts them as messages, the CLI draws them).

A committer thread commits what is buffered at least every ``COMMIT_EVERY_S`` (and at once when
``COMMIT_EVERY_ROWS`` items wait), whatever the working thread is doing: a decode step of a large model can take
tens of seconds, and a finished item must not wait for it, so one kill loses about a second of finished work
(plus the items in flight). It also renews the run's heartbeat while nothing finishes (a long generation). The
progress callback runs in the working thread only (a pause blocks there; a Ctrl+C raised there stops the run).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store, database_error

COMMIT_EVERY_S = 1.0
COMMIT_EVERY_ROWS = 16
HEARTBEAT_EVERY_S = 30.0
REPORT_EVERY_S = 0.25

_DONE_SQL = {"judge": "SELECT count(*) FROM judge_results WHERE run_id = ?",
             "preference": "SELECT count(*) FROM preference_results WHERE run_id = ?",
             "generate": "SELECT count(*) FROM generations WHERE run_id = ?"}


@dataclass(frozen=True)
class RunProgress:
    """One progress event; safe to hand to another thread (immutable, no textual)."""

    run_id: int
    method: str
    items_done: int
    items_total: int
    items_per_s: float  # over this session (resumed items excluded)
    eta_s: float | None
    phase: str  # "loading", "scoring", "judge-model", "done"


ProgressCallback = Callable[[RunProgress], None]
Row = tuple[str, tuple[Any, ...]]


class ResultWriter:
    """Buffers finished rows; a committer thread commits them (with items_done and the heartbeat) in small
    transactions. ``start`` starts it, ``commit`` (or ``commit_quietly``) stops it and commits the rest."""

    def __init__(self, store: Store, run_id: int, method: str, done: int, total: int,
                 progress: ProgressCallback | None, phase: str = "scoring") -> None:
        self.store, self.run_id, self.method = store, run_id, method
        self.done, self.total = done, total  # done: items committed
        self.start_done = done
        self.t0 = time.monotonic()
        self.rows: list[Row] = []
        self.pending_items = 0
        self.progress = progress
        self.phase = phase
        self._buffer_lock = threading.Lock()  # rows, pending_items
        self._commit_lock = threading.Lock()  # one commit at a time, in buffer order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._last_write = time.monotonic()
        self._reported = (-1, 0.0)  # (done, when) of the last progress event

    def start(self, done: int) -> None:
        """Scoring begins with ``done`` items already stored (a resumed run); the committer starts."""
        self.done = self.start_done = done
        self.phase = "scoring"
        self.t0 = time.monotonic()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._committer, name=f"run-{self.run_id}-commit", daemon=True)
            self._thread.start()

    def add(self, sql: str, row: tuple[Any, ...], items: int = 1) -> None:
        self.add_many([(sql, row)], items)

    def add_many(self, rows: list[Row], items: int = 1) -> None:
        """Buffer one finished item's rows (called by the working thread)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        with self._buffer_lock:
            self.rows.extend(rows)
            self.pending_items += items
            full = self.pending_items >= COMMIT_EVERY_ROWS
        if self._thread is None:
            if full:
                self._write()
        elif full:
            self._wake.set()
        done, when = self._reported
        if self.done != done or time.monotonic() - when >= REPORT_EVERY_S:
            self.report()

    def _committer(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(COMMIT_EVERY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not self._write() and time.monotonic() - self._last_write >= HEARTBEAT_EVERY_S:
                    self._beat()
            except BaseException as exc:  # noqa: BLE001 - handed to the working thread at its next add
                self._error = exc
                return

    def _write(self) -> bool:
        """Commit what is buffered in one transaction; False when there was nothing."""
        with self._commit_lock:
            with self._buffer_lock:
                rows, items = self.rows, self.pending_items
                self.rows, self.pending_items = [], 0
            if not rows:
                return False
            try:
                with self.store.transaction() as c:
                    for sql, row in rows:
                        c.execute(sql, row)
                    c.execute("UPDATE runs SET items_done = items_done + ?, heartbeat_at = ? WHERE id = ?",
                              (items, time.time(), self.run_id))
            except (sqlite3.DatabaseError, UserError) as exc:
                with self._buffer_lock:  # kept for a later try (the final commit)
                    self.rows, self.pending_items = rows + self.rows, items + self.pending_items
                if isinstance(exc, UserError):
                    raise
                raise database_error(self.store.path, exc) from exc
            self.done += items
            self._last_write = time.monotonic()
            return True

    def _beat(self) -> None:
        with self._commit_lock, self.store.transaction() as c:
            c.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time(), self.run_id))
        self._last_write = time.monotonic()

    def _stop_committer(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join()

    def commit(self, *, report: bool = True) -> None:
        """Stop the committer and commit everything buffered (the end of scoring, or before an error is
        reported); raises what the committer met, if anything."""
        self._stop_committer()
        error, self._error = self._error, None
        self._write()
        if error is not None:
            raise error
        if report:
            self.report()

    def commit_quietly(self) -> None:
        """Commit what is buffered while another error is on its way out (that error is the one to report); no
        progress callback runs here, so a second Ctrl+C cannot interrupt the cleanup."""
        try:
            self.commit(report=False)
        except BaseException:  # noqa: BLE001 - keep the original error
            pass

    def record_timing(self) -> None:
        """Add this session's scoring time and items to the run's provenance (``timing``): the measured speed the
        quantization ladder shows, summed over resumed sessions; model loading is not counted."""
        seconds = time.monotonic() - self.t0
        items = self.done - self.start_done
        if items <= 0:
            return
        try:
            with self.store.transaction() as c:
                raw = c.execute("SELECT provenance_json FROM runs WHERE id = ?", (self.run_id,)).fetchone()[0]
                prov = json.loads(raw) if raw else {}
                t = prov.get("timing") or {}
                prov["timing"] = {"scoring_seconds": round(float(t.get("scoring_seconds", 0.0)) + seconds, 3),
                                  "items_scored": int(t.get("items_scored", 0)) + items,
                                  "sessions": int(t.get("sessions", 0)) + 1}
                c.execute("UPDATE runs SET provenance_json = ? WHERE id = ?", (json.dumps(prov), self.run_id))
        except (UserError, sqlite3.DatabaseError, ValueError):
            pass  # a speed figure is not worth failing a finished run over

    def report(self, phase: str | None = None) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        done = self.done
        self._reported = (done, now)
        elapsed = now - self.t0
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        self.progress(RunProgress(self.run_id, self.method, done, self.total, rate, eta, phase or self.phase))


def sync_done(store: Store, run_id: int, method: str) -> None:
    """items_done from the result rows themselves (they are the truth after a kill)."""
    try:
        with store.transaction() as c:
            c.execute(f"UPDATE runs SET items_done = ({_DONE_SQL[method]}) WHERE id = ?", (run_id, run_id))
    except (UserError, sqlite3.DatabaseError):
        pass


def stored_items(store: Store, run_id: int, method: str) -> int:
    return int(store.conn.execute(_DONE_SQL[method], (run_id,)).fetchone()[0])
