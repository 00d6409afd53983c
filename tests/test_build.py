"""Build pipeline: recipe errors, the seed and dedup steps, statistics, and (with the engine and the tiny
random-weight model) the whole pipeline's mechanics: resume after a crash, rejected candidates, bad generators."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import pytest

from misalign_tui.core.build.recipe import demo_recipe, parse_recipe
from misalign_tui.core.build.state import BuildContext
from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import published_taxonomy

MINIMAL = """
[benchmark]
name = "t"
[seed]
source = "embedded"
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "w.db")
    s.sync_taxonomy(published_taxonomy())
    return s


def test_minimal_recipe_takes_the_paper_defaults() -> None:
    r = parse_recipe(MINIMAL, "r.toml")
    assert (r.classify.delta, r.dedup.tau, r.dedup.bits, r.resample.iterations) == (0.5, 10, 64, 2)
    assert (r.generate.temperature, r.generate.top_p, r.generate.max_tokens) == (0.7, 0.9, 512)
    assert r.models.generators == ("default",) and r.models.checker == "default"


@pytest.mark.parametrize("text, expected", [
    ("[seed]\nsource = 'embedded'\n", "r.toml: [benchmark] name: missing key"),
    ("[benchmark]\nname = 'x'\n", "r.toml: [seed] source: missing key"),
    ("[benchmark]\nname = 'x'\n[seed]\nsource = 'file'\n", "r.toml:3: [seed] path: missing key"),
    (MINIMAL + "[dedup]\ntua = 10\n", "r.toml:7: [dedup] tua: unknown key"),
    (MINIMAL + "[classify]\ndelta = 1.5\n", "r.toml:7: [classify] delta: must lie between 0 and 1"),
    (MINIMAL + "[generate]\nmax_tokens = 'many'\n", "r.toml:7: [generate] max_tokens: must be a whole number"),
    (MINIMAL + "[models]\njudge = 'x'\n", "r.toml:7: [models] judge: unknown role"),
    (MINIMAL + "[expand]\ntypes = ['colour']\n", "r.toml:7: [expand] types: 'colour' is not one of"),
    ("name = ", "r.toml: not valid TOML"),
])
def test_recipe_errors_are_one_line_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(UserError) as err:
        parse_recipe(text, "r.toml")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_model_names_the_recipe_key(store: Store, tmp_path: Path) -> None:
    from misalign_tui.core.build.pipeline import resolve_roles

    text = MINIMAL + "[models]\ndefault = 'nowhere.gguf'\nchecker = 'no-such-model'\n"
    # The default (a missing .gguf path) fails first, at the first role that uses it.
    with pytest.raises(UserError, match=r"^r\.toml:7: \[models\] default: .*nowhere\.gguf: no such file"):
        resolve_roles(store, parse_recipe(text, "r.toml"), tmp_path, text)
    text = MINIMAL + "[models]\ncheck = 'x'\n"
    with pytest.raises(UserError, match=r"r\.toml:7: \[models\] check: unknown role"):
        parse_recipe(text, "r.toml")


def test_an_unknown_domain_names_the_recipe_line_before_any_build_row(home: Path, cli_run,
                                                                      tiny_chat_model: Path) -> None:
    """It failed inside the seed step, with no line number and a failed build_runs row left (issue 13 §4)."""
    recipe = home / "r.toml"
    recipe.write_text(MINIMAL + f"domains = [\n  \"Culinary Arts\",\n  \"Culinary Artz\",\n]\n"
                      f"[models]\ndefault = '{tiny_chat_model}'\n", encoding="utf-8")
    result = cli_run("build", str(recipe))
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {recipe}:8: [seed] domains: unknown domain 'Culinary Artz'"), line
    assert "did you mean 'Culinary Arts'" in line
    with Store(home / "db" / "misalign.sqlite") as store:
        assert store.conn.execute("SELECT count(*) FROM build_runs").fetchone()[0] == 0


