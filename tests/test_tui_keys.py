"""Keys and focus (issue 12 §2): no text field takes focus when a screen opens, Escape always leaves a field, the
footer keeps the screen's keys while a field has focus, the Models screen scrolls to its settings at 80×24, and
deleting a session asks first."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from misalign_tui.core.sessions import SessionState, list_sessions, save_session
from misalign_tui.core.store import Store
from misalign_tui.tui.screens.dialogs import Confirm
from misalign_tui.tui.screens.models import ModelsScreen
from misalign_tui.tui.screens.run import RunScreen
from misalign_tui.tui.widgets.footer import KeysFooter
from tests.test_model_registry import write_small_gguf
from tests.tui_fixtures import make_app, populate_results, settle


@pytest.mark.parametrize("key", ["d", "m", "r", "e", "c", "S", "B"])
async def test_no_text_field_has_focus_when_a_screen_opens(home: Path, key: str) -> None:
    populate_results(home)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(key)
        await settle(pilot)
        assert not isinstance(app.screen.focused, Input), (key, app.screen.focused)


async def test_build_screen_keys_are_keys_not_text(home: Path) -> None:
    """The Build screen advertises D (demo build): before, it typed "D" into the recipe field."""
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("B")
        await settle(pilot)
        await pilot.press("g")  # refresh: a screen key, never a letter in the field
        await settle(pilot)
        assert app.screen.query_one("#build-recipe", Input).value == ""


def _with_a_model(home: Path) -> Path:
    (home / "models").mkdir(parents=True)
    write_small_gguf(home / "models" / "tiny.gguf")
    return home


async def test_escape_leaves_the_gpu_layers_field_and_the_keys_work_again(home: Path) -> None:
    app = make_app(_with_a_model(home))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m")
        await settle(pilot)
        await pilot.press("c")
        field = app.screen.query_one("#model-gpu-layers", Input)
        assert field.has_focus
        await pilot.press("escape")
        assert not field.has_focus and not isinstance(app.screen.focused, Input)
        await pilot.press("r")  # before: typed "r" into the field
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
        assert field.value == ""


async def test_the_footer_keeps_the_screen_keys_while_a_field_has_focus(home: Path) -> None:
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("B")
        await settle(pilot)
        await pilot.press("b")
        assert isinstance(app.screen.focused, Input)
        await settle(pilot)  # the footer recomposes after the focus change
        footer = app.screen.query_one(KeysFooter)
        keys = {k.description: k.has_class("-disabled") for k in footer.query("FooterKey")}
        assert keys["Leave field"] is False  # esc comes first and works
        assert keys["Demo build"] is True and keys["Refresh"] is True  # listed, dimmed: the field would type them
        assert "Dash" in keys and "Quit" in keys


async def test_models_screen_scrolls_to_settings_and_load_test_at_80x24(home: Path) -> None:
    app = make_app(_with_a_model(home))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await pilot.press("c")
        await settle(pilot)
        field = screen.query_one("#model-gpu-layers", Input)
        x, y = field.region.x, field.region.y
        assert 0 < y < 23 and screen.get_widget_at(x, y)[0] is field  # on screen, not below the last line
        await pilot.press("escape")
        result = screen.query_one("#model-load-test")
        result.scroll_visible(animate=False)
        await pilot.pause()
        assert 0 < result.region.y < 23 and screen.get_widget_at(result.region.x, result.region.y)[0] is result


async def test_deleting_a_session_asks_first(home: Path) -> None:
    populate_results(home)
    with Store(home / "db" / "misalign.sqlite") as store:
        save_session(store, "keep me", SessionState(["alpha"], None, {}, "coverage", "dimension"))
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("S")
        await settle(pilot)
        await pilot.press("X")
        await settle(pilot)
        assert isinstance(app.screen, Confirm) and "keep me" in str(app.screen.text)
        await pilot.press("n")
        await settle(pilot)
        with Store(home / "db" / "misalign.sqlite") as store:
            assert [s.name for s in list_sessions(store)] == ["keep me"]
        await pilot.press("X")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
    with Store(home / "db" / "misalign.sqlite") as store:
        assert list_sessions(store) == []
