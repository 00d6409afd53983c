"""Review queues and their headless twin: seeded samples that give the same ids again, A/B order that does not
leak the label, decision files (CSV and JSONL) imported all or nothing with one line per problem, reviewer names
with control characters refused, two reviewers at once both kept, undo that keeps history, agreement figures,
reviewed labels published as a new benchmark version, and the audit report's list of disputed labels."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from misalign_tui.core.errors import UserError
from misalign_tui.core.review.decisions import (
    NewDecision,
    current_decisions,
    record_decisions,
    remember_reviewer,
    resume_position,
    shown,
    undo_last,
)
from misalign_tui.core.review.figures import queue_figures
from misalign_tui.core.review.queues import gold_queue, queue_items, run_queue, stratified
from misalign_tui.core.store import Store, content_hash
from tests.review_fixtures import decide, gold_sample, seed_workspace
from tests.tui_fixtures import populate_results


def _db(home: Path) -> Path:
    return home / "db" / "misalign.sqlite"


def _fill(path: Path, decide_row) -> None:
    """Fill a CSV decision file in place: decide_row(row) sets its decision columns."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        decide_row(row)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _labels(db: Path) -> dict[int, list[str]]:
    """item id → the gold labels of its responses, A first (what the reviewer must not see)."""
    conn = sqlite3.connect(db)
    out: dict[int, list[str]] = {}
    for item, label in conn.execute("SELECT item_id, label FROM review_responses ORDER BY item_id, slot"):
        out.setdefault(item, []).append(label)
    conn.close()
    return out


def test_the_same_sample_is_the_same_queue_and_the_order_does_not_leak_the_label(home: Path) -> None:
    db = seed_workspace(home)
    q, items = gold_sample(db, 30, seed=7)
    again, items_again = gold_sample(db, 30, seed=7)
    assert again.id == q.id and [i.id for i in items_again] == [i.id for i in items]
    other, other_items = gold_sample(db, 30, seed=8)
    assert other.id != q.id and [i.prompt_key for i in other_items] != [i.prompt_key for i in items]
    assert len(items) == 30 and all(len(i.responses) == 2 for i in items)
    firsts = [i.responses[0].label for i in items]
    assert "aligned" in firsts and "misaligned" in firsts  # the aligned response is not always A
    assert all({r.label for r in i.responses} == {"aligned", "misaligned"} for i in items)
    with Store(db) as store:
        with pytest.raises(UserError, match="--sample 0: must be 1 or more"):
            gold_queue(store, "misalign-seed", 0)


def test_export_import_round_trip_stores_every_decision_with_who_and_what_was_shown(cli_run, home: Path,
                                                                                       tmp_path: Path) -> None:
    db = seed_workspace(home)
    out = tmp_path / "decisions.csv"
    res = cli_run("review", "export", "--queue", "gold", "--benchmark", "misalign-seed", "--sample", "12",
                  "--seed", "1", "-o", str(out))
    assert res.exit_code == 0, res.output
    header = out.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "label" not in header and "decision_a" in header and "decision_b" in header
    labels = _labels(db)
    _fill(out, lambda row: row.update(decision_a=labels[int(row["item"])][0],
                                      decision_b=labels[int(row["item"])][1]))
    res = cli_run("review", "import", str(out), "--reviewer", "Ana Lima")
    assert res.exit_code == 0, res.output
    assert "imported 24 decision(s) on 12 item(s) by Ana Lima" in res.output
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT reviewer, decision, via, shown_json, decided_at, label FROM review_log").fetchall()
    assert len(rows) == 24
    assert all(r[0] == "Ana Lima" and r[2] == "file:decisions.csv" and r[4] and r[1] == r[5] for r in rows)
    shown_ = json.loads(rows[0][3])
    assert shown_["face"] == "file" and shown_["order"] == ["A", "B"] and shown_["verdict_visible"] is False
    stats = json.loads(cli_run("review", "stats", "--format", "json").stdout)
    assert stats[0]["dispute_rate"] == {"value": 0.0, "ci95": stats[0]["dispute_rate"]["ci95"], "hits": 0, "n": 24}
    assert stats[0]["between_reviewers"] is None and stats[0]["decided_items"] == 12


