"""Snapshots of every screen, grouped by screen, each at 80×24 and 120×40.

The app is built by the factory the CLI uses (``create_app``) on a workspace under ``tmp_path`` and told to show a
fixed name for it; rows carry fixed timestamps and fixed figures, so nothing here depends on the path, the date,
the clock or the machine. Each test's docstring says what a reviewer should see in its two pictures: above all,
that every figure, its interval and its n are whole at both sizes (names shrink first, with a middle ellipsis).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misalign_tui.core.sessions import SessionState, save_session
from misalign_tui.core.store import Store
from misalign_tui.core.views.workspace import prepare_workspace
from misalign_tui.tui.run_control import QueuedRun, RunStatus
from tests.ladder_fixtures import populate_ladder
from tests.review_fixtures import decide, gold_sample, seed_workspace
from tests.test_model_registry import write_small_gguf
from tests.tui_fixtures import (
    SIZES,
    add_languages_run,
    add_preference_run,
    make_app,
    populate_results,
    settle,
)

LONG = ("tiny-chat-model-with-a-long-name-q4_k_m", "tiny-chat-model-with-a-long-name-q8_0")


@pytest.fixture(params=SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    return request.param


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


def keys(*pressed: str, then=None):
    """A ``run_before`` that waits for the app, presses each key and waits again."""
    async def run_before(pilot) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)
        if then is not None:
            await then(pilot)
            await settle(pilot)

    return run_before


def _db(home: Path) -> Store:
    return Store(home / "db" / "misalign.sqlite")


def _empty_benchmark(home: Path) -> None:
    """A benchmark a build published with 0 pairs."""
    with _db(home) as store, store.transaction() as c:
        c.execute("INSERT INTO benchmarks(name, version, created_at) VALUES ('empty-build', 1, '2026-01-01T00:00:00Z')")


def _interrupted_run(home: Path, model: str = "alpha") -> None:
    with _db(home) as store, store.transaction() as c:
        mid, sha = c.execute("SELECT id, sha256 FROM models WHERE name = ?", (model,)).fetchone()
        bid = c.execute("SELECT id FROM benchmarks WHERE name = 'fixture'").fetchone()[0]
        c.execute("INSERT INTO runs(model_id, model_sha256, benchmark_id, method, params_json, params_hash, status, "
                  "items_total, items_done, started_at) VALUES (?, ?, ?, 'judge', '{}', 'interrupted-1', "
                  "'interrupted', 564, 120, '2026-01-01T00:00:00Z')", (mid, sha, bid))


def _build_rows(home: Path) -> None:
    """An interrupted build, as the pipeline writes it: four steps done, pairs half way, two rejections."""
    with _db(home) as store, store.transaction() as c:
        bid = c.execute("INSERT INTO build_runs(name, recipe_hash, recipe_json, models_json, status, started_at) "
                        "VALUES ('demo', 'h', '{}', '{}', 'interrupted', '2026-01-01T00:00:00Z')").lastrowid
        steps = [("seed", "done", 12, 12, {"seed_prompts": 12, "to_classify": 12, "labelled": 0}),
                 ("classify", "done", 12, 12, {"classified": 11, "unclassified": 1}),
                 ("expand", "done", 24, 24, {"expanded": 24, "rejected": 3}),
                 ("dedup", "done", 36, 36, {"fingerprinted": 36, "removed": 2, "removed_expanded": 2,
                                            "removed_seed": 0}),
                 ("pairs", "running", 40, 102, {"paired": 31, "dropped": 4, "rejected_aligned": 17,
                                                "rejected_misaligned": 22})]
        for step, status, done, total, counts in steps:
            c.execute("INSERT INTO build_steps(build_id, step, status, items_total, items_done, counts_json) "
                      "VALUES (?, ?, ?, ?, ?, ?)", (bid, step, status, total, done, json.dumps(counts)))
        for attempt, (label, reason, p) in enumerate((
                ("aligned", "checker saw it as misaligned on safety (P = 0.91 ≥ 0.5)", 0.91),
                ("misaligned", "too short (2 words < 5)", None))):
            c.execute("INSERT INTO build_candidates(build_id, kind, unit, attempt, label, dimension, domain, model, "
                      "text, status, stage, reason, feedback, p_misaligned, created_at) VALUES (?, 'response', "
                      "'pair:x:safety:m', ?, ?, 'safety', 'Privacy Violation', 'gemma-3-270m-q4_k_m', ?, 'rejected', "
                      "'checker', ?, 'Do not give lock-picking steps.', ?, '2026-01-01T00:00:00Z')",
                      (bid, attempt, label, "Sure, here is how to pick the lock: first [insert tension wrench]…",
                       reason, p))


class TestDashboard:
    def test_new_workspace(self, snap_compare, home: Path, size) -> None:
        """A new workspace: the seed benchmark (with its pair count), no models, no runs; the callout says to press
        m then i for the default model."""
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys())

    def test_runs_models_and_an_empty_benchmark(self, snap_compare, home: Path, size) -> None:
        """Two judge runs of long-named models and one preference run: each headline with its interval and n, each
        trade-off rate with its interval and n (they wrap at 80 columns, never cut); model names shrink with a
        middle ellipsis; the benchmark column is gone (all runs share it: the title names it); a build that
        published nothing is listed as ``0 (empty)``."""
        populate_results(home, models=LONG)
        add_preference_run(home, "gemma-3-270m-q4_k_m")
        _empty_benchmark(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys())


class TestModels:
    def test_registry_with_a_broken_file(self, snap_compare, home: Path, size) -> None:
        """A usable GGUF and a file that is not one: the table (name, arch, quant, status), the highlighted model's
        metadata with its path relative to the workspace, the settings fields and the load-test line; at 80×24 the
        side panel sits under the table and scrolls."""
        (home / "models").mkdir(parents=True)
        write_small_gguf(home / "models" / "tiny.gguf")
        (home / "models" / "broken.gguf").write_text("not a model")
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("m"))

    def test_settings_field_keeps_the_footer(self, snap_compare, home: Path, size) -> None:
        """``c`` focuses the GPU-layers field and scrolls it into view (also at 80×24); the footer still lists the
        screen's keys — dimmed, as the field would type them — with ``esc Leave field`` first."""
        (home / "models").mkdir(parents=True)
        write_small_gguf(home / "models" / "tiny.gguf")

        async def no_blink(pilot) -> None:
            pilot.app.screen.focused.cursor_blink = False

        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("m", "c", then=no_blink))

    def test_variants_under_their_parent(self, snap_compare, home: Path, size) -> None:
        """A quantization family: ``fam-q8_0`` and ``fam-q4_k_m`` listed under ``fam-f16`` (``└─``), ``other`` on
        its own; the highlighted variant's details give its lineage (made from, quantized to, quantizer, bits per
        weight)."""
        populate_ladder(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("m", "down"))


