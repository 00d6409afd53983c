"""Resume is owned by the core: a run started on the CLI with non-default parameters (context size, seed,
sampling, one template) and interrupted by Ctrl+C resumes from the app — and from `runs resume` — as the same
run, and completes with one row per item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misalign_tui.cli import run as cli_run_module
from misalign_tui.core.errors import UserError
from misalign_tui.core.runs.identity import resume_request
from misalign_tui.core.store import Store
from misalign_tui.tui.app import create_app
from misalign_tui.tui.messages import RunFinished
from misalign_tui.tui.screens.run import RunScreen
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

PROMPTS = 40  # more than the writer commits at once, so the interrupt lands mid-run
ARGS = ("--benchmark", FIXTURE_BENCHMARK, "--method", "generate", "--templates", "1", "--max-tokens", "4",
        "--n-ctx", "2048", "--seed", "7", "--temperature", "0.5", "--format", "json")


def _interrupt_after_the_first_commit(monkeypatch) -> None:
    """Ctrl+C at a chosen point of the CLI run (a real KeyboardInterrupt through the real handlers): the one
    fault a test cannot time by sending a signal without depending on the machine's speed."""
    original = cli_run_module.ProgressView.__call__

    def call(self, ev) -> None:
        original(self, ev)
        if ev.phase == "scoring" and ev.items_done >= 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_run_module.ProgressView, "__call__", call)


def _start_interrupted(cli_run, home: Path, model: Path, monkeypatch) -> int:
    make_store(home, PROMPTS)
    _interrupt_after_the_first_commit(monkeypatch)
    res = cli_run("run", "--model", str(model), *ARGS)
    assert res.exit_code == 130 and "interrupted" in res.stderr
    monkeypatch.undo()
    with Store(home / "db" / "misalign.sqlite") as store:
        (run_id, status, done), = store.conn.execute("SELECT id, status, items_done FROM runs").fetchall()
    assert status == "interrupted" and 1 <= done < PROMPTS
    return int(run_id)


def _finished(home: Path, run_id: int) -> dict:
    with Store(home / "db" / "misalign.sqlite") as store:
        runs = store.conn.execute("SELECT id, status, items_done, items_total, params_json FROM runs "
                                  "WHERE method = 'generate'").fetchall()
        assert [r[0] for r in runs] == [run_id], "no second generate run was started"
        gens = store.conn.execute("SELECT count(*), count(DISTINCT prompt_id) FROM generations WHERE run_id = ?",
                                  (run_id,)).fetchone()
        return {"status": runs[0][1], "done": runs[0][2], "total": runs[0][3],
                "params": json.loads(runs[0][4]), "generations": tuple(gens)}


async def test_a_cli_run_with_non_default_parameters_resumes_in_the_app(
        cli_run, home: Path, tiny_chat_model: Path, monkeypatch) -> None:
    run_id = _start_interrupted(cli_run, home, tiny_chat_model, monkeypatch)
    finished: list = []
    app = create_app(home)
    async with app.run_test(size=(120, 40), message_hook=lambda m: finished.append(m)
                            if isinstance(m, RunFinished) else None) as pilot:
        await pilot.press("r")
        for _ in range(2):
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        await pilot.press("u")  # resume the highlighted interrupted run
        for _ in range(4):
            await app.workers.wait_for_complete()
            await pilot.pause()
    assert finished and finished[-1].status.state == "complete", finished and finished[-1].status
    assert finished[-1].status.run_id == run_id
    got = _finished(home, run_id)
    assert got["status"] == "complete" and got["done"] == got["total"] == PROMPTS
    assert got["generations"] == (PROMPTS, PROMPTS)  # one row per prompt: nothing duplicated, nothing lost
    assert got["params"]["n_ctx"] == 2048 and got["params"]["sampling"]["seed"] == 7
    assert got["params"]["sampling"]["temperature"] == 0.5


def test_runs_resume_on_the_cli_continues_the_same_run(cli_run, home: Path, tiny_chat_model: Path,
                                                       monkeypatch) -> None:
    run_id = _start_interrupted(cli_run, home, tiny_chat_model, monkeypatch)
    res = cli_run("runs", "resume", str(run_id), "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["id"] == run_id
    assert _finished(home, run_id)["generations"] == (PROMPTS, PROMPTS)
    res = cli_run("runs", "resume", str(run_id))
    assert res.exit_code == 2 and "is complete" in res.stderr


def test_resume_refuses_a_run_whose_model_file_changed(cli_run, home: Path, tiny_chat_model: Path,
                                                      monkeypatch) -> None:
    run_id = _start_interrupted(cli_run, home, tiny_chat_model, monkeypatch)
    with Store(home / "db" / "misalign.sqlite") as store:
        store.conn.execute("UPDATE runs SET model_sha256 = 'f00d' WHERE id = ?", (run_id,))
        with pytest.raises(UserError, match="no longer the file the run started on"):
            resume_request(store, run_id)
