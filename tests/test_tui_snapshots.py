"""Snapshots of every screen from the app factory the CLI uses, on a fixed workspace path and size."""

from __future__ import annotations

from misalign_tui.core.sessions import SessionState, save_session
from misalign_tui.core.store import Store
from misalign_tui.tui.app import create_app
from tests.tui_fixtures import SIZE, fresh_home, populate_results, settle_for_snapshot


def _app_with_results():
    home = fresh_home()
    populate_results(home)
    return create_app(home), home


def _keys(*keys: str):
    async def run_before(pilot) -> None:
        for key in keys:
            await pilot.press(key)
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        await settle_for_snapshot(pilot)

    return run_before


def test_snapshot_explore(snap_compare) -> None:
    app, _ = _app_with_results()
    assert snap_compare(app, terminal_size=SIZE, run_before=_keys("e"))


def test_snapshot_explore_domains_80x24(snap_compare) -> None:
    app, _ = _app_with_results()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_keys("e", "2"))


def test_snapshot_compare(snap_compare) -> None:
    app, _ = _app_with_results()
    assert snap_compare(app, terminal_size=SIZE, run_before=_keys("c"))


def test_snapshot_item(snap_compare) -> None:
    app, _ = _app_with_results()
    assert snap_compare(app, terminal_size=SIZE, run_before=_keys("c", "tab", "tab", "o"))


def test_snapshot_run(snap_compare) -> None:
    app, _ = _app_with_results()
    assert snap_compare(app, terminal_size=SIZE, run_before=_keys("r"))


def test_snapshot_sessions(snap_compare) -> None:
    app, home = _app_with_results()
    with Store(home / "db" / "misalign.sqlite") as store:
        save_session(store, "safety by type", SessionState(["alpha", "beta"], None, {"dimension": "safety"},
                                                           "coverage", "semantic_type"))
        # Both columns get the literal: in one UPDATE, SQLite's right-hand side reads the old created_at (today).
        store.conn.execute("UPDATE sessions SET created_at = '2026-01-02T03:04:05Z', "
                           "updated_at = '2026-01-02T03:04:05Z'")
    assert snap_compare(app, terminal_size=SIZE, run_before=_keys("S"))


def test_snapshot_dashboard_with_runs(snap_compare) -> None:
    app, _ = _app_with_results()
    assert snap_compare(app, terminal_size=SIZE, run_before=_keys())