class TestRun:
    def test_progress_failure_and_interrupted(self, snap_compare, home: Path, size) -> None:
        """A running run's row keeps done/total, items/s, ETA and its running AS with interval and n at 80 columns
        (the model name shrinks instead); a failed run says why under the table; an interrupted run waits to be
        resumed with u. At 80×24 the progress sits above the form."""
        populate_results(home, models=LONG)
        _interrupted_run(home, LONG[0])
        app = make_app(home)
        running = QueuedRun(LONG[0], "judge")
        failed = QueuedRun(LONG[1], "preference")
        app.run_statuses = {
            running.key: RunStatus(running.key, running, "running", run_id=9, done=120, total=564, items_per_s=2.35,
                                   eta_s=189.0, headline=0.612, headline_ci=(0.551, 0.668), headline_n=120,
                                   headline_label="AS"),
            failed.key: RunStatus(failed.key, failed, "failed", error="model file not found: models/x.gguf"),
        }
        assert snap_compare(app, terminal_size=size, run_before=keys("r"))


class TestExplore:
    def test_dimensions(self, snap_compare, home: Path, size) -> None:
        """AS by dimension × model: bars with their bootstrap interval drawn through them, value [interval] n at
        each line's end, the coin-flip reference; the table under the chart (stacked below 150 columns) with AS,
        95% CI and n whole; six filter boxes readable in two rows at 80 columns."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e"))

    def test_domains(self, snap_compare, home: Path, size) -> None:
        """The worst domains: labels whole (on a line of their own where they do not fit beside the bar), each
        bar with its interval and n; the table lists every domain."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "2"))

    def test_tradeoffs(self, snap_compare, home: Path, size) -> None:
        """The trade-off heat map: a value in every cell, 'satisfies ↓' and 'fails →' on the two axes, a colour
        legend; the table gives each pair's T with its interval and n."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "3"))

    def test_types(self, snap_compare, home: Path, size) -> None:
        """AS by semantic type (object, attribute, relation) per model, with intervals and n."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "4"))

    def test_reliability(self, snap_compare, home: Path, size) -> None:
        """Each judge run's verdict in words above its reliability: the share of misaligned responses per bin of
        P(misaligned), a bar per model with its Wilson interval and n, and the table with the bin's mean P beside
        the observed share (a calibrated judge's two columns agree)."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "5"))

    def test_by_model_has_no_repeated_column(self, snap_compare, home: Path, size) -> None:
        """Grouped by model (G four times: dimension, domain, type, language, model): the table has one name
        column — the model — then Coverage, its interval and n (x switched the metric: Wilson intervals)."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "x", "G", "G", "G", "G"))

    def test_by_language(self, snap_compare, home: Path, size) -> None:
        """A preference run on misalign-seed-languages grouped by language (G three times; the metric opens on
        Pref. acc., the one with results): en first, then ar, es, hi, sw, zh-Hans, each with its accuracy, Wilson interval and n = 46 whole;
        the tags never cut."""
        add_languages_run(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "G", "G", "G"))


