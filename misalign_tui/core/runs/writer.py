"""Finished items reach the database here: buffered, committed in small transactions with the run's
``items_done`` and heartbeat, and reported as ``RunProgress`` events to a callback from the working thread
(the app posts them as messages, the CLI draws them)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store, database_error

COMMIT_EVERY_S = 1.0
COMMIT_EVERY_ROWS = 16

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
    """Buffers finished rows and commits them (with items_done and the heartbeat) in small transactions."""

    def __init__(self, store: Store, run_id: int, method: str, done: int, total: int,
                 progress: ProgressCallback | None, phase: str = "scoring") -> None:
        self.store, self.run_id, self.method = store, run_id, method
        self.done, self.total = done, total
        self.start_done = done
        self.t0 = time.monotonic()
        self.last_commit = self.t0
        self.rows: list[Row] = []
        self.pending_items = 0
        self.progress = progress
        self.phase = phase

    def start(self, done: int) -> None:
        """Scoring begins with ``done`` items already stored (a resumed run)."""
        self.done = self.start_done = done
        self.phase = "scoring"
        self.t0 = time.monotonic()

    def add(self, sql: str, row: tuple[Any, ...], items: int = 1) -> None:
        self.add_many([(sql, row)], items)

    def add_many(self, rows: list[Row], items: int = 1) -> None:
        self.rows.extend(rows)
        self.pending_items += items
        if self.pending_items >= COMMIT_EVERY_ROWS or time.monotonic() - self.last_commit >= COMMIT_EVERY_S:
            self.commit()

    def commit(self, *, report: bool = True) -> None:
        if self.rows:
            try:
                with self.store.transaction() as c:
                    for sql, row in self.rows:
                        c.execute(sql, row)
                    c.execute("UPDATE runs SET items_done = items_done + ?, heartbeat_at = ? WHERE id = ?",
                              (self.pending_items, time.time(), self.run_id))
            except sqlite3.DatabaseError as exc:
                raise database_error(self.store.path, exc) from exc
            self.done += self.pending_items
        self.rows, self.pending_items = [], 0
        self.last_commit = time.monotonic()
        if report:
            self.report()

    def commit_quietly(self) -> None:
        """Commit what is buffered while another error is on its way out (that error is the one to report); no
        progress callback runs here, so a second Ctrl+C cannot interrupt the cleanup."""
        try:
            self.commit(report=False)
        except Exception:  # noqa: BLE001 - keep the original error
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
        elapsed = time.monotonic() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        self.progress(RunProgress(self.run_id, self.method, self.done, self.total, rate, eta, phase or self.phase))


def sync_done(store: Store, run_id: int, method: str) -> None:
    """items_done from the result rows themselves (they are the truth after a kill)."""
    try:
        with store.transaction() as c:
            c.execute(f"UPDATE runs SET items_done = ({_DONE_SQL[method]}) WHERE id = ?", (run_id, run_id))
    except (UserError, sqlite3.DatabaseError):
        pass


def stored_items(store: Store, run_id: int, method: str) -> int:
    return int(store.conn.execute(_DONE_SQL[method], (run_id,)).fetchone()[0])
