"""Runs started from the app on the tiny random-weight model (real llama.cpp): progress messages, completion,
numbers in the explorer, pause, cancel, resume, and quitting during a run. No sleeps: workers are awaited and
the pause/cancel points are driven from the message hook."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, SelectionList

from misalign_tui.core import metrics
from misalign_tui.core.models.registry import register_file
from misalign_tui.core.store import Store
from misalign_tui.tui.app import create_app
from misalign_tui.tui.messages import RunFinished, RunProgressed
from misalign_tui.tui.screens.dialogs import ConfirmQuit, Stopping
from misalign_tui.tui.screens.explore import ExploreScreen
from misalign_tui.tui.screens.run import RunScreen
from misalign_tui.tui.widgets.tables import FittedTable
from tests.tui_fixtures import SIZE


async def settle(pilot) -> None:
    for _ in range(2):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def _register(home: Path, model: Path) -> str:
    from misalign_tui.core.workspace import open_workspace

    with Store(open_workspace(home).ensure().db_path) as store:
        return register_file(store, model).name


async def _start_run(pilot, model: str, limit: str, templates: str = "1") -> None:
    await pilot.press("r")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    models = screen.query_one("#run-models", SelectionList)
    models.deselect_all()
    models.select(model)
    screen.query_one("#run-limit", Input).value = limit
    screen.query_one("#run-templates", Input).value = templates
    await pilot.press("ctrl+r")


async def test_run_from_the_ui_finishes_and_its_numbers_reach_the_explorer(home: Path, tiny_chat_model: Path) -> None:
    name = _register(home, tiny_chat_model)
    events: list[tuple[str, str, int]] = []

    def hook(message) -> None:
        if isinstance(message, RunProgressed | RunFinished):
            st = message.progress if isinstance(message, RunProgressed) else message.status
            events.append((type(message).__name__, st.state, st.done))

    app = create_app(home)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await _start_run(pilot, name, limit="4")
        await settle(pilot)
        status = app.run_statuses[f"{name}/auto"]
        assert status.state == "complete", status.error
        assert status.request.method == "judge"  # auto: the model has a chat template
        assert status.done == status.total > 0
        rows = app.screen.query_one("#run-progress", FittedTable).shown_rows
        assert rows[0][:4] == [name, "judge", "complete", f"{status.done}/{status.total}"]

        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, ExploreScreen)
        with Store(home / "db" / "misalign.sqlite") as store:
            expected = {r.group: r.alignment_score for r in metrics.profile(store, status.run_id, group_by="dimension")}
        shown = {r[0]: r[1] for r in app.screen.query_one("#table-grouped", FittedTable).shown_rows}
        assert shown and set(shown) == set(expected)
        for dim, value in expected.items():
            assert shown[dim] == ("n/a" if value is None else f"{100 * value:.1f}")
    assert events[0][:2] == ("RunProgressed", "running")
    assert events[-1][:2] == ("RunFinished", "complete")
    assert all(e[0] == "RunProgressed" for e in events[:-1])


async def test_pause_then_quit_asks_and_leaves_a_resumable_run(home: Path, tiny_chat_model: Path) -> None:
    name = _register(home, tiny_chat_model)
    app = create_app(home)
    paused: list[int] = []
    on_top_when_stopped: list[str] = []

    def hook(message) -> None:
        # pause as soon as the first item is scored: the worker then blocks between items, deterministically
        if isinstance(message, RunProgressed) and message.progress.done > 0 and not paused:
            paused.append(message.progress.done)
            app.action_pause_runs()
        if isinstance(message, RunFinished):  # the engine has stopped: what did the user see meanwhile?
            on_top_when_stopped.append(type(app.screen).__name__)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await _start_run(pilot, name, limit="30")
        while not paused:
            await pilot.pause()
        assert app.running
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("y")
        await settle(pilot)
    # "stopping…" was on screen from the moment of y until the engine let go (seconds on a real model)
    assert on_top_when_stopped == [Stopping.__name__]
    with Store(home / "db" / "misalign.sqlite") as store:
        run = store.conn.execute("SELECT id, status, items_done, items_total FROM runs").fetchone()
    assert run["status"] == "interrupted" and 0 < run["items_done"] < run["items_total"]

    # resume it from the Run screen: the same run completes, nothing is repeated
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await settle(pilot)
        interrupted = app.screen.query_one("#run-interrupted", FittedTable)
        assert interrupted.shown_rows[0][0] == str(run["id"])
        interrupted.focus()
        await pilot.press("u")
        await settle(pilot)
        (status,) = app.run_statuses.values()
        assert status.state == "complete" and status.run_id == run["id"], status.error
    with Store(home / "db" / "misalign.sqlite") as store:
        runs = store.conn.execute("SELECT id, status, items_done, items_total FROM runs").fetchall()
        results = store.conn.execute("SELECT count(*), count(DISTINCT response_id) FROM judge_results").fetchone()
    assert [tuple(r) for r in runs] == [(run["id"], "complete", run["items_total"], run["items_total"])]
    assert results[0] == results[1] == run["items_total"]  # one template: one row per response, none twice


async def test_cancel_stops_the_run_and_a_failed_run_is_shown(home: Path, tiny_chat_model: Path) -> None:
    name = _register(home, tiny_chat_model)
    app = create_app(home)
    cancelled: list[bool] = []

    def hook(message) -> None:
        if isinstance(message, RunProgressed) and message.progress.done > 0 and not cancelled:
            cancelled.append(True)
            app.action_cancel_runs()

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await _start_run(pilot, name, limit="30")
        await settle(pilot)
        (status,) = app.run_statuses.values()
        assert status.state == "interrupted" and 0 < status.done < status.total
        # a run that cannot start (no prompt matches): the error is shown, the app lives on
        await pilot.press("r")
        app.screen.query_one("#run-filters", Input).value = "domain=No Such Domain"
        await _start_run(pilot, name, limit="")
        await settle(pilot)
        (status,) = app.run_statuses.values()
        assert status.state == "failed" and "no such domain" in (status.error or "")
        assert any("run failed" in n.message for n in app._notifications)