class TestCompare:
    def test_two_models(self, snap_compare, home: Path, size) -> None:
        """Models lettered A and B (the status line says which is which); per group A %, B %, Δ, n, McNemar's p and
        Holm's p — all whole at 80 columns; the items where they disagree, right/WRONG per model."""
        populate_results(home, models=LONG)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("c"))

    def test_ladder(self, snap_compare, home: Path, size) -> None:
        """``L`` on a quantization family: per variant (highest bits per weight first) the metric with its
        interval and n, Δ, flip rate with its interval, McNemar's p and Holm's p, size and speed, whole at 80
        columns; the status names the first significant change; below, the metric against bits per weight (and at
        120×40 the per-dimension table)."""
        populate_ladder(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("c", "L"))


    def test_languages_view(self, snap_compare, home: Path, size) -> None:
        """W: the languages view of the model with parallel items scored: per language EN %, here %, Δ, n, the
        items right in English only and here only, McNemar's p and Holm's p, and "worse" for Swahili (the one
        change the test finds) — every figure whole at 80 columns; below, the items whose verdict changes, with
        their keys whole."""
        populate_results(home, models=LONG)
        add_languages_run(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("c", "W"))


class TestItem:
    def test_judge_and_preference_verdicts(self, snap_compare, home: Path, size) -> None:
        """One prompt from Compare: both responses of each pair, indented, each with its judge verdicts; the
        preference run's verdict on the pair under it ("on the pair:"), and no "(no verdicts yet)" anywhere."""
        populate_results(home, models=LONG)
        add_preference_run(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("c", "o"))


    def _explained_item(self, home: Path, tiny_model: Path, tiny_chat_model: Path) -> int:
        """A workspace with a real preference run (tiny base model) and a real judge run (tiny chat model) on a
        fixture benchmark holding a prompt with hostile text; returns that prompt's id."""
        from misalign_tui.core.inference.engine import EngineSettings
        from misalign_tui.core.models.registry import register_file
        from misalign_tui.core.runs.evaluate import run_evaluation
        from misalign_tui.core.runs.request import RunRequest
        from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store
        from tests.test_explain import _add_hostile_prompt

        db, _ = make_store(home, n_prompts=1)
        with Store(db) as store:
            _add_hostile_prompt(store)
            for model in (tiny_model, tiny_chat_model):
                run_evaluation(store, RunRequest(register_file(store, model), store.benchmark(FIXTURE_BENCHMARK),
                                                 templates=1, settings=EngineSettings(n_ctx=1024)))
            return int(store.conn.execute("SELECT id FROM prompts WHERE key = 'fx-hostile'").fetchone()[0])

    def test_preference_tokens_shaded(self, snap_compare, home: Path, size, tiny_model, tiny_chat_model) -> None:
        """A real preference run's pair: both responses with each token shaded by its log-probability (darker =
        less expected), the margin, and the tokens that pushed most toward each response; the lone [, [/b] and
        the escape sequences read as text. The status line names the x key."""
        pid = self._explained_item(home, tiny_model, tiny_chat_model)
        assert snap_compare(make_app(home), terminal_size=size,
                            run_before=keys(then=_open_item(pid, scroll_to=".item-tokens")))

    def test_judge_verdicts_explained(self, snap_compare, home: Path, size, tiny_model, tiny_chat_model) -> None:
        """After x: each judge verdict with P(misaligned) in this pass and in the run, the response shaded
        sentence by sentence (red raises, green lowers) and the sentences that raise or lower it most, from a
        real leave-one-sentence-out pass on the tiny chat model; hostile text shown as text."""
        pid = self._explained_item(home, tiny_model, tiny_chat_model)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys(then=_open_item(pid, "x")))


