"""What the app says (issue 12 §3, its app half): the Item view's verdicts, the Build screen's steps, counts,
empty result and errors, the dashboard's empty benchmark; and that the numbers of every table stay whole."""

from __future__ import annotations

import re
from pathlib import Path

from textual.widgets import Input, SelectionList

from misalign_tui.tui.messages import BuildProgressed
from misalign_tui.tui.screens.build import BuildScreen
from misalign_tui.tui.screens.compare import CompareScreen
from misalign_tui.tui.screens.item import ItemScreen
from misalign_tui.tui.widgets.tables import FittedTable
from tests.test_build import TINY_RECIPE
from tests.tui_fixtures import add_preference_run, make_app, populate_results, screen_text, settle


def _fixture_prompt(home: Path) -> int:
    from misalign_tui.core.store import Store

    with Store(home / "db" / "misalign.sqlite") as store:
        return int(store.conn.execute("SELECT min(p.id) FROM prompts p JOIN benchmarks b ON b.id = p.benchmark_id "
                                      "WHERE b.name = 'fixture'").fetchone()[0])


async def test_item_lists_pair_verdicts_without_claiming_there_are_none(home: Path) -> None:
    """A base model's preference run judges pairs, not responses: before, every response read "(no verdicts
    yet)" while the pair's verdicts were listed right below."""
    populate_results(home, models=())
    add_preference_run(home, "base-model")
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_item(_fixture_prompt(home))
        await settle(pilot)
        assert isinstance(app.screen, ItemScreen)
        text = app.screen.text()
        assert "no verdicts" not in text
        assert "on the pair:" in text and "base-model (run 1, preference): prefers" in text


async def test_item_says_so_once_when_a_pair_has_no_verdict(home: Path) -> None:
    populate_results(home, models=())
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_item(_fixture_prompt(home))
        await settle(pilot)
        text = app.screen.text()
        pairs = text.count("Pair ")
        assert pairs >= 1 and text.count("(no verdicts on this pair yet)") == pairs


def _empty_recipe(tmp_path: Path, model: Path) -> Path:
    """The tiny-model recipe with stop strings on every letter: each generation ends at once, every candidate is
    rejected and the build publishes a benchmark with 0 pairs (seconds on the 1 MB model)."""
    import json

    stops = json.dumps(list("etaoinshrdlucmfwypvbgkjqxz ETAOINSHRDLUCMFWYPVBGKJQXZ.,"))
    text = TINY_RECIPE.format(model=model).replace('stop = ["\\n\\n"]', f"stop = {stops}") \
        .replace("min_words = 1", "min_words = 3").replace('name = "tiny-build"', 'name = "empty-build"')
    path = tmp_path / "empty.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def _build(pilot, recipe: Path) -> None:
    """Type the recipe's path on the Build screen, as a user does (b, the path, Enter), and wait for the build."""
    await pilot.press("B")
    await settle(pilot)
    await pilot.press("b")
    pilot.app.screen.query_one("#build-recipe", Input).value = str(recipe)
    await pilot.press("enter")
    await settle(pilot)


async def test_build_screen_finishes_steps_says_nothing_was_published_and_the_dashboard_marks_it(
        home: Path, tmp_path: Path, tiny_model: Path) -> None:
    recipe = _empty_recipe(tmp_path, tiny_model)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _build(pilot, recipe)
        screen = app.screen
        assert isinstance(screen, BuildScreen) and not screen.building
        rows = screen.query_one("#build-steps", FittedTable).shown_rows
        assert [r[:2] for r in rows] == [[s, "done"] for s in ("seed", "classify", "expand", "dedup", "pairs",
                                                                "publish")]
        outcome = screen_text(app)
        assert "0 pairs" in outcome and "empty" in outcome  # said on the screen, not only in a toast
        assert any("0 pairs" in n.message and n.severity == "warning" for n in app._notifications)
        await pilot.press("d")
        await settle(pilot)
        benchmarks = app.screen.query_one("#benchmarks", FittedTable).shown_rows
        assert ["empty-build", "1", "0", "0", "0 (empty)"] == [*benchmarks[0][:5]]


