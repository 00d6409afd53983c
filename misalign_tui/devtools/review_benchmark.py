"""``misalign-tui bench review``: time per decision on the Review screen — key pressed to the next item painted,
and to the decision committed — on the synthetic store of 1,000,000 result rows (``bench ui``'s store).

Driven headless through ``App.run_test`` (the app ``create_app`` makes), in a fresh child process. The queue is
a stratified sample of a judge run's verdicts, made by the same core call as ``review export --queue run``;
making it is timed too.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REVIEWER = "bench reviewer"


def prepare_queue(home: Path, sample: int) -> dict:
    """The review queue the measurement decides (created, or found again), and how long making it took."""
    from misalign_tui.core.review.decisions import remember_reviewer
    from misalign_tui.core.review.queues import run_queue
    from misalign_tui.core.store import Store
    from misalign_tui.core.workspace import open_workspace

    with Store(open_workspace(home).db_path) as store:
        remember_reviewer(store, REVIEWER)
        run_id = store.conn.execute("SELECT min(id) FROM runs WHERE method = 'judge'").fetchone()[0]
        # a fresh seed each time: a new queue, so the keys decide items nobody decided before
        seed = store.conn.execute("SELECT count(*) FROM review_queues").fetchone()[0]
        started = time.perf_counter()
        queue = run_queue(store, run_id, sample, seed)
        return {"queue_id": queue.id, "queue_items": queue.items, "queue_create_s": round(time.perf_counter() - started, 3)}


async def _measure(home: Path, queue_id: int, keys: int, size: tuple[int, int]) -> dict:
    from misalign_tui.tui.app import create_app
    from misalign_tui.tui.screens.review import ReviewScreen

    app = create_app(home)
    shown: list[float] = []
    stored: list[float] = []
    async with app.run_test(size=size) as pilot:
        await pilot.press("V")
        while not isinstance(app.screen, ReviewScreen):
            await pilot.pause(0.005)
        screen = app.screen
        while screen.writer is None:
            await pilot.pause(0.005)
        screen.open_queue(queue_id)
        while screen.queue is None or screen.queue.id != queue_id or screen.writer is None:
            await pilot.pause(0.005)
        await app.workers.wait_for_complete()
        await pilot.pause()
        for k in range(keys):
            if screen.item is None:
                break
            before = screen.answered
            t0 = time.perf_counter()
            await pilot.press("a" if k % 2 else "m")
            while screen.answered == before:
                await pilot.pause(0.001)
            shown.append(screen.painted_at - t0)
            action = screen.actions[-1]
            while action.stored_at is None:
                await pilot.pause(0.001)
            stored.append(action.stored_at - t0)
            await app.workers.wait_for_complete()  # the figures refresh after each decision, as for a user
    return {"shown_ms": [1000 * s for s in shown], "stored_ms": [1000 * s for s in stored]}


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def measure_in_this_process(home: Path, queue_id: int, keys: int, size: tuple[int, int] = (120, 40)) -> dict:
    import asyncio

    out = asyncio.run(_measure(home, queue_id, keys, size))
    shown, stored = out["shown_ms"], out["stored_ms"]
    return {
        "decisions": len(shown),
        "next_item_median_ms": round(statistics.median(shown), 1),
        "next_item_p90_ms": round(_p90(shown), 1),
        "next_item_max_ms": round(max(shown), 1),
        "stored_median_ms": round(statistics.median(stored), 1),
        "stored_max_ms": round(max(stored), 1),
    }


def measure(home: Path, queue_id: int, keys: int) -> dict:
    """Run the measurement in a fresh interpreter."""
    code = ("import json, sys; from pathlib import Path; from misalign_tui.devtools.review_benchmark import "
            "measure_in_this_process as m; print(json.dumps(m(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(home), str(queue_id), str(keys)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        from misalign_tui.core.errors import UserError

        raise UserError(f"bench review: the measuring process failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
