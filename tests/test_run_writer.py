"""The run writer commits finished items within about a second whatever the working thread is doing (issue 13
§2: results came in bursts of a whole window, so one kill threw away up to 31 finished items)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from misalign_tui.core.errors import UserError
from misalign_tui.core.runs.writer import ResultWriter
from misalign_tui.core.store import Store
from tests.eval_fixtures import make_store

_SQL = ("INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged, truncated) "
        "VALUES (?, ?, ?, ?, ?, ?)")


def _run(store: Store, benchmark_id: int) -> int:
    with store.transaction() as c:
        model = c.execute("INSERT INTO models(name, url, remote_model) VALUES ('m', 'http://127.0.0.1:1', 'm')"
                          ).lastrowid
        return int(c.execute("INSERT INTO runs(model_id, model_sha256, benchmark_id, method, params_json, "
                             "params_hash) VALUES (?, 'x', ?, 'judge', '{}', 'h')", (model, benchmark_id)).lastrowid)


def _visible(db: Path, run_id: int) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM judge_results WHERE run_id = ?", (run_id,)).fetchone()[0]


def test_one_finished_item_reaches_the_database_while_the_working_thread_is_busy(home: Path) -> None:
    db, bid = make_store(home)
    with Store(db) as store:
        run_id = _run(store, bid)
        rid = store.conn.execute("SELECT min(id) FROM responses").fetchone()[0]
        writer = ResultWriter(store, run_id, "judge", 0, 10, None)
        writer.start(0)
        writer.add(_SQL, (run_id, rid, 0, 0.25, 0, 0))
        # the working thread now decodes for a long time and never calls the writer: another process sees the
        # item anyway (the committer commits at least every second)
        deadline = time.monotonic() + 30
        while _visible(db, run_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _visible(db, run_id) == 1
        assert store.conn.execute("SELECT items_done FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == 1
        writer.add(_SQL, (run_id, rid, 1, 0.5, 1, 0))
        writer.commit()
        assert _visible(db, run_id) == 2 and writer.done == 2


def test_a_failed_commit_is_raised_in_the_working_thread(home: Path) -> None:
    db, bid = make_store(home)
    with Store(db) as store:
        run_id = _run(store, bid)
        writer = ResultWriter(store, run_id, "judge", 0, 10, None)
        writer.start(0)
        writer.add(_SQL, (run_id, 10**9, 0, 0.25, 0, 0))  # no such response: the foreign key refuses it
        with pytest.raises(UserError, match="misalign.sqlite"):
            writer.commit()
        assert _visible(db, run_id) == 0
