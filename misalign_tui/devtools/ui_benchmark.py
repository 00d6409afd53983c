"""``misalign-tui bench ui``: first paint, filter-change repaint and memory of the app on a large store.

Driven headless through ``App.run_test`` (the same app the user gets, from ``create_app``). Measured in a
fresh child process so that building the store does not count towards the app's memory.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

FILTER_STEPS: list[tuple[str, str | None]] = [
    ("#f-dimension", "safety"), ("#f-type", "relation"), ("#f-dimension", "value"), ("#f-type", None),
    ("#f-dimension", "cultural"), ("#f-metric", "coverage"), ("#f-dimension", None), ("#f-type", "object"),
    ("#f-metric", "ffr"), ("#f-type", None), ("#f-grouping", "semantic_type"), ("#f-metric", "alignment_score"),
    ("#f-dimension", "safety"), ("#f-grouping", "dimension"), ("#f-dimension", None),
    ("#f-domain", "Animal Abuse"), ("#f-domain", None), ("#f-type", "attribute"), ("#f-type", None),
    ("#f-metric", "trade_off_rate"), ("#f-metric", "alignment_score"),
]


def synthetic_ready(db_path: Path, responses: int, models: int) -> bool:
    from misalign_tui.core.store import Store

    if not db_path.exists():
        return False
    with Store(db_path) as store:
        name = f"synthetic-{responses}-0"
        runs = store.conn.execute(
            "SELECT count(*) FROM runs r JOIN benchmarks b ON b.id = r.benchmark_id WHERE b.name = ? AND "
            "r.status = 'complete'", (name,)).fetchone()[0]
    return runs >= models


def build_store(home: Path, responses: int, models: int, say=lambda _m: None) -> dict:
    """Create (or reuse) the synthetic workspace; returns what it holds."""
    from misalign_tui.core.store import Store
    from misalign_tui.core.workspace import open_workspace
    from misalign_tui.devtools.synthetic_store import populate_synthetic_store

    ws = open_workspace(home).ensure()
    reused = synthetic_ready(ws.db_path, responses, models)
    seconds = 0.0
    if not reused:
        ws.db_path.unlink(missing_ok=True)
        started = time.perf_counter()
        with Store(ws.db_path) as store:
            populate_synthetic_store(store, responses=responses, models=models, progress=say)
        seconds = time.perf_counter() - started
    with Store(ws.db_path) as store:
        rows = store.conn.execute("SELECT count(*) FROM judge_results").fetchone()[0]
        resp = store.conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    return {"store_reused": reused, "store_build_s": round(seconds, 1), "responses": resp, "result_rows": rows}


async def _measure(home: Path, size: tuple[int, int]) -> dict:
    from textual.widgets import DataTable, Select

    from misalign_tui.tui.app import create_app
    from misalign_tui.tui.screens.dashboard import DashboardScreen
    from misalign_tui.tui.screens.explore import ExploreScreen

    started = time.perf_counter()
    app = create_app(home)
    async with app.run_test(size=size) as pilot:
        while not (isinstance(app.screen, DashboardScreen) and app.screen.query_one("#runs", DataTable).row_count):
            await pilot.pause(0.005)
        dashboard_s = time.perf_counter() - started
        await pilot.press("e")
        while not (isinstance(app.screen, ExploreScreen) and app.screen.loads and app.screen.data.models):
            await pilot.pause(0.005)
        first_paint = app.screen.painted_at - started
        screen = app.screen
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        timings = []
        for selector, value in FILTER_STEPS:
            sel = screen.query_one(selector, Select)
            before = screen.loads
            t0 = time.perf_counter()
            if value is None:
                sel.clear()
            else:
                sel.value = value
            while screen.loads == before:
                await pilot.pause(0.001)
            timings.append(screen.painted_at - t0)  # stamped after the refresh that shows the new data
            await pilot.app.workers.wait_for_complete()
    return {"dashboard_s": dashboard_s, "first_paint_s": first_paint, "filter_ms": [t * 1000 for t in timings]}


def measure_in_this_process(home: Path, size: tuple[int, int] = (120, 40)) -> dict:
    import asyncio

    out = asyncio.run(_measure(home, size))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    timings = out.pop("filter_ms")
    return {
        "first_paint_s": round(out["first_paint_s"], 3),
        "dashboard_s": round(out["dashboard_s"], 3),
        "filter_median_ms": round(statistics.median(timings), 1),
        "filter_p90_ms": round(sorted(timings)[int(0.9 * (len(timings) - 1))], 1),
        "filter_max_ms": round(max(timings), 1),
        "filter_changes": len(timings),
        "peak_rss_mb": round(rss / 1024, 1),
    }


def measure(home: Path) -> dict:
    """Run the measurement in a fresh interpreter (memory counts the app alone)."""
    code = ("import json, sys; from pathlib import Path; from misalign_tui.devtools.ui_benchmark import "
            "measure_in_this_process as m; print(json.dumps(m(Path(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        from misalign_tui.core.errors import UserError

        raise UserError(f"bench ui: the measuring process failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
