"""A build whose stage-2 checker is people (``checker = "human"``), decided through the headless twin: the build
pauses at stage 2, resumes from the decisions (a rejection feeds the next attempt), and publishes exactly the
pairs the decisions accepted; ``review = "sample:N"`` queues a sample of a model checker's decisions. Real
llama.cpp on the tiny random-weight model; a small build."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from misalign_tui.core.build.recipe import parse_recipe
from misalign_tui.core.errors import UserError
from tests.test_build import MINIMAL, TINY_RECIPE

HUMAN = (TINY_RECIPE.replace("limit = 3", "limit = 2").replace("per_domain_type = 2", "per_domain_type = 3")
         .replace('types = ["object", "relation"]', 'types = ["object"]')
         .replace('default = "{model}"', 'default = "{model}"\nchecker = "human"'))


def _recipe(tmp_path: Path, model: Path, text: str = HUMAN) -> Path:
    path = tmp_path / "human.toml"
    path.write_text(text.format(model=model), encoding="utf-8")
    return path


def _fill(path: Path, choose) -> int:
    """Decide every row of a decision file with choose(item_id, slot) → decision; returns the rows."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["decision_a"] = choose(int(row["item"]), 0)
        if row["response_b"]:
            row["decision_b"] = choose(int(row["item"]), 1)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def test_recipe_review_keys_are_checked() -> None:
    r = parse_recipe(MINIMAL + "[models]\nchecker = 'human'\n", "r.toml")
    assert r.human_checker and r.models.classifier == "default"
    assert parse_recipe(MINIMAL + "[resample]\nreview = 'sample:25'\n", "r.toml").resample.review_sample == 25
    # a recipe without the new key keeps its canonical form (and so its build hash: resumes still find it)
    assert "review" not in parse_recipe(MINIMAL, "r.toml").canonical()
    for text, expected in [
        (MINIMAL + "[resample]\nreview = 'half'\n", "r.toml:7: [resample] review: 'half': write \"sample:N\""),
        (MINIMAL + "[models]\nchecker = 'human'\n[resample]\nreview = 'sample:3'\n",
         "r.toml:9: [resample] review: samples the model checker's decisions"),
        (MINIMAL + "[models]\nscorer = 'human'\n", "r.toml:7: [models] scorer: \"human\" can only be the checker"),
    ]:
        with pytest.raises(UserError) as err:
            parse_recipe(text, "r.toml")
        assert str(err.value).startswith(expected), str(err.value)


