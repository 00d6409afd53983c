"""Each screen's main path, driven with Pilot on a workspace holding real result rows (written with SQL, as
the engine writes them). Waits on workers, never on time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import Input, Select, Static

from misalign_tui.core import metrics
from misalign_tui.core.metrics import trade_offs
from misalign_tui.core.sessions import list_sessions
from misalign_tui.core.store import Store
from misalign_tui.tui.app import create_app
from misalign_tui.tui.messages import ExploreLoaded
from misalign_tui.tui.screens.compare import CompareScreen
from misalign_tui.tui.screens.dialogs import NamePrompt
from misalign_tui.tui.screens.explore import ExploreScreen
from misalign_tui.tui.screens.item import ItemScreen
from misalign_tui.tui.screens.sessions import SessionsScreen
from misalign_tui.tui.widgets.tables import FittedTable
from tests.tui_fixtures import SIZE, populate_results, settle


def table_rows(table: FittedTable) -> list[list[str]]:
    return table.shown_rows


async def test_explore_shows_results_and_repaints_on_filter_change(home: Path) -> None:
    runs = populate_results(home)
    seen: list[tuple] = []

    def hook(message) -> None:
        if isinstance(message, ExploreLoaded):
            seen.append((message.data.query.dimension, message.data.query.metric, tuple(message.data.models)))

    app = create_app(home)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.press("e")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ExploreScreen)
        rows = table_rows(screen.query_one("#table-grouped", FittedTable))
        assert {r[0] for r in rows} == {"safety", "value", "cultural"}
        assert {r[1] for r in rows} == {"alpha", "beta"}
        # fixture: alpha's cultural AS is 85.7 (misses every 3rd misaligned response, flags every 5th aligned),
        # with the report's bootstrap interval (1000 resamples, seed 0) once the interval pass is done
        with Store(home / "db" / "misalign.sqlite") as store:
            (cultural,) = [r for r in metrics.profile(store, runs["alpha"], group_by="dimension", bootstrap=1000)
                           if r.group == "cultural"]
        low, high = cultural.alignment_score_ci
        assert ["cultural", "alpha", "85.7", f"{100 * low:.1f}–{100 * high:.1f}", "16"] in rows

        screen.query_one("#f-dimension", Select).value = "safety"
        await settle(pilot)
        rows = table_rows(screen.query_one("#table-grouped", FittedTable))
        assert {r[0] for r in rows} == {"safety"}

        await pilot.press("x")  # metric: AS → Coverage
        await settle(pilot)
        assert screen.query_state.metric == "coverage"
        assert "Coverage" in str(screen.query_one("#explore-status", Static).render())
        # the trade-off table T[row→col] is metrics.trade_offs' pairwise table for the first model
        rep = trade_offs(Store(home / "db" / "misalign.sqlite"), runs["alpha"], {"dimension": "safety"})
        assert rep.rate is None  # one dimension left by the filter: n/a, never 0 %
        screen.query_one("#f-dimension", Select).clear()
        await settle(pilot)
        rep = trade_offs(Store(home / "db" / "misalign.sqlite"), runs["alpha"])
        await pilot.press("3")  # the trade-offs tab (charts and tables are drawn when their tab shows)
        await settle(pilot)
        t_rows = {r[0]: r[1:] for r in table_rows(screen.query_one("#table-tradeoffs", FittedTable))}
        cell = rep.pairwise[("safety", "value")]
        assert t_rows["safety → value"] == [f"{100 * cell.rate:.1f}", f"{100 * cell.ci[0]:.1f}–{100 * cell.ci[1]:.1f}",
                                            str(cell.n)]
        await pilot.press("x", "x", "x", "x")  # coverage → ffr → pref. acc. → satisfaction → trade-off rate
        await settle(pilot)
        assert screen.query_state.metric == "trade_off_rate"
        await pilot.press("1")
        await settle(pilot)
        fails = {(r[0], r[1]): r[2] for r in table_rows(screen.query_one("#table-grouped", FittedTable))}
        assert fails[("safety", "alpha")] == f"{100 * (1 - rep.satisfaction['safety'].rate):.1f}"
        assert "(1 − s_d)" in str(screen.query_one("#explore-status", Static).render())
    assert seen[0] == (None, "alignment_score", ("alpha", "beta"))
    assert ("safety", "alignment_score", ("alpha", "beta")) in seen
    assert ("safety", "coverage", ("alpha", "beta")) in seen
    assert seen[-1] == (None, "trade_off_rate", ("alpha", "beta"))


async def test_explore_empty_workspace_says_what_to_do(home: Path) -> None:
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await settle(pilot)
        assert "r starts a run" in str(app.screen.query_one("#explore-status", Static).render())


async def test_compare_lists_disagreements_and_opens_item(home: Path) -> None:
    populate_results(home)
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        deltas = table_rows(screen.query_one("#compare-deltas", FittedTable))
        # AS of alpha and beta on the 48 shared safety responses, the delta and McNemar's test (metrics.compare)
        assert deltas[0] == ["dim safety", "72.4", "78.9", "-6.6", "48", "0.63", "1"]  # A, B, Δ, n, p, Holm p
        assert [r[0] for r in deltas] == ["dim safety", "dim value", "dim cultural", "type object",
                                          "type attribute", "type relation", "AUROC all"]
        # the two judges' AUROC on the 112 shared responses, the paired bootstrap's p, no Holm (a single test)
        assert deltas[-1][4] == "112" and deltas[-1][6] == "-"
        items = screen.query_one("#compare-items", FittedTable)
        only = items.row_count
        assert only > 0 and all(len(set(r[3:])) == 2 for r in table_rows(items))
        await pilot.press("D")
        await settle(pilot)
        assert items.row_count > only  # every item judged by both, not only the disagreements
        await pilot.press("D")
        await settle(pilot)
        assert items.row_count == only
        items.focus()
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, ItemScreen)
        text = app.screen.text()
        assert "alpha (run" in text and "beta (run" in text and "P(misaligned)=" in text
        assert "What the model saw" in text and "Request: Fixture prompt" in text and "{prompt}" not in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)


async def test_session_saved_listed_reopened_and_reported(home: Path, cli_run) -> None:
    populate_results(home)
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("#f-type", Select).value = "relation"
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, NamePrompt)
        app.screen.query_one(Input).value = "relation audit"
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)
        assert isinstance(app.screen, SessionsScreen)
        assert table_rows(app.screen.query_one("#sessions-table", FittedTable))[0][0] == "relation audit"
        await pilot.press("R")
        await settle(pilot)
        report = home / "reports" / "relation audit.md"
        text = report.read_text()
        assert "filters type=relation" in text and "Session **relation audit**" in text
        assert "alpha" in text and "beta" in text and "McNemar" in text  # core.io.audit_report's tables
        await pilot.press("d")  # leave, then reopen from the sessions list into a fresh filter state
        await pilot.press("e")
        app.screen.query_one("#f-type", Select).clear()
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, ExploreScreen)
        assert app.screen.query_state.semantic_type == "relation"
        await pilot.press("4")
        await settle(pilot)
        assert {r[0] for r in table_rows(app.screen.query_one("#table-types", FittedTable))} == {"relation"}
    with Store(home / "db" / "misalign.sqlite") as store:
        assert [s.name for s in list_sessions(store)] == ["relation audit"]
    out = cli_run("sessions", "list", "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc[0]["name"] == "relation audit" and doc[0]["filters"] == {"semantic_type": "relation"}
    rep = cli_run("sessions", "report", "relation audit", "--out", str(home / "r.md"))
    assert rep.exit_code == 0, rep.output
    strip = lambda t: [ln for ln in t.splitlines() if "UTC" not in ln]  # noqa: E731 - generated-at line differs
    assert strip((home / "r.md").read_text()) == strip(report.read_text())  # the same report as the screen's R
    assert cli_run("sessions", "delete", "relation audit").exit_code == 0
    assert json.loads(cli_run("sessions", "list", "--format", "json").stdout) == []
    missing = cli_run("sessions", "show", "nope")
    assert missing.exit_code == 2 and "session 'nope' not found" in missing.output


async def test_models_screen_writes_gpu_layers_and_threads(home: Path) -> None:
    populate_results(home)
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await settle(pilot)
        await pilot.press("c")
        layers = app.screen.query_one("#model-gpu-layers", Input)
        assert layers.has_focus
        layers.value = "0"
        app.screen.query_one("#model-threads", Input).value = "2"
        await pilot.press("enter")
        await settle(pilot)
        app.screen.query_one("#model-threads", Input).value = "zero"
        await pilot.press("enter")
        await settle(pilot)
    with Store(home / "db" / "misalign.sqlite") as store:
        row = store.conn.execute("SELECT n_gpu_layers, n_threads FROM models WHERE name = 'alpha'").fetchone()
    assert tuple(row) == (0, 2)  # the bad second entry changed nothing


def test_core_never_imports_textual() -> None:
    code = ("import pkgutil, importlib, sys, misalign_tui.core as c\n"
            "for m in pkgutil.walk_packages(c.__path__, 'misalign_tui.core.'):\n"
            "    importlib.import_module(m.name)\n"
            "import misalign_tui.core.views.explore, misalign_tui.core.report.session, misalign_tui.cli.sessions\n"
            "assert not [m for m in sys.modules if m.startswith('textual')], 'textual imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_build_screen_lists_steps_and_rejected_candidates_with_reasons(home: Path) -> None:
    from misalign_tui.core.workspace import open_workspace
    from misalign_tui.tui.screens.build import BuildScreen

    with Store(open_workspace(home).ensure().db_path) as store, store.transaction() as c:
        bid = c.execute("INSERT INTO build_runs(name, recipe_hash, recipe_json, models_json, status) "
                        "VALUES ('demo', 'h', '{}', '{}', 'interrupted')").lastrowid
        c.execute("INSERT INTO build_steps(build_id, step, status, items_total, items_done, counts_json) "
                  "VALUES (?, 'pairs', 'running', 12, 5, ?)", (bid, json.dumps({"accepted": 4, "rejected": 2})))
        c.execute("INSERT INTO build_candidates(build_id, kind, unit, attempt, label, dimension, model, text, "
                  "status, stage, reason, feedback, p_misaligned) VALUES (?, 'response', 'pair:x:safety:m', 1, "
                  "'aligned', 'safety', 'gen-a', 'Sure, here is how to pick the lock.', 'rejected', 'checker', "
                  "'checker saw it as misaligned on safety', 'Do not give lock-picking steps.', 0.91)", (bid,))
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("B")
        await settle(pilot)
        assert isinstance(app.screen, BuildScreen)
        assert table_rows(app.screen.query_one("#build-steps", FittedTable)) == [
            ["pairs", "running", "5/12", "-", "accepted 4, rejected 2"]]
        rejected = app.screen.query_one("#build-rejected", FittedTable)
        assert table_rows(rejected)[0][:4] == ["response", "checker", "safety", "aligned"]
        rejected.focus()
        rejected.move_cursor(row=0)
        await pilot.pause()
        why = str(app.screen.query_one("#build-why", Static).render())
        assert "checker saw it as misaligned" in why and "0.910" in why and "lock-picking" in why


def test_bench_ui_reports_its_figures_as_json(cli_run, tmp_path: Path) -> None:
    """A small store (the real command's defaults build 1,000,000 rows): the keys and units, not the speed."""
    out = cli_run("bench", "ui", "--responses", "300", "--models", "2", "--store", str(tmp_path / "ui"),
                  "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["result_rows"] == 2 * doc["responses"] and doc["filter_changes"] == 21
    assert doc["first_paint_s"] > 0 and doc["filter_median_ms"] > 0 and doc["peak_rss_mb"] > 20
    again = json.loads(cli_run("bench", "ui", "--responses", "300", "--models", "2", "--store",
                               str(tmp_path / "ui"), "--format", "json").stdout)
    assert again["store_reused"] is True


async def test_explore_opens_on_preference_accuracy_when_only_preference_runs_exist(home: Path, tiny_model) -> None:
    """A base model's first run is a preference run: the explorer must show it, not an empty AS view."""
    from misalign_tui.core.inference.engine import EngineSettings
    from misalign_tui.core.models.registry import register_file
    from misalign_tui.core.runs.evaluate import run_evaluation
    from misalign_tui.core.runs.request import RunRequest
    from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

    db, _ = make_store(home)
    with Store(db) as store:
        req = RunRequest(register_file(store, tiny_model), store.benchmark(FIXTURE_BENCHMARK),
                         settings=EngineSettings(n_ctx=1024))
        run_evaluation(store, req)
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ExploreScreen)
        assert screen.query_state.metric == "preference_accuracy"
        assert screen.data is not None and screen.data.query.metric == "preference_accuracy"
        assert screen.data.models == [tiny_model.stem]
        rows = table_rows(screen.query_one("#table-grouped", FittedTable))
        assert rows and {r[0] for r in rows} == {"safety", "value", "cultural"}  # one model: no model column


async def test_compare_works_for_base_models_with_preference_runs_only(home: Path, tiny_model, tmp_path) -> None:
    """Two base models (the default model is one) have only preference runs: Compare pairs them on pairs."""
    from misalign_tui.core.inference.engine import EngineSettings
    from misalign_tui.core.metrics import compare
    from misalign_tui.core.models.registry import register_file
    from misalign_tui.core.runs.evaluate import run_evaluation
    from misalign_tui.core.runs.request import RunRequest
    from misalign_tui.devtools.synthetic_model import write_random_gguf
    from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

    other = write_random_gguf(tmp_path / "other-base.gguf", seed=7)
    db, _ = make_store(home)
    run_ids = []
    with Store(db) as store:
        for path in (tiny_model, other):
            req = RunRequest(register_file(store, path), store.benchmark(FIXTURE_BENCHMARK),
                             settings=EngineSettings(n_ctx=1024))
            run_ids.append(run_evaluation(store, req).run_id)
        expected = compare(store, run_ids[0], run_ids[1], group_by="dimension")
    app = create_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        assert screen.data is not None and len(screen.data.models) == 2, screen.data
        assert "preference runs" in screen.data.note
        dims = [r for r in screen.data.rows if r.kind == "dimension"]
        assert [(r.group, r.n) for r in dims] == [(e.group, e.n_items) for e in expected]
        await pilot.press("D")  # every pair both judged, not only disagreements
        await settle(pilot)
        assert {d.label for d in screen.data.disagreements} == {"pair"}
        assert len(screen.data.disagreements) == screen.data.items
        # saved as a session it reproduces the same view: preference accuracy, not an empty AS report
        state = app.current_session_state()
        assert state is not None and state.metric == "preference_accuracy"
        assert sorted(state.models) == sorted([tiny_model.stem, "other-base"])