async def test_a_build_paused_for_reviewers_is_said_as_paused_not_failed(home: Path, tmp_path: Path,
                                                                       tiny_model: Path) -> None:
    """A recipe with ``checker = "human"`` stops at stage 2 for reviewers; the screen said "build failed: …"."""
    from tests.test_review_build import HUMAN

    recipe = tmp_path / "human.toml"
    recipe.write_text(HUMAN.format(model=tiny_model), encoding="utf-8")
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await _build(pilot, recipe)
        screen = app.screen
        assert isinstance(screen, BuildScreen) and not screen.building
        outcome = screen_text(app)
        assert "paused at stage 2" in outcome and "Review screen" in outcome and "failed" not in outcome
        assert any("paused" in n.message and n.severity == "warning" for n in app._notifications)


async def test_a_step_reads_done_once_the_next_step_reports(home: Path) -> None:
    """Steps run in order: before, every step the screen had seen stayed "running" until the build ended."""
    from misalign_tui.core.build.state import StepProgress

    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("B")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BuildScreen)
        screen.building = True  # as while run_build's worker reports
        for step, done, total in (("seed", 3, 3), ("classify", 1, 3)):
            screen.post_message(BuildProgressed(StepProgress(step, done, total, 2.5, 1.0, {"classified": done})))
            await pilot.pause()
        rows = screen.query_one("#build-steps", FittedTable).shown_rows
        assert rows == [["seed", "done", "3/3", "2.50/s", "classified 3"],
                        ["classify", "running", "1/3", "2.50/s", "classified 1"]]


async def test_a_build_error_keeps_the_recipe_section(home: Path, tmp_path: Path) -> None:
    """The CLI prints "r.toml: [seed] source: missing key"; the app's toast took "[seed]" for markup and ate it."""
    recipe = tmp_path / "bad.toml"
    recipe.write_text('[benchmark]\nname = "x"\n', encoding="utf-8")
    app = make_app(home)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await _build(pilot, recipe)
        assert "[seed] source: missing key" in screen_text(app)  # the outcome line under the build's status
        toasts = [str(t.render()) for t in app.screen.query("Toast")]
        assert any(re.search(r"bad\.toml: \[seed\] source: missing key", t) for t in toasts), toasts


async def test_picking_another_model_in_compare_compares_it(home: Path) -> None:
    """The model list's selection handler was never connected: ticking a third model changed nothing."""
    populate_results(home, models=("alpha", "beta", "gamma"))
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and screen.data is not None
        assert screen.data.models == ["alpha", "beta"]
        screen.query_one("#compare-models", SelectionList).select("gamma")
        await settle(pilot)
        assert screen.data.models == ["alpha", "beta", "gamma"]
        assert {r.other for r in screen.data.rows} == {"beta", "gamma"}


async def test_every_figure_is_whole_on_every_table_at_80_columns(home: Path) -> None:
    """The rule of issue 12: names shrink, figures never. Every cell of a figure column (and every word of a text
    column, which wraps), as given, appears whole on the screen at 80×24, on each screen with tables (long model
    names force the names to shrink)."""
    long = ("a-model-with-a-very-long-name-that-goes-on-q4_k_m", "a-model-with-a-very-long-name-that-goes-on-q8_0")
    populate_results(home, models=long)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("d", "e", "c"):
            await pilot.press(key)
            await settle(pilot)
            for table in app.screen.query(FittedTable):
                if not table.display or not table.region.height:
                    continue
                table.scroll_visible(animate=False)  # a table below the fold: scroll to it, as a user would
                await pilot.pause()
                on_screen = table.region.intersection(app.screen.region)
                shown = "\n".join(line.strip() for line in screen_text(app).splitlines())
                visible_rows = table.shown_rows[: max(0, on_screen.height - 2)]  # less the header and the footer
                for row in visible_rows:
                    for col, cell in zip(table._columns, row, strict=True):
                        if col.kind == "figure" and cell:
                            assert cell in shown, (key, table.id, col.label, cell)
                        elif col.kind == "text":  # text wraps between words: every word is whole
                            for word in cell.split():
                                assert word in shown, (key, table.id, col.label, word)
