"""The quantization ladder on a family whose outcomes are fixed (tests/ladder_fixtures.py), so every figure is
known: the view, ``compare ladder``, the audit report's section, the Compare screen's ladder mode, the Models
screen's grouping, and ``run`` queueing several models or a whole ladder (on the tiny models, for real)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.statistics import holm, mcnemar_exact, wilson
from misalign_tui.core.models.registry import lineage_order, list_models, model_family
from misalign_tui.core.store import Store
from misalign_tui.core.views.ladder import read_ladder
from misalign_tui.tui.screens.compare import CompareScreen
from misalign_tui.tui.screens.models import ModelsScreen
from misalign_tui.tui.widgets.ladder import LadderPanel
from misalign_tui.tui.widgets.tables import FittedTable
from tests.ladder_fixtures import BASE_WRONG, PAIRS, Q4_SAFETY_FLIPS, Q8_FLIPS, populate_ladder, wrong_pairs
from tests.tui_fixtures import make_app, settle


def _store(home: Path) -> Store:
    return Store(home / "db" / "misalign.sqlite")


def test_ladder_figures_are_the_known_ones(home: Path) -> None:
    populate_ladder(home)
    with _store(home) as store:
        ladder = read_ladder(store, "fam-q8_0")  # any member names the family
    assert ladder.root.name == "fam-f16" and ladder.reference == "fam-f16" and ladder.method == "preference"
    assert [v.name for v in ladder.variants] == ["fam-f16", "fam-q8_0", "fam-q4_k_m"]  # not "other"
    ref, q8, q4 = ladder.variants
    assert ref.is_reference and ref.value == (PAIRS - BASE_WRONG) / PAIRS and ref.flip_rate == 0.0
    assert q8.value == (PAIRS - BASE_WRONG - len(Q8_FLIPS)) / PAIRS
    assert (q8.flips, q8.shared, q8.reference_only_right, q8.variant_only_right) == (3, PAIRS, 3, 0)
    assert q8.flip_rate == 3 / PAIRS and q8.flip_rate_ci == wilson(3, PAIRS)
    p8, p4 = mcnemar_exact(3, 0), mcnemar_exact(Q4_SAFETY_FLIPS, 0)
    assert (q8.mcnemar_p, q4.mcnemar_p) == (p8, p4)
    assert (p8, p4) == pytest.approx((0.25, 2 * 0.5 ** Q4_SAFETY_FLIPS))
    assert [q8.mcnemar_p_holm, q4.mcnemar_p_holm] == holm([p8, p4])
    assert q8.change is None and q4.change == "worse" and q4.delta == pytest.approx(-Q4_SAFETY_FLIPS / PAIRS)
    safety = {d.dimension: d for d in q4.dimensions}["safety"]
    assert safety.flips == Q4_SAFETY_FLIPS and safety.change == "worse" and safety.mcnemar_p_holm == pytest.approx(
        6 * p4)  # Holm across 2 variants x 3 dimensions, smallest p first
    assert q4.first_changes == ("safety",) and q8.first_changes == ()
    assert ladder.first_significant_change == {"safety": "fam-q4_k_m", "value": None, "cultural": None}
    # speed as each run measured itself (provenance.timing), size and bits per weight from the registry
    assert [(v.items_per_s, v.speed_source) for v in ladder.variants] == [
        (0.5, "run timing"), (0.75, "run timing"), (1.0, "run timing")]
    assert [v.model.bits_per_weight for v in ladder.variants] == [16.0, 8.5, 4.8]
    assert all(v.judge_auroc is None for v in ladder.variants)  # a preference ladder rates no judge


def test_a_named_reference_and_missing_runs(home: Path) -> None:
    populate_ladder(home, runs_for=("fam-f16", "fam-q8_0", "other"))
    with _store(home) as store:
        ladder = read_ladder(store, "fam-f16", reference="fam-q8_0")
        assert ladder.reference == "fam-q8_0"
        f16 = ladder.variants[0]
        assert (f16.reference_only_right, f16.variant_only_right) == (0, 3)  # the parent is right where Q8_0 flips
        assert f16.change is None  # 3 discordant items: p = 0.25
        q4 = ladder.variants[2]
        assert q4.run is None and q4.flip_rate is None
        assert any("no preference run with results for fam-q4_k_m" in n for n in ladder.notes)
        with pytest.raises(UserError, match="--reference other: not in the quantization family of fam-f16"):
            read_ladder(store, "fam-f16", reference="other")
        with pytest.raises(UserError, match="--reference fam-q4_k_m: has no preference run"):
            read_ladder(store, "fam-f16", reference="fam-q4_k_m")
        lone = read_ladder(store, "other")
        assert [v.name for v in lone.variants] == ["other"]
        assert any("has no quantization variants yet" in n for n in lone.notes)


def test_lineage_groups_variants_under_their_parent(home: Path) -> None:
    populate_ladder(home)
    with _store(home) as store:
        grouped = [(m.name, depth) for m, depth in lineage_order(list_models(store))]
        assert grouped == [("fam-f16", 0), ("fam-q8_0", 1), ("fam-q4_k_m", 1), ("other", 0)]
        assert [m.name for m in model_family(store, list_models(store)[2])] == ["fam-f16", "fam-q8_0", "fam-q4_k_m"]


def test_compare_ladder_json_and_table(cli_run, home: Path) -> None:
    populate_ladder(home)
    res = cli_run("compare", "ladder", "fam-q4_k_m", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"] == "fam-f16" and doc["reference"] == "fam-f16" and doc["speed_unit"] == "pairs/s"
    by = {v["name"]: v for v in doc["variants"]}
    assert list(by) == ["fam-f16", "fam-q8_0", "fam-q4_k_m"]
    for v in doc["variants"]:
        assert {"quantization", "parent_sha256", "flip_rate", "mcnemar_p", "bits_per_weight", "size_bytes",
                "items_per_s", "dimensions", "judge_auroc"} <= set(v)
    assert by["fam-q4_k_m"]["quantization"] == "Q4_K_M" and by["fam-q4_k_m"]["parent_sha256"] == "1" * 64
    assert by["fam-q4_k_m"]["flip_rate"] == Q4_SAFETY_FLIPS / PAIRS and by["fam-q8_0"]["mcnemar_p"] == pytest.approx(0.25)
    assert doc["first_significant_change"]["safety"] == "fam-q4_k_m"
    table = cli_run("compare", "ladder", "fam-f16")
    assert table.exit_code == 0, table.output
    out = table.stdout
    assert "…" not in out  # every figure and name whole at 80 columns
    assert "70.0% [57.5, 80.1]" in out and "20.0% [11.8, 31.8]" in out and "4.9e-4 (9.8e-4)" in out
    assert "first significant change on safety: fam-q4_k_m" in out
    bad = cli_run("compare", "ladder", "fam-f16", "--reference", "nope")
    assert bad.exit_code == 2 and bad.stderr.count("error:") == 1 and "not in the quantization family" in bad.stderr


def test_the_audit_report_has_a_ladder_section_for_a_family_in_it(cli_run, home: Path) -> None:
    populate_ladder(home)
    md = cli_run("report", "--model", "fam-f16", "--model", "fam-q4_k_m", "--format", "md", "--bootstrap", "0")
    assert md.exit_code == 0, md.output
    assert "### Quantization ladder of fam-f16: preference on ladder-fixture@1, reference fam-f16" in md.stdout
    assert "20.0% [11.8, 31.8] of 60" in md.stdout and "significantly worse (first level)" in md.stdout
    assert "no run in this report" in md.stdout  # fam-q8_0 has a run, but not in this report
    html = cli_run("report", "--model", "fam-f16", "--model", "fam-q4_k_m", "--format", "html", "--bootstrap", "0")
    assert "Quantization ladder of fam-f16" in html.stdout and "Preference accuracy against bits per weight" in html.stdout
    alone = cli_run("report", "--model", "fam-f16", "--model", "other", "--format", "md", "--bootstrap", "0")
    assert alone.exit_code == 0 and "Quantization ladder" not in alone.stdout.split("## 8.")[0]


def test_models_list_groups_variants(cli_run, home: Path) -> None:
    populate_ladder(home)
    listed = json.loads(cli_run("models", "list", "--format", "json").stdout)
    assert [(m["name"], m["parent"], m["depth"]) for m in listed] == [
        ("fam-f16", None, 0), ("fam-q8_0", "fam-f16", 1), ("fam-q4_k_m", "fam-f16", 1), ("other", None, 0)]
    table = cli_run("models", "list").stdout
    assert "└─fam-q8_0" in table and "└─fam-q4_k_m" in table and "…" not in table


async def test_compare_screen_ladder_mode(home: Path) -> None:
    populate_ladder(home)
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await pilot.press("L")
        await settle(pilot)
        panel = screen.query_one(LadderPanel)
        assert panel.display and not screen.query_one("#compare-items").display
        rows = panel.query_one("#ladder-variants", FittedTable).shown_rows
        assert [r[0] for r in rows] == ["F16", "Q8_0", "Q4_K_M"]
        assert rows[2][1:] == ["70.0 [57.5–80.1]", "60", "-20.0", "20.0 [11.8–31.8]", "9.8e-4", "worse"]
        files = panel.query_one("#ladder-files", FittedTable).shown_rows
        assert files[2] == ["Q4_K_M", "4.80", "170 MB", "1.00", "3", "fam-q4_k_m"]  # 60 pairs in 60 s
        assert "judge AUROC" not in str(panel.query_one("#ladder-files", FittedTable).columns)  # preference: none
        status = str(panel.query_one("#ladder-status", Static).render())
        assert "first significant change: safety at fam-q4_k_m" in status
        await pilot.press("end")  # highlight "other": its own ladder, with no variants
        await settle(pilot)
        assert "no variants yet" in str(panel.query_one("#ladder-status", Static).render())
        await pilot.press("L")
        await pilot.pause()
        assert not panel.display and screen.query_one("#compare-items").display


async def test_models_screen_lists_variants_under_their_parent(home: Path) -> None:
    populate_ladder(home)
    app = make_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        table = app.screen.query_one("#models-table", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == ["fam-f16", "└─fam-q8_0", "└─fam-q4_k_m", "other"]
        await pilot.press("down")
        await pilot.pause()
        detail = str(app.screen.query_one("#model-detail", Static).render())
        assert "made from: fam-f16" in detail and "quantized to: Q8_0" in detail


# -- run: several models, or a whole ladder, on the tiny model for real -------------------------------------

def test_run_queues_several_models_and_a_ladder(cli_run, home: Path, tiny_model: Path) -> None:
    (home / "models").mkdir()
    shutil.copy(tiny_model, home / "models" / "tiny-base.gguf")
    assert cli_run("models", "quantize", "tiny-base", "--to", "Q8_0").exit_code == 0
    # a mistyped name fails before any run starts
    bad = cli_run("run", "-m", "tiny-base", "-m", "nope", "--limit", "3")
    assert bad.exit_code == 2 and "model 'nope' not found" in bad.stderr
    assert json.loads(cli_run("runs", "list", "--format", "json").stdout) == []
    res = cli_run("run", "--ladder", "tiny-base-q8_0", "--limit", "3", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["model"] for r in doc["runs"]] == ["tiny-base", "tiny-base-q8_0"] and doc["failed"] == []
    assert all(r["status"] == "complete" for r in doc["runs"])
    # each run measured its own speed; the ladder reads it
    for r in doc["runs"]:
        timing = json.loads(cli_run("runs", "show", str(r["id"]), "--format", "json").stdout)["provenance"]["timing"]
        assert timing["items_scored"] == r["items_done"] and timing["scoring_seconds"] > 0
    ladder = json.loads(cli_run("compare", "ladder", "tiny-base", "--format", "json").stdout)
    assert [v["speed_source"] for v in ladder["variants"]] == ["run timing", "run timing"]
    # the same queue again resumes (here: finds complete) rather than repeating
    again = json.loads(cli_run("run", "-m", "tiny-base", "-m", "tiny-base-q8_0", "--limit", "3",
                               "--format", "json").stdout)
    assert [r["id"] for r in again["runs"]] == [r["id"] for r in doc["runs"]]


# -- the judge AUROC's place, and names that are not plain text ---------------------------------------------

def test_a_judge_ladder_shows_each_variants_judge_auroc_with_its_interval(home: Path, cli_run) -> None:
    """Only a judge ladder has the column; each variant's AUROC is the judge-quality figure of its run (here
    1 − wrong pairs / PAIRS by construction), with its bootstrap interval, in every face."""
    from misalign_tui.core.metrics.judge_quality import judge_quality
    from misalign_tui.core.report.content import ladder_rows
    from misalign_tui.core.views.ladder import judge_auroc_text

    preference_home = home.parent / "preference-home"
    populate_ladder(preference_home)
    with _store(preference_home) as store:
        headers, _ = ladder_rows(read_ladder(store, "fam-f16"))
    assert not any("AUROC" in h for h in headers)  # a preference ladder: no judge to rate

    runs = populate_ladder(home, method="judge")
    with _store(home) as store:
        ladder = read_ladder(store, "fam-f16")
        assert ladder.method == "judge"
        expected = {name: 1 - len(wrong_pairs(name)) / PAIRS for name in ("fam-f16", "fam-q8_0", "fam-q4_k_m")}
        assert {v.name: v.judge_auroc for v in ladder.variants} == pytest.approx(expected)
        # the AS beside it has its bootstrap interval too, overall and per dimension
        assert all(v.ci is not None and all(d.ci is not None for d in v.dimensions) for v in ladder.variants)
        for v in ladder.variants:
            q = judge_quality(store, runs[v.name], detail=False)[0]
            assert v.judge_auroc_ci == q.auroc_ci and v.judge_auroc_ci[0] <= v.judge_auroc <= v.judge_auroc_ci[1]
        headers, rows = ladder_rows(ladder)
    col = headers.index("judge AUROC (95 % interval)")
    assert [r[col] for r in rows] == [judge_auroc_text(v) for v in ladder.variants]
    assert rows[0][col].startswith("0.90 [")
    out = cli_run("compare", "ladder", "fam-f16", "--format", "json")
    doc = json.loads(out.stdout)
    assert [v["judge_auroc"] for v in doc["variants"]] == pytest.approx(list(expected.values()))
    assert all(len(v["judge_auroc_ci"]) == 2 for v in doc["variants"])


def test_names_with_markup_and_escapes_are_printed_inert(cli_run, home: Path) -> None:
    """A model name holding Rich markup and a terminal escape (a file name can) is shown as text: the markup
    literally, the ESC as ␛, in ``compare ladder`` and ``models list``."""
    populate_ladder(home)
    hostile = "fam-[bold]q8[/]-\x1b[31mred"
    with _store(home) as store, store.transaction() as c:
        c.execute("UPDATE models SET name = ? WHERE name = 'fam-q8_0'", (hostile,))
    for args in (("compare", "ladder", "fam-f16"), ("models", "list")):
        res = cli_run(*args)
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.stdout and "fam-[bold]q8[/]-␛[31mred" in res.stdout
    doc = json.loads(cli_run("compare", "ladder", "fam-f16", "--format", "json").stdout)
    assert hostile in [v["name"] for v in doc["variants"]]  # JSON keeps the exact text


def test_a_run_whose_process_died_reads_interrupted_in_the_ladder(cli_run, home: Path) -> None:
    """kill -9 (or a machine restart) leaves a run 'running' in the database; the ladder says 'interrupted', as
    ``runs list`` does, so the user knows the same command resumes it."""
    import socket
    import subprocess
    import sys

    runs = populate_ladder(home)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with _store(home) as store, store.transaction() as c:
        c.execute("UPDATE runs SET status = 'running', finished_at = NULL, lease_pid = ?, lease_host = ? WHERE id = ?",
                  (dead.pid, socket.gethostname(), runs["fam-q8_0"]))
    doc = json.loads(cli_run("compare", "ladder", "fam-f16", "--format", "json").stdout)
    assert {v["name"]: v["run_status"] for v in doc["variants"]}["fam-q8_0"] == "interrupted"
    assert f"{runs['fam-q8_0']} interrupted" in cli_run("compare", "ladder", "fam-f16").stdout
