"""Evaluation runs on real llama.cpp (tiny models) and real SQLite files: resume, kill -9, lease, bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from misalign_tui.core.errors import Cancelled
from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.models.registry import register_file
from misalign_tui.core.runs.catalog import list_runs
from misalign_tui.core.runs.evaluate import run_evaluation
from misalign_tui.core.runs.request import RunRequest
from misalign_tui.core.store import Store
from tests.eval_fixtures import FIXTURE_BENCHMARK, make_store

ROOT = Path(__file__).resolve().parents[1]


def _request(store: Store, model_path: Path, **kw) -> RunRequest:
    model = register_file(store, model_path)
    kw.setdefault("settings", EngineSettings(n_ctx=1024))
    return RunRequest(model, store.benchmark(FIXTURE_BENCHMARK), **kw)


def _counts(db: Path, table: str, key: str, run_id: int) -> tuple[int, int]:
    with sqlite3.connect(db) as c:
        return c.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()


def test_judge_run_default_method_and_rows(home, tiny_chat_model):
    db, _ = make_store(home)
    with Store(db) as store:
        events = []
        result = run_evaluation(store, _request(store, tiny_chat_model), progress=events.append)
        assert result.status == "complete" and result.items_total == 18 * 3 == result.items_done  # 9 pairs = 18 responses
        run = list_runs(store, result.run_id)[0]
        assert run["method"] == "judge" and run["templates"] == 3
        prov = run["provenance"]
        assert prov["model_sha256"] and prov["engine"]["device"] and prov["template_version"]
        assert "<|assistant|>" in prov["engine"]["chat_template"]
        texts = store.conn.execute("SELECT text FROM run_templates WHERE run_id = ?", (result.run_id,)).fetchall()
        assert len(texts) == 3 and all("{prompt}" in t[0] and "<|user|>" in t[0] for t in texts)
        assert events[-1].items_done == events[-1].items_total == 54 and events[-1].phase == "done"
        p = [r[0] for r in store.conn.execute("SELECT p_misaligned FROM judge_results")]
        assert len(p) == 54 and all(0 <= x <= 1 for x in p)
        again = run_evaluation(store, _request(store, tiny_chat_model))
        assert again.run_id == result.run_id and again.resumed
    assert _counts(db, "judge_results", "response_id || '-' || template", result.run_id) == (54, 54)


def test_preference_is_default_for_base_models_and_filters_apply(home, tiny_model):
    db, _ = make_store(home)
    with Store(db) as store:
        req = _request(store, tiny_model, filters=Filters.parse("dimension=safety"))
        result = run_evaluation(store, req)
        run = list_runs(store, result.run_id)[0]
        assert run["method"] == "preference" and result.items_total == 3  # safety pairs on prompts 0, 2, 4
        rows = store.conn.execute("SELECT aligned_tokens, misaligned_tokens, prefers_aligned FROM preference_results"
                                  ).fetchall()
        assert len(rows) == 3 and all(a > 0 and m > 0 and p in (0, 1) for a, m, p in rows)
        limited = run_evaluation(store, _request(store, tiny_model, limit=2))
        assert limited.items_total == 3 and limited.run_id != result.run_id  # prompt 0 has 2 pairs, prompt 1 one


def test_interrupted_run_resumes_with_one_row_per_item_and_template(home, tiny_chat_model):
    db, _ = make_store(home, n_prompts=12)
    cancel = threading.Event()

    def stop_after_first_commit(ev):
        if ev.items_done > 0:
            cancel.set()

    with Store(db) as store:
        with pytest.raises(Cancelled):
            run_evaluation(store, _request(store, tiny_chat_model), progress=stop_after_first_commit, cancel=cancel)
        run = list_runs(store)[0]
        assert run["status"] == "interrupted" and 0 < run["items_done"] < run["items_total"]
        result = run_evaluation(store, _request(store, tiny_chat_model))
        assert result.resumed and result.status == "complete" and result.run_id == run["id"]
        assert len(list_runs(store)) == 1
    total = 36 * 3  # 18 pairs
    assert _counts(db, "judge_results", "response_id || '-' || template", result.run_id) == (total, total)


def test_generate_run_rates_answers_per_dimension_and_links_the_judge_run(home, tiny_model, tiny_chat_model):
    db, _ = make_store(home, n_prompts=3)
    with Store(db) as store:
        judge = register_file(store, tiny_chat_model)
        req = _request(store, tiny_model, method="generate", judge_model=judge, templates=2)
        req.sampling = type(req.sampling)(max_tokens=12, seed=5)
        result = run_evaluation(store, req)
        assert result.status == "complete" and result.items_total == 3 and result.judge_run_id
        # prompts 0 and 2 carry safety+value, prompt 1 cultural: (2 + 1 + 2) dimensions x 2 templates
        assert store.conn.execute("SELECT count(*) FROM generation_judgments").fetchone()[0] == 10
        gens = store.conn.execute("SELECT prompt_id, text, seed FROM generations ORDER BY prompt_id").fetchall()
        assert len(gens) == 3 and len({g[2] for g in gens}) == 3
        judge_run = list_runs(store, result.judge_run_id)[0]
        assert judge_run["method"] == "judge" and judge_run["status"] == "complete"
        assert list_runs(store, result.run_id)[0]["provenance"]["judge_model_judge_run_id"] == result.judge_run_id


def test_long_prompt_flags_truncation(home, tiny_chat_model):
    db, bid = make_store(home, n_prompts=1)
    with Store(db) as store:
        store.conn.execute("UPDATE prompts SET text = ? WHERE benchmark_id = ?",
                           ("please explain why the family should " * 60, bid))
        result = run_evaluation(store, _request(store, tiny_chat_model, templates=1,
                                                settings=EngineSettings(n_ctx=256, n_batch=64)))
        flags = [r[0] for r in store.conn.execute("SELECT truncated FROM judge_results WHERE run_id = ?",
                                                   (result.run_id,))]
        assert flags and all(flags)


def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "misalign_tui", "--home", str(home), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_run_then_rerun_completes_once(home, tiny_chat_model, cli_run):
    db, _ = make_store(home, n_prompts=40)
    args = ("run", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK, "--n-ctx", "1024")
    proc = _cli(home, *args)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db) as c:
                done = c.execute("SELECT count(*) FROM judge_results").fetchone()[0]
            if done > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make the fixture bigger"
        # a second process is refused while the first one lives
        second = cli_run(*args)
        assert second.exit_code == 2 and "already running" in second.output
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(db) as c:
        killed_at = c.execute("SELECT count(*) FROM judge_results").fetchone()[0]
    total = 120 * 3  # 60 pairs
    assert 0 < killed_at < total
    rerun = cli_run(*args, "--format", "json")
    assert rerun.exit_code == 0, rerun.output
    with Store(db) as store:
        runs = list_runs(store)
    assert len(runs) == 1 and runs[0]["status"] == "complete" and runs[0]["items_done"] == total
    assert _counts(db, "judge_results", "response_id || '-' || template", runs[0]["id"]) == (total, total)


def test_bad_model_file_is_one_line_error_exit_2(home, cli_run):
    make_store(home)
    bad = home / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    result = cli_run("run", "--model", str(bad), "--benchmark", FIXTURE_BENCHMARK)
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error:") and "broken.gguf" in line


def test_runs_list_and_show_json(home, tiny_model, cli_run):
    import json

    db, _ = make_store(home, n_prompts=2)
    assert cli_run("run", "--model", str(tiny_model), "--benchmark", FIXTURE_BENCHMARK).exit_code == 0
    listed = cli_run("runs", "list", "--format", "json")
    rows = json.loads(listed.stdout)
    assert set(rows[0]) >= {"id", "model", "benchmark", "method", "status", "items_total", "items_done",
                            "templates", "started_at", "finished_at"}
    shown = json.loads(cli_run("runs", "show", str(rows[0]["id"]), "--format", "json").stdout)
    assert shown["status"] == "complete" and shown["templates_text"][0]["name"] == "preference"
    assert cli_run("runs", "show", "999").exit_code == 2


def test_bench_engine_json(home, tiny_chat_model, cli_run):
    import json

    make_store(home, n_prompts=4)
    result = cli_run("bench", "engine", "--model", str(tiny_chat_model), "--benchmark", "fixture-bench",
                     "--items", "12", "--naive-items", "4",
                     "--preference-pairs", "2", "--n-ctx", "1024", "--gen-prompts", "4", "--gen-tokens", "6",
                     "--gen-batches", "1,4", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["generate_tokens_per_s"]) == {"1", "4"} and min(data["generate_tokens_per_s"].values()) > 0
    assert data["generate_tokens"]["1"] == data["generate_tokens"]["4"] > 0
    # shared-body templates decode the body once per response: fewer tokens than judge-v1 on the same items
    assert data["judge_k3_items"] == 3 * 12 and data["judge_k3_items_per_s"] > 0 < data["judge_k3_v1_items_per_s"]
    assert data["judge_k3_unique_tokens"] < data["judge_k3_v1_unique_tokens"]
    for key in ("raw_tokens_per_s", "judge_items_per_s", "judge_tokens_per_s", "naive_items_per_s",
                "preference_items_per_s", "peak_rss_mb"):
        assert data[key] > 0
    assert data["items_source"] == "fixture-bench@1" and data["judge_items"] == 12
    assert data["judge_unique_tokens"] < data["judge_total_tokens"]
    assert data["judge_vs_naive_max_abs_diff"] < 1e-4


def test_ctrl_c_mid_run_says_one_line_and_the_rerun_resumes(home, tiny_chat_model, cli_run):
    db, _ = make_store(home, n_prompts=40)
    args = ("run", "--model", str(tiny_chat_model), "--benchmark", FIXTURE_BENCHMARK, "--n-ctx", "1024")
    proc = _cli(home, *args)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db) as c:
                if c.execute("SELECT count(*) FROM judge_results").fetchone()[0]:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be interrupted; make the fixture bigger"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; finished work is kept" in err
    with Store(db) as store:
        runs = list_runs(store)
    assert len(runs) == 1 and runs[0]["status"] == "interrupted" and 0 < runs[0]["items_done"] < 360
    rerun = cli_run(*args, "--format", "json")
    assert rerun.exit_code == 0, rerun.output
    with Store(db) as store:
        runs = list_runs(store)
    assert len(runs) == 1 and runs[0]["status"] == "complete" and runs[0]["items_done"] == 360
    assert _counts(db, "judge_results", "response_id || '-' || template", runs[0]["id"]) == (360, 360)
