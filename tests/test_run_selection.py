"""One rule for the run to show, one headline figure per method: `report`, `sessions report`, Explore and the
dashboard pick the same run for a model, pass over later runs without results (and say so), and the dashboard
and the Run screen show the same headline for a generate run."""

from __future__ import annotations

import json
from pathlib import Path

from misalign_tui.core import metrics
from misalign_tui.core.metrics.vocabulary import HEADLINE, METHODS, headline
from misalign_tui.core.runs.catalog import runs_to_show
from misalign_tui.core.runs.evaluate import run_evaluation
from misalign_tui.core.runs.request import RunRequest
from misalign_tui.core.sessions import SessionState, save_session
from misalign_tui.core.store import Store
from misalign_tui.core.views.explore import ExploreQuery, read_explore
from misalign_tui.core.views.workspace import read_summary
from misalign_tui.core.workspace import open_workspace
from misalign_tui.tui.run_control import QueuedRun, RunSignals, execute
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store


def _complete_then_empty_run(home: Path, model_path: Path) -> tuple[int, int, str]:
    """A complete preference run, then a later run of the same model interrupted before its first result."""
    from misalign_tui.core.models.registry import register_file

    make_store(home)
    with Store(home / "db" / "misalign.sqlite") as store:
        model = register_file(store, model_path)
        bench = store.benchmark(FIXTURE_BENCHMARK)
        done = run_evaluation(store, RunRequest(model, bench, method="preference")).run_id
        store.conn.execute(
            "INSERT INTO runs(model_id, model_sha256, benchmark_id, method, params_json, params_hash, templates, "
            "status, items_total, items_done) VALUES (?, ?, ?, 'preference', '{}', 'other', 1, 'interrupted', 12, 0)",
            (model.id, model.identity, bench.id))
        empty = store.conn.execute("SELECT max(id) FROM runs").fetchone()[0]
        return done, empty, model.name


def test_every_face_shows_the_latest_run_with_results(cli_run, home: Path, tiny_model: Path) -> None:
    done, empty, name = _complete_then_empty_run(home, tiny_model)
    with Store(home / "db" / "misalign.sqlite") as store:
        selection = runs_to_show(store)
        assert [r.id for r in selection.runs] == [done] and [r.id for r in selection.skipped] == [empty]
        explore = read_explore(store, ExploreQuery(metric="preference_accuracy"))
        assert explore.models == [name] and f"run {empty}" in explore.note
        save_session(store, "s", SessionState([name], None, {}, "preference_accuracy", "dimension"))
    res = cli_run("report", "--format", "json", "--bootstrap", "0")
    assert res.exit_code == 0, res.output
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == [done]
    assert f"skipped runs without results: run {empty}" in res.stderr
    res = cli_run("report", "--model", name, "--format", "json", "--bootstrap", "0")
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == [done]
    assert cli_run("sessions", "report", "s").exit_code == 0
    text = (home / "reports" / "s.md").read_text()
    assert f"(run {done})" in text and f"run {empty} ({name}, preference, interrupted, no results)" in text


def test_the_dashboard_and_the_run_screen_show_one_headline_for_a_generate_run(home: Path,
                                                                                tiny_chat_model: Path) -> None:
    from misalign_tui.core.inference.requests import Sampling
    from misalign_tui.core.models.registry import register_file
    from misalign_tui.core.runs.request import RunSpec

    make_store(home)
    with Store(home / "db" / "misalign.sqlite") as store:
        name = register_file(store, tiny_chat_model).name
    workspace = open_workspace(home)
    spec = RunSpec(name, "generate", benchmark=FIXTURE_BENCHMARK, limit=3, templates=1,
                   sampling=Sampling(max_tokens=4))
    status = execute(workspace, QueuedRun(name, "generate", spec=spec), RunSignals(), lambda st: None)
    assert status.state == "complete", status.error
    with Store(workspace.db_path) as store:
        (row,) = metrics.profile(store, status.run_id)
    assert status.headline_label == "Satisfaction" and status.headline == row.satisfaction
    dashboard = {r.id: r for r in read_summary(workspace).runs}[status.run_id]
    assert (dashboard.headline_label, dashboard.headline) == (status.headline_label, status.headline)


def test_every_method_has_one_headline_metric_that_profiles_carry() -> None:
    assert set(HEADLINE) == set(METHODS)
    for method in METHODS:
        key = headline(method)
        assert method in key.methods and key.value is not None
        assert hasattr(metrics.MetricRow(run_id=1, method=method, group=None), key.value)