def test_jsonl_decision_files_work_the_same(cli_run, home: Path, tmp_path: Path) -> None:
    db = seed_workspace(home)
    out = tmp_path / "d.jsonl"
    assert cli_run("review", "export", "--queue", "gold", "--benchmark", "misalign-seed", "--sample", "3",
                   "-o", str(out)).exit_code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [sorted(r) for r in rows][0] == sorted(["item", "queue", "position", "prompt_key", "dimension",
                                                   "semantic_type", "domains", "prompt", "response_a", "response_b",
                                                   "decision_a", "decision_b", "note"])
    rows[0].update(decision_a="flag", decision_b="flag", note="both replies dodge the question")
    rows[1].update(decision_a="skip")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = cli_run("review", "import", str(out), "--reviewer", "kim")
    assert res.exit_code == 0, res.output
    assert "imported 3 decision(s) on 2 item(s) by kim; 1 row(s) left undecided" in res.output
    with Store(db) as store:
        kinds = sorted(d.decision for d in current_decisions(store))
    assert kinds == ["flag", "flag", "skip"]


def test_a_bad_decision_file_names_every_problem_and_imports_nothing(cli_run, home: Path, tmp_path: Path) -> None:
    db = seed_workspace(home)
    populate_results(home, prompts=6)
    out = tmp_path / "bad.csv"
    assert cli_run("review", "export", "--queue", "gold", "--benchmark", "misalign-seed", "--sample", "4",
                   "-o", str(out)).exit_code == 0
    run_file = tmp_path / "run.csv"
    assert cli_run("review", "export", "--queue", "run", "--run", "1", "--sample", "2",
                   "-o", str(run_file)).exit_code == 0
    single_item = next(csv.DictReader(open(run_file, encoding="utf-8")))["item"]
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = list(csv.DictReader(lines))
    rows[0].update(decision_a="aligned", decision_b="misaligned")              # line 2: fine
    rows[1].update(decision_a="maybe")                                        # line 3: bad label
    rows[2].update(item="99999", decision_a="aligned")                        # line 4: unknown item
    rows[3].update(decision_a="flag")                                         # line 5: flag without a note
    rows.append({**rows[0], "item": single_item, "queue": "", "prompt_key": "",
                 "decision_a": "aligned", "decision_b": "aligned"})           # line 6: B on a single response
    rows.append({**rows[0]})                                                  # line 7: the same item again
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('"12,never closed\n')                                         # line 8: broken quoting
    res = cli_run("review", "import", str(out), "--reviewer", "kim")
    assert res.exit_code == 2
    err = res.stderr.splitlines()
    assert err[0] == f"error: {out}: 6 problem(s); nothing imported"
    assert err[1].startswith(f"{out}:3: decision_a: 'maybe' is not a decision; one of aligned, misaligned")
    assert err[2] == f"{out}:4: item 99999: no such item in this workspace's review queues"
    assert err[3] == f"{out}:5: decision_a: a flag needs a note saying what is wrong"
    assert err[4].startswith(f"{out}:6: decision_b: item {single_item} shows one response")
    assert err[5] == f"{out}:7: item {rows[0]['item']}: already decided on line 2"
    assert err[6].startswith(f"{out}:8: a quoted cell is never closed")
    assert "Traceback" not in res.output
    assert sqlite3.connect(db).execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 0
    res = cli_run("review", "import", str(tmp_path / "nope.txt"), "--reviewer", "kim")
    assert res.exit_code == 2 and "name the decision file .csv or .jsonl" in res.stderr


def test_a_file_from_another_workspace_is_refused(cli_run, home: Path, tmp_path: Path) -> None:
    seed_workspace(home)
    out = tmp_path / "d.csv"
    cli_run("review", "export", "--queue", "gold", "--benchmark", "misalign-seed", "--sample", "2", "-o", str(out))
    _fill(out, lambda row: row.update(prompt_key="someone-else", decision_a="aligned", decision_b="misaligned"))
    res = cli_run("review", "import", str(out), "--reviewer", "kim")
    assert res.exit_code == 2 and "a file from another workspace?" in res.stderr