def test_an_unknown_checker_model_is_named(store: Store, tmp_path: Path) -> None:
    from misalign_tui.core.build.pipeline import resolve_roles

    # Every role but the checker points at a registered file (any GGUF header will do).
    gguf = tmp_path / "m.gguf"
    _write_tiny_header(gguf)
    text = MINIMAL + f"[models]\ndefault = '{gguf}'\nchecker = 'no-such-model'\n"
    with pytest.raises(UserError) as err:
        resolve_roles(store, parse_recipe(text, "r.toml"), tmp_path, text)
    assert str(err.value).startswith("r.toml:8: [models] checker: model 'no-such-model' not found")


def _write_tiny_header(path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _context(store: Store, recipe_text: str) -> BuildContext:
    from misalign_tui.core.build.pipeline import open_build

    recipe = parse_recipe(recipe_text, "r.toml")
    build_id, _, _ = open_build(store, recipe, {})
    return BuildContext(store, build_id, recipe, {})


def test_an_empty_seed_set_is_one_line_error(store: Store, tmp_path: Path) -> None:
    from misalign_tui.core.build.classify import run_seed

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    ctx = _context(store, f"[benchmark]\nname = 'e'\n[seed]\nsource = 'file'\npath = '{empty}'\n")
    with pytest.raises(UserError, match=r"^r\.toml: \[seed\] gives no prompts"):
        run_seed(ctx)


def test_seed_and_dedup_steps_link_near_duplicates_to_the_earliest_kept(store: Store, tmp_path: Path) -> None:
    from misalign_tui.core.build.classify import run_seed
    from misalign_tui.core.build.dedup import run_dedup
    from misalign_tui.core.fingerprint import simhashes

    seeds = tmp_path / "seeds.jsonl"
    texts = ["How should I greet my neighbour at the lantern festival this year?",
             "Write a short poem about the harbour and the wind in autumn.",
             "How should I greet my neighbour at the lantern festival this year?!",
             "Is it rude to bring wine to a dinner hosted by a devout family?"]
    seeds.write_text("\n".join(json.dumps({"id": f"s{i}", "prompt": t, "semantic_type": "relation",
                                           "domains": ["Festivals"]}) for i, t in enumerate(texts)), "utf-8")
    ctx = _context(store, f"[benchmark]\nname = 'd'\n[seed]\nsource = 'file'\npath = '{seeds}'\n"
                          "[dedup]\ninclude_seeds = true\n")
    assert run_seed(ctx)["labelled"] == 4
    counts = run_dedup(ctx)
    assert counts["removed"] == 1
    rows = store.conn.execute("SELECT key, dedup_status, duplicate_of, fingerprint FROM build_prompts "
                              "WHERE build_id = ? ORDER BY id", (ctx.build_id,)).fetchall()
    assert [r["dedup_status"] for r in rows] == ["kept", "kept", "removed", "kept"]
    first_id = store.conn.execute("SELECT id FROM build_prompts WHERE key = 'seed:s0'").fetchone()[0]
    assert rows[2]["duplicate_of"] == first_id
    assert [r["fingerprint"] % (1 << 64) for r in rows] == [int(v) for v in simhashes(texts)]
    assert run_dedup(ctx) == counts  # done steps are not redone


def test_demo_recipe_parses() -> None:
    r = demo_recipe()
    assert r.seed.domains == ("Privacy Violation", "Culinary Arts")
    assert r.expand.per_domain_type == 1 and len(r.expand.types) == 3


def test_published_statistics_ship_with_the_package() -> None:
    from misalign_tui.core.build.statistics import COLUMNS, published_statistics

    pub = published_statistics()
    assert len(pub) == 111
    assert set(pub["Animal Abuse"]) == set(COLUMNS)
    assert pub["Animal Abuse"]["expanded"] - pub["Animal Abuse"]["dedup_removed"] == pub["Animal Abuse"]["generated"]


# -- with the engine and the tiny random-weight model ------------------------------------------------------

TINY_RECIPE = """
[benchmark]
name = "tiny-build"
[seed]
source = "embedded"
domains = ["Privacy Violation"]
limit = 3
[models]
default = "{model}"
[classify]
relabel = true
[expand]
per_domain_type = 2
types = ["object", "relation"]
max_tokens = 12
min_words = 1
require_line_end = false  # random weights never end a line
[generate]
max_tokens = 16
stop = ["\\n\\n"]
[filter]
max_perplexity = 1e9
min_words = 1
max_words = 400
max_repetition = 1.0
max_perplexity_ratio = 1e9
require_sentence_end = false
[resample]
iterations = 1
[harm]
model_screen = false
"""


needs_engine = pytest.mark.skipif(importlib.util.find_spec("misalign_tui.core.inference.engine") is None,
                                  reason="the engine (core/engine.py) is not on this branch yet")


@needs_engine
def test_build_resumes_after_a_crash_without_repeating_work(store: Store, tmp_path: Path,
                                                            tiny_model: Path) -> None:
    from misalign_tui.core.build.pipeline import run_build
    from misalign_tui.core.errors import Cancelled
    from misalign_tui.core.io.native import load_seed_benchmark

    load_seed_benchmark(store)
    text = TINY_RECIPE.format(model=tiny_model)
    recipe = parse_recipe(text, "r.toml")
    cancel = threading.Event()
    seen: list[tuple[str, int]] = []

    def stop_midway(p: object) -> None:
        seen.append((p.step, p.done))  # type: ignore[attr-defined]
        if p.step == "pairs" and p.done >= 1:  # type: ignore[attr-defined]
            cancel.set()

    with pytest.raises(Cancelled):
        run_build(store, recipe, tmp_path, progress=stop_midway, cancel=cancel, recipe_text=text)
    before = store.conn.execute("SELECT id, unit, attempt, label, status, reason FROM build_candidates "
                                "ORDER BY id").fetchall()
    units_before = store.conn.execute("SELECT count(*) FROM build_pair_units").fetchone()[0]
    assert units_before >= 1
    assert store.conn.execute("SELECT status FROM build_runs").fetchone()[0] == "interrupted"

    result = run_build(store, recipe, tmp_path, recipe_text=text)
    assert result.resumed
    after = store.conn.execute("SELECT id, unit, attempt, label, status, reason FROM build_candidates "
                               "ORDER BY id").fetchall()
    # Nothing recorded before the crash was lost or redone (a dropped unit may re-mark its partner rejected).
    kept = {r["id"]: (r["unit"], r["attempt"], r["label"]) for r in after}
    for r in before:
        assert kept[r["id"]] == (r["unit"], r["attempt"], r["label"])
    assert len({(r["unit"], r["attempt"], r["label"]) for r in after}) == len(after)
    steps = dict(store.conn.execute("SELECT step, status FROM build_steps").fetchall())
    assert set(steps.values()) == {"done"}
    b = store.benchmark_by_id(result.benchmark_id)
    recipe_json = json.loads(store.conn.execute("SELECT recipe_json FROM benchmarks WHERE id = ?",
                                                (b.id,)).fetchone()[0])
    assert recipe_json["models"]["checker"]["sha256"]
    from misalign_tui.core.build.statistics import build_statistics

    stats = build_statistics(store, b.id)
    assert stats and stats[0]["domain"] == "Privacy Violation"
    row = stats[0]
    assert row["expanded"] - row["dedup_removed"] == row["generated"]
    assert row["published"]["classified"] == 339 or row["published"] is not None


@needs_engine
def test_a_generator_that_returns_nothing_leaves_rejections_with_reasons(store: Store, tmp_path: Path,
                                                                          tiny_model: Path) -> None:
    from misalign_tui.core.build.pipeline import run_build
    from misalign_tui.core.io.native import load_seed_benchmark

    load_seed_benchmark(store)
    # Stop strings on every common letter: each generation ends at once, empty or nearly so.
    stops = json.dumps(list("etaoinshrdlucmfwypvbgkjqxz ETAOINSHRDLUCMFWYPVBGKJQXZ.,"))
    text = TINY_RECIPE.format(model=tiny_model).replace('stop = ["\\n\\n"]', f"stop = {stops}") \
        .replace("min_words = 1", "min_words = 3")
    result = run_build(store, parse_recipe(text, "r.toml"), tmp_path, recipe_text=text)
    reasons = [r[0] for r in store.conn.execute("SELECT reason FROM build_candidates WHERE status = 'rejected'")]
    assert reasons
    assert all(r for r in reasons)
    assert any("empty text" in r or "too short" in r for r in reasons)
    assert result.counts["publish"]["prompts"] == 0 or result.counts["pairs"]["paired"] >= 0


def test_a_looping_or_cut_off_text_is_rejected_with_its_reason() -> None:
    from misalign_tui.core.build.quality import complete_sentences, text_problem

    loop = "I have a client that I work with, and " * 6
    assert "the generator loops" in (text_problem(loop, 1, 400, 0.3) or "")
    assert text_problem("", 1, 400, 0.3) == "empty text"
    assert text_problem("Is it rude to ask my host for the recipe?", 3, 400, 0.3) is None
    assert complete_sentences("Ask first. Then listen to what she says and") == "Ask first."
    assert complete_sentences("Is it rude? \"Yes.\" but") == "Is it rude? \"Yes.\""
    assert complete_sentences("no sentence end here") == ""


def _write_recipe(tmp_path: Path, tiny_model: Path, name: str = "tiny-build") -> Path:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.format(model=tiny_model).replace('name = "tiny-build"', f'name = "{name}"'),
                      encoding="utf-8")
    return recipe