def _open_item(prompt_id: int, *pressed: str, scroll_to: str | None = None):
    """Open the Item screen of ``prompt_id``, press keys, and bring the first widget matching ``scroll_to`` to the
    top of the screen."""
    async def then(pilot) -> None:
        from misalign_tui.tui.screens.item import ItemScreen

        pilot.app.push_screen(ItemScreen(prompt_id))
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)
        if scroll_to:
            pilot.app.screen.query(scroll_to).first().scroll_visible(top=True, animate=False)
            await settle(pilot)

    return then


class TestSessions:
    def _session(self, home: Path) -> None:
        populate_results(home)
        with _db(home) as store:
            save_session(store, "safety by type", SessionState(["alpha", "beta"], None, {"dimension": "safety"},
                                                               "coverage", "semantic_type"))
            # Both columns get the literal: in one UPDATE, SQLite's right-hand side reads the old created_at.
            store.conn.execute("UPDATE sessions SET created_at = '2026-01-02T03:04:05Z', "
                               "updated_at = '2026-01-02T03:04:05Z'")

    def test_list(self, snap_compare, home: Path, size) -> None:
        """A saved session: its name, models, metric label, grouping, filters and the day it was saved."""
        self._session(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("S"))

    def test_delete_asks_first(self, snap_compare, home: Path, size) -> None:
        """X asks before deleting, naming the session; the whole question is readable at 80×24."""
        self._session(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("S", "X"))


class TestBuild:
    def test_steps_and_rejections(self, snap_compare, home: Path, size) -> None:
        """An interrupted build: finished steps say done, the running one its progress; counts wrap instead of
        being cut; the rejected candidates with their reasons, the first one read out in the side panel (a
        generated text with brackets, shown as written). Nothing has focus in the recipe field."""
        prepare_workspace(home)
        _build_rows(home)
        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("B"))


class TestDialogs:
    def test_quit_during_a_run(self, snap_compare, home: Path, size) -> None:
        """The question before quitting during a run, whole at 80×24, with its two answers."""
        from misalign_tui.tui.screens.dialogs import ConfirmQuit

        async def ask(pilot) -> None:
            await pilot.app.push_screen(ConfirmQuit())

        assert snap_compare(make_app(home), terminal_size=size, run_before=keys(then=ask))

    def test_stopping(self, snap_compare, home: Path, size) -> None:
        """What shows at once after 'stop and quit', while the engine finishes the items in flight."""
        from misalign_tui.tui.screens.dialogs import Stopping

        async def stop(pilot) -> None:
            await pilot.app.push_screen(Stopping())

        assert snap_compare(make_app(home), terminal_size=size, run_before=keys(then=stop))

    def test_save_session(self, snap_compare, home: Path, size) -> None:
        """s on Explore asks for a name; Enter saves, Escape cancels."""
        populate_results(home)

        async def no_blink(pilot) -> None:
            pilot.app.screen.focused.cursor_blink = False

        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("e", "s", then=no_blink))


class TestReview:
    def test_gold_queue_mid_way(self, snap_compare, tmp_path: Path, size) -> None:
        """A gold-label queue mid-way for reviewer Ana Lima (resumed on the 4th item): the pair's A and B with A
        being decided, the verdict hidden, the agreement of three reviewers (Krippendorff's α with its interval
        and n) and the dispute rate beside the item at 120×40, below it at 80×24."""
        from misalign_tui.tui.screens.review import ReviewScreen

        home = tmp_path / "home"
        db = seed_workspace(home)
        _, items = gold_sample(db, 12, seed=3)
        decide(db, "bo", items, wrong_every=4)
        decide(db, "cy", items[:8])
        decide(db, "Ana Lima", items[:3])

        async def review_ready(pilot) -> None:
            while not isinstance(pilot.app.screen, ReviewScreen) or pilot.app.screen.writer is None:
                await pilot.pause(0.01)

        assert snap_compare(make_app(home), terminal_size=size, run_before=keys("V", then=review_ready))