@pytest.mark.parametrize("name", ["ana\x1b[31m", "bob\nsmith", "tab\there", "\x07bell", "  "])
def test_a_reviewer_name_with_control_characters_is_refused(cli_run, home: Path, tmp_path: Path, name: str) -> None:
    seed_workspace(home)
    out = tmp_path / "d.csv"
    cli_run("review", "export", "--queue", "gold", "--benchmark", "misalign-seed", "--sample", "1", "-o", str(out))
    _fill(out, lambda row: row.update(decision_a="aligned", decision_b="misaligned"))
    res = cli_run("review", "import", str(out), "--reviewer", name)
    assert res.exit_code == 2
    assert "reviewer name" in res.stderr and "\x1b" not in res.stderr and len(res.stderr.splitlines()) == 1
    with Store(_db(home)) as store:
        with pytest.raises(UserError, match="reviewer name"):
            remember_reviewer(store, name)
        assert store.conn.execute("SELECT count(*) FROM reviewers").fetchone()[0] == 0


def test_two_reviewers_deciding_the_same_item_at_once_are_both_kept(home: Path) -> None:
    db = seed_workspace(home)
    q, items = gold_sample(db, 5)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def review(name: str, label: str) -> None:
        try:
            with Store(db) as store:  # one connection per thread, as in the app and a parallel CLI import
                start.wait()
                for item in items:
                    record_decisions(store, name, [NewDecision(item.id, r.id, label, None,
                                                               shown(["A", "B"], r.letter, False, "app"))
                                                   for r in item.responses])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=review, args=("ann", "aligned")),
               threading.Thread(target=review, args=("bo", "misaligned"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT reviewer, decision, count(*) FROM review_decisions GROUP BY 1, 2").fetchall()
    assert sorted(rows) == [("ann", "aligned", 10), ("bo", "misaligned", 10)]
    with Store(db) as store:
        f = queue_figures(store, q.id, bootstrap=0)
    assert f.reviewers == ("ann", "bo") and f.split == 10 and f.with_majority == 0


def test_undo_keeps_the_decision_and_resume_finds_the_first_undecided(home: Path) -> None:
    db = seed_workspace(home)
    q, items = gold_sample(db, 4)
    decide(db, "ann", items[:2])
    with Store(db) as store:
        mine = {d.review_response_id: d.decision for d in current_decisions(store, q.id, "ann")}
        assert resume_position(items, mine) == 2
        undone = undo_last(store, q.id, "ann")
        assert len(undone) == 2 and {d.item_id for d in undone} == {items[1].id}  # one action: both responses
        mine = {d.review_response_id: d.decision for d in current_decisions(store, q.id, "ann")}
        assert resume_position(items, mine) == 1
        assert store.conn.execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 4
        assert store.conn.execute("SELECT count(*) FROM review_decisions WHERE undone_at IS NOT NULL"
                                  ).fetchone()[0] == 2
        # a later decision supersedes an earlier one of the same reviewer, which stays stored
        r = items[0].responses[0]
        record_decisions(store, "ann", [NewDecision(items[0].id, r.id, "skip", None, {})])
        assert {d.decision for d in current_decisions(store, q.id, "ann") if d.review_response_id == r.id} == {"skip"}
        mine = {d.review_response_id: d.decision for d in current_decisions(store, q.id, "ann")}
        decide(db, "ann", items[1:])
        mine = {d.review_response_id: d.decision for d in current_decisions(store, q.id, "ann")}
        assert resume_position(items, mine) == 0  # everything decided: the skipped one comes back


def test_agreement_figures_between_reviewers_and_with_gold(home: Path) -> None:
    db = seed_workspace(home)
    q, items = gold_sample(db, 10)
    decide(db, "ann", items)                  # all gold
    decide(db, "bo", items, wrong_every=5)    # items 0 and 5 flipped
    decide(db, "cy", items, wrong_every=5)    # the same two: a 2–1 majority against gold there
    with Store(db) as store:
        f = queue_figures(store, q.id, bootstrap=300)
    assert f.between is not None and f.between.statistic == "alpha" and f.between.raters == 3
    # units: 20 responses, 3 ratings each; 4 responses at 1 vs 2, 16 unanimous. o_am = o_ma = 4·(2·1)/2 = 4;
    # n_a = n_m = 30 (each label 10 responses × 3 values), n = 60: α = 1 − 59·8 / (2·30·30) = 1 − 472/1800
    assert f.between.value == pytest.approx(1 - 472 / 1800)
    assert (f.disputes.hits, f.disputes.n) == (4, 20)
    assert len([d for d in f.listed if d.kind == "disputed"]) == 4
    assert all(len(d.notes) == 2 for d in f.listed)  # bo's and cy's notes


def test_a_run_queue_is_stratified_by_verdict_and_dimension(home: Path) -> None:
    populate_results(home, prompts=24)
    with Store(_db(home)) as store:
        q = run_queue(store, 1, 12, seed=0)
        items = queue_items(store, q.id)
        strata = [i.stratum for i in items]
        counts = {s: strata.count(s) for s in set(strata)}
        assert q.reference == "judge" and len(items) == 12
        assert set(counts) == {f"{v}/{d}" for v in ("flagged", "passed") for d in ("safety", "value", "cultural")}
        assert set(counts.values()) == {2}
        r = items[0].responses[0]
        assert r.reference_label in ("aligned", "misaligned") and 0 <= (r.reference_p or 0) <= 1
        with pytest.raises(UserError, match="run 99 not found"):
            run_queue(store, 99, 3)


def test_run_queue_figures_give_the_judges_auroc_against_the_reviewers_majority(home: Path) -> None:
    """Beside the judge's accuracy and κ: the AUROC of its P(misaligned) against the reviewers' majority, computed
    by the one AUROC of metrics/judge_quality.py, with a bootstrap interval over prompts; in the sentences too."""
    from misalign_tui.core.metrics.judge_quality import auroc
    from misalign_tui.core.review.figures import figures_lines

    populate_results(home, prompts=24)
    db = _db(home)
    with Store(db) as store:
        q = run_queue(store, 1, 12, seed=0)
        items = queue_items(store, q.id)
    decide(db, "ann", items, wrong_every=4)  # the majority (ann alone) disputes every fourth item
    with Store(db) as store:
        f = queue_figures(store, q.id, bootstrap=200)
    flipped = {"aligned": 0, "misaligned": 1}
    by_hand = [(r.reference_p, flipped[str(r.label)] if k % 4 else 1 - flipped[str(r.label)])
               for k, item in enumerate(items) for r in item.responses]
    assert f.model_auroc == pytest.approx(auroc([p for p, _ in by_hand], [y for _, y in by_hand]))
    assert f.model_auroc_n == len(by_hand) and f.model_auroc_ci is not None
    assert f.model_auroc_ci[0] <= f.model_auroc <= f.model_auroc_ci[1]
    assert f.as_json()["model_auroc"] == f.model_auroc
    assert any(line.startswith("judge AUROC of P(misaligned) against the majority: ") for line in figures_lines(f))


def test_stratified_sampling_moves_the_share_of_a_small_stratum_to_the_others() -> None:
    import random

    got = stratified({"big": list(range(100)), "small": [1000], "mid": list(range(200, 210))}, 12, random.Random(0))
    kinds = [k for k, _ in got]
    assert len(got) == 12 and kinds.count("small") == 1 and kinds.count("mid") + kinds.count("big") == 11
    assert abs(kinds.count("mid") - kinds.count("big")) <= 1


def test_reviewed_labels_make_a_new_version_and_leave_the_old_one_and_its_runs_alone(cli_run, home: Path) -> None:
    runs = populate_results(home, prompts=6)
    db = _db(home)
    with Store(db) as store:
        old = store.benchmark("fixture")
        old_hash = content_hash(store.conn, old.id)
        q = gold_queue(store, "fixture", None, 0)
        items = queue_items(store, q.id)
    # item 0: both responses flipped by both reviewers (a swapped pair); item 1: only the aligned one called
    # misaligned (the pair dissolves); the rest agree with gold
    flip = {"aligned": "misaligned", "misaligned": "aligned"}
    for name in ("ann", "bo"):
        with Store(db) as store:
            out = []
            for k, item in enumerate(items):
                for r in item.responses:
                    label = flip[str(r.label)] if k == 0 or (k == 1 and r.label == "aligned") else str(r.label)
                    out.append(NewDecision(item.id, r.id, label, "looks wrong" if label != r.label else None, {}))
            record_decisions(store, name, out)
    res = cli_run("review", "publish", "fixture", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["version"] == 2 and doc["previous_version"] == 1
    assert len(doc["overrides"]) == 3 and doc["pairs_swapped"] == 1 and doc["pairs_dissolved"] == 1
    with Store(db) as store:
        assert content_hash(store.conn, old.id) == old_hash
        new = store.benchmark("fixture@2")
        assert new.content_hash != old_hash and new.responses == old.responses
        assert store.conn.execute("SELECT count(*) FROM pairs p JOIN prompts q ON q.id = p.prompt_id "
                                  "WHERE q.benchmark_id = ?", (new.id,)).fetchone()[0] == \
            store.conn.execute("SELECT count(*) FROM pairs p JOIN prompts q ON q.id = p.prompt_id "
                               "WHERE q.benchmark_id = ?", (old.id,)).fetchone()[0] - 1
        assert {r[0] for r in store.conn.execute("SELECT benchmark_id FROM runs")} == {old.id}
        assert set(runs.values()) == {r[0] for r in store.conn.execute("SELECT id FROM runs")}
        source = json.loads(store.conn.execute("SELECT source_json FROM benchmarks WHERE id = ?",
                                               (new.id,)).fetchone()[0])
        assert source["previous_version"] == 1 and source["reviewers"] == ["ann", "bo"]
    res = cli_run("review", "publish", "fixture@2")
    assert res.exit_code == 2 and "no reviewers' majority disputes a gold label" in res.stderr


def test_the_audit_report_lists_disputed_gold_labels_with_the_reviewers_notes(cli_run, home: Path,
                                                                              tmp_path: Path) -> None:
    populate_results(home, prompts=6)
    db = _db(home)
    with Store(db) as store:
        q = gold_queue(store, "fixture", 4, 0)
        items = queue_items(store, q.id)
        rq = run_queue(store, 1, 6, 0)
        ritems = queue_items(store, rq.id)
    decide(db, "ann", items, wrong_every=3)
    decide(db, "ann", ritems)
    with Store(db) as store:
        r = items[1].responses[0]
        record_decisions(store, "bo", [NewDecision(items[1].id, r.id, "flag", "the <b>prompt</b> is ambiguous", {})])
    for fmt in ("md", "html"):
        out = tmp_path / f"report.{fmt}"
        res = cli_run("report", "--run", "1", "--format", fmt, "-o", str(out), "--bootstrap", "50")
        assert res.exit_code == 0, res.output
        doc = out.read_text(encoding="utf-8")
        assert "8. Reviews" in doc and "9. How to read this report" in doc
        assert "gold labels of fixture@1" in doc and "judge accuracy against the reviewers" in doc
        assert "ann thinks A is" in doc  # the disputing reviewer's note
        assert "ambiguous" in doc and "<b>prompt</b>" not in doc  # the flag's note, escaped
    # the other model's run: the same benchmark's reviewed gold labels, no review of its own verdicts
    res = cli_run("report", "--run", "2", "--format", "md", "--bootstrap", "0")
    assert "gold labels of fixture@1" in res.stdout and "judge accuracy against" not in res.stdout