def test_a_human_checked_build_publishes_exactly_the_pairs_the_decisions_accepted(cli_run, home: Path,
                                                                                  tmp_path: Path,
                                                                                  tiny_model: Path) -> None:
    recipe = _recipe(tmp_path, tiny_model)
    res = cli_run("build", str(recipe))
    assert res.exit_code == 3, res.output
    assert "paused at stage 2" in res.stderr and "error:" not in res.stderr
    db = home / "db" / "misalign.sqlite"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM build_runs").fetchone()[0] == "interrupted"
    assert conn.execute("SELECT count(*) FROM build_pair_units").fetchone()[0] == 0
    # nothing reached a model checker: every queued candidate passed stage 1 and waits for people
    assert conn.execute("SELECT count(*) FROM build_candidates WHERE p_misaligned IS NOT NULL").fetchone()[0] == 0

    # Round 1: accept every candidate of the first unit; reject the misaligned candidate of every other unit
    # (a flag with a note on one of them), so those units try again with the reviewers' note as feedback.
    first_round = tmp_path / "round1.csv"
    assert cli_run("review", "export", "--queue", "build", "--build", "1", "-o", str(first_round)).exit_code == 0
    labels = {(r[0], r[1]): r[2] for r in conn.execute("SELECT item_id, slot, label FROM review_responses")}
    units = {r[0]: r[1] for r in conn.execute("SELECT id, unit FROM review_items")}
    first_unit = min(units.values())

    def round_one(item: int, slot: int) -> str:
        label = labels[(item, slot)]
        if units[item] == first_unit or label == "aligned":
            return label
        return "aligned"  # the "misaligned" candidate judged aligned: rejected

    n_units = _fill(first_round, round_one)
    assert n_units >= 2
    assert cli_run("review", "import", str(first_round), "--reviewer", "ana").exit_code == 0
    res = cli_run("build", str(recipe))
    assert res.exit_code == 3, res.output  # the second attempts wait for review
    retry = conn.execute("SELECT unit, attempt, count(*) FROM review_items WHERE applied_at IS NULL "
                         "GROUP BY unit").fetchall()
    assert retry and all(a == 1 and n == 1 for _, a, n in retry)  # only the misaligned candidate again
    feedback = conn.execute("SELECT feedback FROM build_candidates WHERE status = 'rejected' AND stage = 'checker'"
                            ).fetchall()
    assert feedback and all("misaligned" in f[0] for f in feedback)

    # Round 2: the retried candidate of one unit accepted, the others rejected (the last attempt: dropped).
    second_round = tmp_path / "round2.csv"
    assert cli_run("review", "export", "--queue", "build", "--build", "1", "-o", str(second_round)).exit_code == 0
    labels = {(r[0], r[1]): r[2] for r in conn.execute("SELECT item_id, slot, label FROM review_responses")}
    retried = sorted(u for u, _, _ in retry)
    keep = retried[0]

    def round_two(item: int, slot: int) -> str:
        return labels[(item, slot)] if units_now[item] == keep else "flag"

    units_now = {r[0]: r[1] for r in conn.execute("SELECT id, unit FROM review_items")}
    with open(second_round, encoding="utf-8", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(retry)  # taken items are not exported again
    _fill(second_round, round_two)
    with open(second_round, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["note"] = "the reply wanders off the request" if row["decision_a"] == "flag" else ""
    with open(second_round, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert cli_run("review", "import", str(second_round), "--reviewer", "ana").exit_code == 0
    res = cli_run("build", str(recipe), "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["resumed"] is True

    # The published pairs are exactly the accepted ones: the first unit and the kept retry.
    accepted = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT ca.unit, ca.text, cm.text FROM build_pair_units p "
        "JOIN build_candidates ca ON ca.id = p.aligned_candidate_id "
        "JOIN build_candidates cm ON cm.id = p.misaligned_candidate_id WHERE p.status = 'paired'")}
    assert set(accepted) == {first_unit, keep}
    decided = {r[0]: r[1] for r in conn.execute(
        "SELECT s.text, group_concat(d.decision) FROM review_responses s JOIN review_decisions d "
        "ON d.review_response_id = s.id GROUP BY s.id")}
    for aligned, misaligned in accepted.values():
        assert decided[aligned] == "aligned" and decided[misaligned] == "misaligned"
    published = sorted(conn.execute(
        "SELECT ra.text, rm.text FROM pairs pr JOIN responses ra ON ra.id = pr.aligned_id "
        "JOIN responses rm ON rm.id = pr.misaligned_id JOIN prompts p ON p.id = pr.prompt_id "
        "JOIN benchmarks b ON b.id = p.benchmark_id WHERE b.name = 'tiny-build'").fetchall())
    assert published == sorted(accepted.values())
    dropped = conn.execute("SELECT reason FROM build_candidates WHERE stage = 'checker' AND reason LIKE "
                           "'%wanders off%'").fetchall()
    assert dropped and all(r[0].startswith("reviewers flagged (ana: flag)") for r in dropped)
    assert conn.execute("SELECT count(*) FROM build_pair_units WHERE status = 'dropped'").fetchone()[0] == \
        len(retry) - 1
    # benchmark stats shows the build's review figures
    stats = json.loads(cli_run("benchmark", "stats", "tiny-build", "--format", "json").stdout)
    assert [r["scope"] for r in stats["reviews"]] == ["build 1 human checker"]
    assert stats["reviews"][0]["reviewers"] == ["ana"]


def test_review_sample_queues_model_checker_decisions_for_validation(cli_run, home: Path, tmp_path: Path,
                                                                      tiny_model: Path) -> None:
    text = (TINY_RECIPE.replace("limit = 3", "limit = 1").replace("per_domain_type = 2", "per_domain_type = 1")
            .replace('types = ["object", "relation"]', 'types = ["object"]')
            .replace("iterations = 1", "iterations = 1\nreview = \"sample:3\""))
    recipe = _recipe(tmp_path, tiny_model, text)
    res = cli_run("build", str(recipe))
    assert res.exit_code == 0, res.output
    conn = sqlite3.connect(home / "db" / "misalign.sqlite")
    q = conn.execute("SELECT id, name, reference, sample_size FROM review_queues").fetchone()
    assert q[2] == "checker" and q[3] == 3 and q[1] == "build 1 checker decisions sample 3 seed 0"
    shown = conn.execute("SELECT s.label, s.reference_label, s.reference_p, c.stage FROM review_responses s "
                         "JOIN build_candidates c ON c.id = s.candidate_id").fetchall()
    assert 1 <= len(shown) <= 3
    for label, verdict, p, stage in shown:
        assert p is not None and verdict == (label if stage != "checker" else
                                             ("aligned" if label == "misaligned" else "misaligned"))
    stats = json.loads(cli_run("benchmark", "stats", "tiny-build", "--format", "json").stdout)
    assert stats["reviews"][0]["reference"] == "checker" and stats["reviews"][0]["model_accuracy"]["n"] == 0