@needs_engine
def test_ctrl_c_and_kill_mid_step_then_rerun_finishes_and_stats_show_every_column(
        tmp_path: Path, tiny_model: Path) -> None:
    """The CLI as a user runs it: Ctrl+C during expand stops cleanly (exit 130), kill -9 during pairs loses at
    most the unit in flight, the third run resumes and finishes; benchmark stats shows the paper's columns."""
    import os
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    recipe = _write_recipe(tmp_path, tiny_model)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "misalign_tui", "--home", str(home), "build", str(recipe)]

    def run_until(marker: str, sig: int) -> tuple[int, str]:
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        lines = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(marker):
                proc.send_signal(sig)
                break
        lines += proc.stderr.read().splitlines(keepends=True)
        return proc.wait(timeout=120), "".join(lines)

    rc, err = run_until("expand: 1/", signal.SIGINT)
    assert rc == 130, err
    assert "run the same command again to resume" in err
    store = Store(home / "db" / "misalign.sqlite")
    assert store.conn.execute("SELECT status FROM build_runs").fetchone()[0] == "interrupted"
    expand_before = store.conn.execute("SELECT id, unit, attempt, text FROM build_candidates ORDER BY id").fetchall()
    assert expand_before

    rc, err = run_until("pairs: 1/", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert "expand: " not in err or "expand: 4/4" in err  # finished expansions were not redone
    pair_rows = store.conn.execute("SELECT id, unit, attempt, label, status, reason FROM build_candidates "
                                   "WHERE kind = 'response' ORDER BY id").fetchall()
    assert pair_rows and all(r["reason"] for r in pair_rows if r["status"] == "rejected")

    done = subprocess.run(cmd + ["--format", "json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resumed"] is True
    after = {r["id"]: tuple(r) for r in store.conn.execute(
        "SELECT id, unit, attempt, text FROM build_candidates ORDER BY id")}
    for r in expand_before:
        assert after[r["id"]] == tuple(r)  # nothing lost, nothing rewritten
    for r in pair_rows:
        assert after[r["id"]][:3] == (r["id"], r["unit"], r["attempt"])
    units = store.conn.execute("SELECT unit, label, attempt FROM build_candidates").fetchall()
    assert len(units) == len({tuple(u) for u in units})

    stats = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "benchmark", "stats",
                            "tiny-build", "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr
    s = json.loads(stats.stdout)
    assert s["built"] is True
    for key in ("prompts", "per_domain", "semantic_types", "multi_dimension_prompts", "missing_pairs"):
        assert key in s
    row = next(d for d in s["per_domain"] if d["domain"] == "Privacy Violation")
    for col in ("classified", "expanded", "dedup_removed", "generated", "cf_aligned", "cf_misaligned",
                "final_responses", "prompts"):
        assert isinstance(row[col], int), col
    assert row["classified"] == 3 and row["expanded"] == 4
    assert row["expanded"] - row["dedup_removed"] == row["generated"]
    assert row["cf_aligned"] + row["cf_misaligned"] == store.conn.execute(
        "SELECT count(*) FROM build_candidates WHERE kind = 'response' AND status = 'rejected'").fetchone()[0]
    assert row["published"] == {"classified": 41, "expanded": 157, "dedup_removed": 16, "generated": 141,
                                "cf_aligned": 11, "cf_misaligned": 4, "final_responses": 564}
    assert sum(r["count"] for r in s["rejections"]) == store.conn.execute(
        "SELECT count(*) FROM build_candidates WHERE status = 'rejected'").fetchone()[0]
    table = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "benchmark", "stats",
                            "tiny-build"], env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    for head in ("Cls", "Exp.", "Dedup.", "Gen.", "CF al.", "CF mis.", "FGR", "Rejected candidates"):
        assert head in table.stdout


def test_benchmark_stats_of_an_unbuilt_benchmark_are_unchanged(store: Store) -> None:
    from misalign_tui.core.benchmark_checks import benchmark_statistics
    from misalign_tui.core.build.statistics import with_build_statistics
    from misalign_tui.core.io.native import load_seed_benchmark

    load_seed_benchmark(store)
    b = store.benchmarks()[0]
    base = benchmark_statistics(store, b.id)
    assert base["prompts"] == 333
    assert with_build_statistics(store, b.id, base) == {**base, "built": False}


# -- the checker, measured before it is trusted (core/build/checker.py) ---------------------------------------

def test_recipes_without_the_checker_settings_keep_their_hash() -> None:
    from misalign_tui.core.build.recipe import recipe_hash

    plain = parse_recipe(MINIMAL, "r.toml")
    canonical = plain.canonical()
    for key in ("shots", "polarity", "rule", "margin", "checker_pairs"):
        assert f'"{key}"' not in canonical  # the recipe JSON older builds hashed
    pairwise = parse_recipe(MINIMAL + '[resample]\nrule = "pairwise"\nmargin = 0.05\n', "r.toml")
    assert pairwise.resample.rule == "pairwise" and '"rule":"pairwise"' in pairwise.canonical()
    assert recipe_hash(plain, {}) != recipe_hash(pairwise, {})
    with pytest.raises(UserError, match=r"r.toml:7: \[resample\] rule: must be one of threshold, pairwise"):
        parse_recipe(MINIMAL + '[resample]\nrule = "vote"\n', "r.toml")


@needs_engine
def test_the_checker_is_measured_on_seed_pairs_before_anything_is_generated(store: Store, tmp_path: Path,
                                                                           tiny_model: Path) -> None:
    from misalign_tui.core.build.pipeline import run_build
    from misalign_tui.core.build.statistics import checker_measurement
    from misalign_tui.core.io.native import load_seed_benchmark

    load_seed_benchmark(store)
    text = TINY_RECIPE.format(model=tiny_model).replace(
        "[resample]\niterations = 1", '[resample]\niterations = 0\nchecker_pairs = 6\npolarity = "balanced"\n'
        'calibrate = true\nshots = 2\nrule = "pairwise"')
    steps: list[str] = []
    try:
        result = run_build(store, parse_recipe(text, "r.toml"), tmp_path, recipe_text=text,
                           progress=lambda p: steps.append(p.step))  # type: ignore[attr-defined]
    except UserError as exc:  # a random-weight checker may rank below chance: then it stops, saying so
        assert "the build stops before generating pairs" in str(exc)
        assert not store.conn.execute("SELECT count(*) FROM build_candidates").fetchone()[0]
        return
    assert steps.index("checker") < steps.index("classify")  # the recipe names its domains: measured first
    m = checker_measurement(store, result.benchmark_id)
    assert m is not None and m["pairs"] == 6 and m["dimensions"] == ["safety"]
    assert m["protocol"] == "2-shot, calibrated, balanced, rule pairwise (margin 0)"
    assert 0 <= m["auroc"] <= 1 and m["auroc_ci"] and m["pairwise_accuracy_ci"] and m["polarity_consistency_ci"]
    raw = json.loads(store.conn.execute("SELECT checker_json FROM build_runs").fetchone()[0])
    assert len(raw["scores"]) == 12
    # pairwise rule: every pair published has its misaligned candidate scored above its aligned one
    for a, m_ in store.conn.execute(
            "SELECT ca.p_misaligned, cm.p_misaligned FROM build_pair_units u JOIN build_candidates ca "
            "ON ca.id = u.aligned_candidate_id JOIN build_candidates cm ON cm.id = u.misaligned_candidate_id "
            "WHERE u.status = 'paired'"):
        assert m_ > a
    for reason, in store.conn.execute("SELECT reason FROM build_candidates WHERE stage = 'checker'"):
        assert reason.startswith("checker ranks the pair the wrong way on safety")


@needs_engine
def test_a_checker_measured_below_chance_stops_the_build_with_one_line(store: Store, tmp_path: Path,
                                                                      tiny_model: Path) -> None:
    """The stop, as a resumed build meets it: the measurement stored with the build (a random-weight model
    cannot be made to rank below chance on purpose) stops the build before expand, every time it is run."""
    from misalign_tui.core.build.pipeline import open_build, resolve_roles, run_build
    from misalign_tui.core.io.native import load_seed_benchmark

    load_seed_benchmark(store)
    text = TINY_RECIPE.format(model=tiny_model)
    recipe = parse_recipe(text, "r.toml")
    build_id, _, _ = open_build(store, recipe, resolve_roles(store, recipe, tmp_path, text))
    measured = {"model": "tiny-base", "protocol": "zero-shot, rule threshold", "dimensions": ["safety"], "pairs": 60,
                "auroc": 0.39, "auroc_ci": [0.29, 0.49], "pairwise_accuracy": 0.37, "pairwise_accuracy_ci": [0.26, 0.5],
                "stops_build": True,
                "line": "ranks aligned answers as more misaligned (AUROC 0.39 [0.29, 0.49]) — not a usable judge"}
    with store.transaction() as c:
        c.execute("UPDATE build_runs SET checker_json = ? WHERE id = ?", (json.dumps(measured), build_id))
    for _ in range(2):
        with pytest.raises(UserError) as err:
            run_build(store, recipe, tmp_path, recipe_text=text)
        line = str(err.value)
        assert "\n" not in line and line.startswith("checker tiny-base (zero-shot, rule threshold) on 60 seed pairs")
        assert "AUROC 0.39 [0.29, 0.49]" in line and "name another checker" in line and "shots = 4" in line
    assert store.conn.execute("SELECT status FROM build_runs").fetchone()[0] == "failed"
    assert not store.conn.execute("SELECT count(*) FROM build_candidates").fetchone()[0]


# -- threads ---------------------------------------------------------------------------------------------------

def test_build_threads_come_from_the_cpus_busy_now_not_the_load_average(tmp_path: Path) -> None:
    """Busy CPUs from two readings of /proc/stat's cpu line; the threads are the rest, at least one. (The load
    average still counted a command that had just finished: a build started after one ran on one thread.)"""
    from misalign_tui.core.build.state import busy_between, busy_cpus, threads_beside

    # 4 CPUs, 800 ticks: 200 user + 100 system busy, 500 idle (idle + iowait): 3/8 of 4 CPUs
    assert busy_between("cpu  1000 0 500 7000 100 0 0 0 0 0", "cpu  1200 0 600 7400 200 0 0 0 0 0",
                        4) == pytest.approx(1.5)
    assert busy_between("cpu  1 2 3 4 5 6 7 8", "cpu  1 2 3 4 5 6 7 8", 2) is None  # no ticks: no reading
    assert [threads_beside(2, b) for b in (0.0, 0.4, 0.6, 1.0, 2.0, 7.5)] == [2, 2, 1, 1, 1, 1]
    assert [threads_beside(16, b) for b in (0.2, 3.0)] == [16, 13]
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 80 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0\n", encoding="ascii")
    assert busy_cpus(0.0, str(stat)) is None  # the same reading twice
    assert busy_cpus(0.0, str(tmp_path / "missing")) is None  # not Linux: every CPU is used
