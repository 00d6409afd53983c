"""The runs in a workspace: one run's summary, listings, and the one rule for *the run to show* for a model.

**The run to show** (``runs_to_show``): for each model, its latest run (highest id) that has results (at
least one result row in the metric rollups, complete or not), among the runs of the methods and benchmark asked for. Later runs of the
model without results (just started, interrupted before their first item, failed) are skipped, and returned
in ``skipped`` so every face can say which runs it passed over. `report`, `sessions report`, Explore, Compare and
the audit report all call it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.runs.identity import lease_is_live
from misalign_tui.core.store import RUN_SQL, RunInfo, Store


@dataclass(frozen=True)
class RunSelection:
    """The run to show per model (in model-name order), and the later runs passed over for having no results."""

    runs: list[RunInfo] = field(default_factory=list)
    skipped: list[RunInfo] = field(default_factory=list)

    def by_model(self) -> dict[str, int]:
        return {r.model: r.id for r in self.runs}

    def skipped_note(self) -> str:
        """One line naming the runs passed over, or ''."""
        if not self.skipped:
            return ""
        items = ", ".join(f"run {r.id} ({r.model}, {r.method}, {r.status}, no results)" for r in self.skipped)
        return f"skipped runs without results: {items}"


_HAS_RESULTS = "EXISTS (SELECT 1 FROM rollup_counts rc WHERE rc.run_id = r.id)"


def runs_to_show(store: Store, *, models: Iterable[str] | None = None, methods: Sequence[str] | None = None,
                 benchmark_id: int | None = None, require: bool = False) -> RunSelection:
    """The run to show for each model (see the module docstring). ``require``: a model named in ``models`` that
    has no run with results is an error (the CLI's ``--model``); otherwise it is left out."""
    where: list[str] = ["1"]
    args: list[Any] = []
    if methods:
        where.append(f"r.method IN ({','.join('?' * len(methods))})")
        args += list(methods)
    if benchmark_id is not None:
        where.append("r.benchmark_id = ?")
        args.append(benchmark_id)
    cond = " AND ".join(where)
    shown = [RunInfo.from_row(r) for r in store.conn.execute(
        RUN_SQL + f" WHERE r.id IN (SELECT max(r.id) FROM runs r WHERE {cond} AND {_HAS_RESULTS} "
        "GROUP BY r.model_id) ORDER BY m.name, r.id", args)]
    latest = {r.model_id: r.id for r in shown}
    skipped = [RunInfo.from_row(r) for r in store.conn.execute(
        RUN_SQL + f" WHERE {cond} AND NOT {_HAS_RESULTS} ORDER BY r.id", args)
        if r["model_id"] not in latest or r["id"] > latest[r["model_id"]]]
    if models is not None:
        wanted = list(dict.fromkeys(models))
        by_name = {r.model: r for r in shown}
        missing = [m for m in wanted if m not in by_name]
        if missing and require:
            known = ", ".join(sorted(by_name)) or "none yet"
            raise UserError(f"model {missing[0]!r} has no run with results; models with results: {known}")
        shown = [by_name[m] for m in wanted if m in by_name]
        skipped = [r for r in skipped if r.model in wanted]
    return RunSelection(shown, skipped)


def resumable_runs(store: Store, limit: int = 50) -> list[RunInfo]:
    """Interrupted and failed runs, newest first: what the Run screen offers to resume."""
    return [RunInfo.from_row(r) for r in store.conn.execute(
        RUN_SQL + " WHERE r.status IN ('interrupted', 'failed') ORDER BY r.id DESC LIMIT ?", (limit,))]


# -- listings ----------------------------------------------------------------------------------------------------

RUN_FIELDS = ("id", "model", "benchmark", "method", "status", "items_total", "items_done", "templates",
              "started_at", "finished_at")


def shown_status(store: Store, run: RunInfo) -> str:
    """A run's status as every face shows it: a 'running' run whose process died (kill -9, a restart) reads
    'interrupted' — the same command resumes it."""
    if run.status != "running":
        return run.status
    row = store.conn.execute("SELECT id, lease_pid, lease_host, heartbeat_at FROM runs WHERE id = ?",
                             (run.id,)).fetchone()
    return "running" if row is not None and lease_is_live(row, socket.gethostname()) else "interrupted"


def list_runs(store: Store, run_id: int | None = None) -> list[dict[str, Any]]:
    """Every run (or one) as plain data; a 'running' run whose process died reads 'interrupted'."""
    sql = ("SELECT r.*, m.name AS model, b.name AS benchmark, b.version AS benchmark_version, jm.name AS judge_model "
           "FROM runs r JOIN models m ON m.id = r.model_id JOIN benchmarks b ON b.id = r.benchmark_id "
           "LEFT JOIN models jm ON jm.id = r.judge_model_id")
    rows = store.conn.execute(sql + (" WHERE r.id = ?" if run_id is not None else "") + " ORDER BY r.id",
                              (run_id,) if run_id is not None else ()).fetchall()
    host = socket.gethostname()
    out = []
    for r in rows:
        d = {f: r[f] for f in RUN_FIELDS}
        if d["status"] == "running" and not lease_is_live(r, host):
            d["status"] = "interrupted"  # its process died (kill -9); the same command resumes it
        d.update(model_sha256=r["model_sha256"], benchmark_version=r["benchmark_version"],
                 judge_model=r["judge_model"], error=r["error"],
                 params=json.loads(r["params_json"]) if r["params_json"] else None,
                 provenance=json.loads(r["provenance_json"]) if r["provenance_json"] else None)
        out.append(d)
    return out


def get_run(store: Store, run_id: int) -> dict[str, Any]:
    rows = list_runs(store, run_id)
    if not rows:
        raise UserError(f"run {run_id} not found (see misalign-tui runs list)")
    run = rows[0]
    run["templates_text"] = [dict(template=t, name=n, text=x) for t, n, x in store.conn.execute(
        "SELECT template, name, text FROM run_templates WHERE run_id = ? ORDER BY template", (run_id,))]
    return run


def linked_judge_run(store: Store, run_id: int) -> int | None:
    """A generate run's link to its judge model's own judge run on the same items."""
    raw = store.conn.execute("SELECT provenance_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    value = json.loads(raw).get("judge_model_judge_run_id") if raw else None
    return int(value) if value is not None else None
