"""The app built by the same factory as the CLI, driven with Pilot; snapshots at a fixed size."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static

from misalign_tui.tui.app import create_app
from misalign_tui.tui.screens.help import HelpScreen
from misalign_tui.tui.widgets.tables import FittedTable
from tests.test_model_registry import write_small_gguf
from tests.tui_fixtures import SIZE


async def test_empty_workspace_explains_next_step(home: Path) -> None:
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        text = str(app.screen.query_one("#next-action", Static).render())
        assert "No models yet" in text and "default model" in text  # the seed benchmark is loaded already
        assert app.screen.query_one("#benchmarks", FittedTable).row_count == 1


async def test_models_screen_adds_path_and_shows_unusable_reason(home: Path, tmp_path: Path) -> None:
    good = write_small_gguf(tmp_path / "good.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await pilot.app.workers.wait_for_complete()
        await pilot.press("a")
        inp = app.screen.query_one("#model-path", Input)
        assert inp.has_focus
        for path in (good, bad):
            inp.value = str(path)
            await pilot.press("enter")
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        table = app.screen.query_one("#models-table", FittedTable)
        rows = table.shown_rows
        assert ["bad", "-", "-", "unusable"] in rows
        assert ["good", "llama", "F32", "ok"] in rows
        table.focus()
        table.move_cursor(row=[r[0] for r in rows].index("bad"))
        await pilot.pause()
        detail = str(app.screen.query_one("#model-detail", Static).render())
        assert "unusable" in detail and "truncated" in detail


async def test_help_lists_bindings(home: Path) -> None:
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
