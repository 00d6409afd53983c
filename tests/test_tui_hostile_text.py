"""Text from benchmarks and models is hostile input for the app (issue 13 §1): brackets are text, not markup, and
terminal escape sequences are shown (``␛``), never sent. A fixed case for each known crash, then a fuzz test:
random text with brackets, control characters and escape sequences in prompts, responses, model, benchmark,
session and build names and texts, through the Dashboard, Explore, Compare, Item, Sessions and Build screens —
nothing may crash and no C0/C1 control character may reach what the app writes to the terminal."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from misalign_tui.core.store import Store
from misalign_tui.tui.screens.build import BuildScreen
from misalign_tui.tui.screens.compare import CompareScreen
from misalign_tui.tui.screens.dashboard import DashboardScreen
from misalign_tui.tui.screens.explore import ExploreScreen
from misalign_tui.tui.screens.item import ItemScreen
from misalign_tui.tui.screens.sessions import SessionsScreen
from tests.tui_fixtures import make_app, populate_results, rendered_segments, screen_text, settle

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PIECES = ["[", "]", "[/]", "[b]", "[/b]", "[red]", "[@click=app.quit]", "[0, 1)", "\\", "=", " ", "a", "Z", "é",
          "日本", "\x1b", "\x1b[2J", "\x1bc", "\x1b]2;owned\x07", "\x1b]52;c;SGVsbG8=\x07", "\x9b2J", "\x07",
          "\x00", "\x7f", "\r", "\t", "\n", "\x08", "{", "}", "%s"]
hostile = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), min_size=1, max_size=12).map("".join)


def _add_build_and_session(home: Path, text: str) -> None:
    """A build whose rejected candidate quotes the text, and a saved session named after it (rows written with
    SQL, as an older release would have stored them: names are checked only when chosen)."""
    with Store(home / "db" / "misalign.sqlite") as store, store.transaction() as c:
        bid = c.execute("INSERT INTO build_runs(name, recipe_hash, recipe_json, models_json, status, error) "
                        "VALUES ('demo', ?, '{}', '{}', 'failed', ?)", (f"h-{id(text)}", text)).lastrowid
        c.execute("INSERT INTO build_steps(build_id, step, status, items_total, items_done, counts_json) "
                  "VALUES (?, 'pairs', 'done', 2, 2, ?)", (bid, json.dumps({"rejected": 2})))
        c.execute("INSERT INTO build_candidates(build_id, kind, unit, attempt, label, dimension, domain, model, "
                  "text, status, stage, reason, feedback) VALUES (?, 'response', 'u', 0, 'aligned', 'safety', ?, ?, "
                  "?, 'rejected', 'checker', ?, ?)", (bid, text, text, text, text, text))
        state = {"models": [text], "benchmark": None, "filters": {"domain": text}, "metric": "coverage",
                 "grouping": "dimension"}
        c.execute("INSERT INTO sessions(name, state_json) VALUES (?, ?)", (text or "-", json.dumps(state)))


async def _walk(home: Path) -> list[str]:
    """Every screen that shows the hostile rows; returns the texts each showed. Raises on any crash."""
    seen: list[str] = []
    app = make_app(home)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:

        def check(kind: type) -> None:
            assert isinstance(app.screen, kind), (kind, app.screen)
            bad = [s for s in rendered_segments(app) if CONTROL.search(s)]
            assert not bad, f"control characters reach the terminal on {kind.__name__}: {bad[:3]!r}"
            seen.append(screen_text(app))

        await settle(pilot)
        check(DashboardScreen)
        for key, kind in (("e", ExploreScreen), ("c", CompareScreen), ("o", ItemScreen)):
            await pilot.press(key)
            await settle(pilot)
            check(kind)
        await pilot.press("escape")
        for key, kind in (("S", SessionsScreen), ("B", BuildScreen)):
            await pilot.press(key)
            await settle(pilot)
            check(kind)
        svg = app.export_screenshot()
        assert not CONTROL.search(svg.replace("\n", "")), "a control character in the exported screen"
    return seen


def _workspace(root: Path, text: str, prompt: str | None = None, response: str | None = None) -> Path:
    home = root / "workspace"
    populate_results(home, prompts=6, models=(f"{text}-a", f"{text}-b"),
                     prompt_text=prompt if prompt is not None else f"{text} {{i}}",
                     response_text=response if response is not None else f"{{label}}: {text}",
                     benchmark=text or "b")
    _add_build_and_session(home, text)
    return home


def test_a_lone_bracket_and_escape_sequences_are_shown_as_written(tmp_path: Path) -> None:
    """The crashes of issue 13: a prompt about "the interval [0, 1)" opened from Compare killed the app
    (MarkupError); an OSC 2 in a response retitled the terminal; a model named with ESC [2J blanked the
    dashboard; the Build screen rendered generated text as markup."""
    home = _workspace(tmp_path, "evil\x1b[2J[b]", prompt="the interval [0, 1) for prompt {i}",
                      response="{label}: \x1b]2;owned\x07 an answer [/] with [b]brackets")
    text_of = dict(zip(("dashboard", "explore", "compare", "item", "sessions", "build"), asyncio.run(_walk(home)),
                       strict=True))
    assert "evil␛[2J[b]-a" in text_of["dashboard"]  # the model's name, its ESC shown
    assert "the interval [0, 1) for prompt" in text_of["item"]  # the prompt as written
    assert "␛]2;owned␇ an answer [/] with [b]brackets" in text_of["item"]
    assert "evil␛[2J[b]" in text_of["build"]  # the candidate's text: brackets kept, not taken as a style


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(text=hostile)
@example(text="[")
@example(text="x [/y")
@example(text="\x1bc\x1b]52;c;SGVsbG8=\x07\x9b2J")
def test_no_text_crashes_a_screen_or_reaches_the_terminal_as_a_command(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_walk(_workspace(Path(root), text)))
