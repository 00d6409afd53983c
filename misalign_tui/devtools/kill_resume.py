"""Kill a real ``misalign-tui run`` process with SIGKILL at chosen points, resume it, and compare every stored
number with an uninterrupted run of the same command (issue 13 §2: a resumed run equals an uninterrupted one,
bit for bit, on the same build and machine).

Used by the test suite (tests/test_resume_identical.py) and by the fault test (devtools/fault_test.py). The
kill points are counts of stored items, read by a second connection while the run writes, so what is tested
does not depend on the machine's speed: the process is killed as soon as at least that many items are stored
(or when it finishes first, which counts as "not killed").
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Every stored number of a run, per method: (table, key columns, value columns).
RESULT_TABLES: dict[str, list[tuple[str, str, str]]] = {
    "judge": [("judge_results", "response_id, template", "p_misaligned, flagged, truncated")],
    "preference": [("preference_results", "pair_id, template",
                    "aligned_logprob, aligned_tokens, misaligned_logprob, misaligned_tokens, prefers_aligned, "
                    "truncated"),
                   ("preference_token_logprobs", "pair_id, template",
                    "aligned_logprobs, aligned_lengths, misaligned_logprobs, misaligned_lengths")],
    "generate": [("generations", "prompt_id, template", "text, tokens, seed, truncated"),
                 ("generation_judgments", "prompt_id, dimension, template", "p_misaligned, flagged")],
}
_COUNT_TABLE = {"judge": "judge_results", "preference": "preference_results", "generate": "generations"}


def cli_process(home: Path, args: Sequence[str]) -> subprocess.Popen[str]:
    """``python -m misalign_tui --home HOME ARGS…`` as a child process (its own session, output captured)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    return subprocess.Popen([sys.executable, "-m", "misalign_tui", "--home", str(home), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _read(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """A short-lived reader connection (the run writes meanwhile; WAL lets both proceed)."""
    for _ in range(200):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # no table yet / database not created yet
            if "no such table" not in str(exc) and "unable to open" not in str(exc):
                raise
            time.sleep(0.05)
    raise TimeoutError(f"{db}: cannot read {sql!r}")


def stored_items(db: Path, method: str) -> int:
    """Items of ``method`` stored in the workspace so far (over all runs of that method)."""
    if not db.exists():
        return 0
    return int(_read(db, f"SELECT count(*) FROM {_COUNT_TABLE[method]}")[0][0])


def stored_keys(db: Path, method: str) -> set[tuple[Any, ...]]:
    """(run id, item key…) of every stored item of ``method``."""
    table, keys, _ = RESULT_TABLES[method][0]
    return set(_read(db, f"SELECT run_id, {keys} FROM {table}")) if db.exists() else set()


def stored_numbers(db: Path, run_id: int, method: str) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Every stored result of the run, keyed by item: {table: {key: values}}."""
    out: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    for table, keys, values in RESULT_TABLES[method]:
        nk = len(keys.split(","))
        rows = _read(db, f"SELECT {keys}, {values} FROM {table} WHERE run_id = ? ORDER BY {keys}", (run_id,))
        out[table] = {tuple(r[:nk]): tuple(r[nk:]) for r in rows}
    return out


def run_rows(db: Path) -> list[tuple[Any, ...]]:
    return _read(db, "SELECT id, method, status, items_total, items_done FROM runs ORDER BY id")


@dataclass
class KillReport:
    """What happened to one command under kills."""

    method: str
    kills: int = 0                       # processes killed with SIGKILL mid-run
    finished_early: int = 0              # a kill point the process passed by finishing first
    stored_at_kill: list[int] = field(default_factory=list)
    rows_lost: int = 0                   # items stored before a kill and missing afterwards
    exit_codes: list[int] = field(default_factory=list)   # of the reruns that were not killed
    stderr: str = ""
    # Every commit of a run adds its items to ``runs.items_done`` (in the same transaction as the rows), so the
    # largest jump of their sum between two reads ``poll_s`` apart bounds the finished items a kill at the worst
    # moment throws away (two commits between reads count as one: an upper bound).
    largest_commit: int = 0
    # The longest time between two commits of one process once it committed its first item (it includes any
    # phase that finishes nothing, e.g. loading the judge model of a generate run, and time the process waited
    # for a CPU on a loaded machine).
    longest_commit_gap_s: float = 0.0


def committed_items(db: Path) -> int:
    """Items committed over every run of the workspace (``runs.items_done``, kept with the rows)."""
    if not db.exists():
        return 0
    return int(_read(db, "SELECT coalesce(sum(items_done), 0) FROM runs")[0][0])


def _watch(proc: subprocess.Popen[str], db: Path, method: str, report: KillReport, until: int | None,
           deadline: float, poll_s: float) -> None:
    """Poll while ``proc`` runs, until ``method`` has ``until`` items stored (None: until the process ends),
    noting the largest commit and the longest wait between two commits."""
    last = committed_items(db)
    last_change: float | None = None
    while proc.poll() is None and time.monotonic() < deadline:
        now_committed = committed_items(db)
        now = time.monotonic()
        if now_committed > last:
            report.largest_commit = max(report.largest_commit, now_committed - last)
            if last_change is not None:
                report.longest_commit_gap_s = max(report.longest_commit_gap_s, now - last_change)
            last, last_change = now_committed, now
        if until is not None and stored_items(db, method) >= until:
            return
        time.sleep(poll_s)


def random_kill_points(rng: random.Random, total: int, kills: int = 1) -> Callable[[int], int]:
    """The next kill point: a random count of stored items between what is stored now and the end, spread so
    that ``kills`` points fit in the run (each lands in a random place of the next 1/(kills left) of the rest)."""
    left = [kills]

    def next_point(stored: int) -> int:
        step = max(1, (total - stored) * 2 // (max(1, left[0]) + 1))
        left[0] -= 1
        return stored + rng.randint(1, step)
    return next_point


def run_with_kills(home: Path, args: Sequence[str], method: str, kills: int, next_point: Callable[[int], int], *,
                   timeout_s: float = 600.0, poll_s: float = 0.02) -> KillReport:
    """Start ``args``; SIGKILL it once at least ``next_point(stored)`` items are stored, rerun the same command,
    … ``kills`` times; then rerun it once more without a kill so it completes. Checks at the end that nothing
    stored before a kill was lost (``rows_lost``)."""
    db = home / "db" / "misalign.sqlite"
    report = KillReport(method)
    seen: set[tuple[Any, ...]] = set()
    for _ in range(kills):
        point = next_point(stored_items(db, method))
        proc = cli_process(home, args)
        try:
            _watch(proc, db, method, report, point, time.monotonic() + timeout_s, poll_s)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                report.kills += 1
            else:
                report.finished_early += 1
                report.exit_codes.append(proc.returncode)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
            _, err = proc.communicate()
            report.stderr += err[-2000:]
        kept = stored_keys(db, method)
        report.stored_at_kill.append(len(kept))
        seen |= kept
    final = cli_process(home, args)
    try:
        _watch(final, db, method, report, None, time.monotonic() + timeout_s, poll_s)
        _, err = final.communicate(timeout=30)
    finally:
        if final.poll() is None:
            os.killpg(final.pid, signal.SIGKILL)
            final.wait(30)
    report.exit_codes.append(final.returncode)
    report.stderr += err[-2000:]
    report.rows_lost = len(seen - stored_keys(db, method))
    return report


def compare(a: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]],
            b: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]) -> dict[str, int]:
    """Items missing on either side and items whose stored values differ in any bit (floats compared exactly)."""
    out = {"missing": 0, "extra": 0, "changed": 0, "compared": 0}
    for table in a.keys() | b.keys():
        ra, rb = a.get(table, {}), b.get(table, {})
        out["missing"] += len(ra.keys() - rb.keys())
        out["extra"] += len(rb.keys() - ra.keys())
        for key in ra.keys() & rb.keys():
            out["compared"] += 1
            if ra[key] != rb[key]:
                out["changed"] += 1
    return out


VERDICTS = {"judge_results": "flagged", "generation_judgments": "flagged", "preference_results": "prefers_aligned"}


def verdict_flips(a: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]],
                  b: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]) -> int:
    """Items stored on both sides whose verdict (flagged, or prefers the aligned response) differs."""
    flips = 0
    for table in a.keys() & b.keys():
        if table not in VERDICTS:
            continue
        _, _, values = next(t for ts in RESULT_TABLES.values() for t in ts if t[0] == table)
        at = [v.strip() for v in values.split(",")].index(VERDICTS[table])
        flips += sum(a[table][k][at] != b[table][k][at] for k in a[table].keys() & b[table].keys())
    return flips


def max_abs_difference(a: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]],
                       b: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]) -> float:
    """The largest |difference| between numeric values stored for the same item (0.0 when identical)."""
    worst = 0.0
    for table in a.keys() & b.keys():
        for key in a[table].keys() & b[table].keys():
            for x, y in zip(a[table][key], b[table][key], strict=True):
                if isinstance(x, float) and isinstance(y, float):
                    worst = max(worst, abs(x - y))
    return worst
