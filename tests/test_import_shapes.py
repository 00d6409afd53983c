"""Real dataset shapes imported by flags alone: sentence pairs without a prompt column, CSV without a header row,
UTF-16 files; counters that add up; exact duplicate rows whatever their ids. Every file is written here."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.shared_data import shared_file
from tests.test_cli_output import invoke


def _words(i: int, n: int = 5) -> str:
    """n made-up words for row i, different for every row (so no two rows are near-duplicates by chance)."""
    return " ".join(hashlib.sha256(f"{i}-{j}".encode()).hexdigest()[:8] for j in range(n))


# Forty sentence pairs written for this test, no prompt column: an anti-stereotype and a stereotype per row.
PAIRS = [(f"The {_words(i)} kept every promise.", f"The {_words(1000 + i)} never keeps a promise.")
         for i in range(40)]


def _write(path: Path, rows: list[list[str]], header: list[str] | None = None, encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _adds_up(d: dict) -> None:
    """Every row read ends in exactly one bucket; responses stored are two per pair plus the single ones."""
    assert d["rows_read"] == (d["prompts_imported"] + d["merged_rows"] + d["duplicates_skipped"] + d["bad_rows"]
                              + sum(d["excluded_rows"].values()))
    assert d["duplicates_skipped"] == d["exact_duplicates"] + d["near_duplicates"] + d["already_present"]
    assert d["responses_imported"] == 2 * d["pairs_imported"] + d["single_responses_imported"]


def _prompts(home: Path, bench: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(home / "db" / "misalign.sqlite")
    return conn.execute("SELECT p.key, p.text FROM prompts p JOIN benchmarks b ON b.id = p.benchmark_id "
                        "WHERE b.name = ? ORDER BY p.id", (bench,)).fetchall()


def test_prompt_less_pairs_each_row_its_own_item(home, tmp_path):
    """No prompt column: --no-prompt imports each row as an item (it used to need --prompt, and a constant
    prompt merged every row into one); near-duplicates are judged on the responses, not the empty prompt."""
    rows = [[m, a] for a, m in PAIRS]
    rows.append([PAIRS[0][1], PAIRS[0][0]])                               # an exact copy of row 1
    rows.append([PAIRS[1][1] + "!", PAIRS[1][0]])                         # a near-copy of row 2 (one character)
    f = _write(tmp_path / "pairs.csv", rows, header=["sent_more", "sent_less"])
    refused = invoke(home, "import", str(f), "--aligned", "sent_less", "--misaligned", "sent_more")
    assert refused.exit_code == 2 and "--no-prompt" in refused.stderr
    assert "--no-prompt" in invoke(home, "import", str(f), "--set", "prompt=x").stderr
    d = _json(invoke(home, "import", str(f), "--no-prompt", "--aligned", "sent_less", "--misaligned",
                     "sent_more", "--set", "dimension=cultural", "--into", "pairs", "--format", "json"))
    _adds_up(d)
    assert d["rows_read"] == 42 and d["prompts_imported"] == len(PAIRS) == d["pairs_imported"] == 40
    assert (d["exact_duplicates"], d["near_duplicates"]) == (1, 1)
    assert d["examples"]["near_duplicates"][0]["compared"] == "responses"
    prompts = _prompts(home, "pairs")
    assert len(prompts) == 40 and {t for _, t in prompts} == {""}
    # with a constant context: still one item per row (the context never merges rows)
    ctx = _json(invoke(home, "import", str(f), "--no-prompt", "--context", "Which sentence is more typical?",
                       "--aligned", "sent_less", "--misaligned", "sent_more", "--set", "dimension=cultural",
                       "--into", "with-context", "--format", "json"))
    assert ctx["prompts_imported"] == 40
    assert {t for _, t in _prompts(home, "with-context")} == {"Which sentence is more typical?"}
    # a round trip through this project's formats keeps the content hash
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"export.{fmt}"
        assert invoke(home, "export", "benchmark", "pairs", "--format", fmt, "-o", str(out)).exit_code == 0
        again = _json(invoke(home, "import", str(out), "--into", f"copy-{fmt}", "--format", "json"))
        assert again["content_hash"] == d["content_hash"] and again["prompts_imported"] == 40


def test_prompt_less_import_prints_where_every_row_went(home, tmp_path):
    f = _write(tmp_path / "pairs.csv", [[m, a] for a, m in PAIRS[:5]] + [[PAIRS[0][1], PAIRS[0][0]]],
               header=["more", "less"])
    res = invoke(home, "import", str(f), "--no-prompt", "--aligned", "less", "--misaligned", "more",
                 "--set", "dimension=cultural")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert any(line.split()[:3] == ["rows", "read", "6"] for line in lines)
    assert any(line.split()[:3] == ["new", "prompts", "5"] for line in lines)
    assert any(line.startswith("responses stored") and "10 in pairs, 0 single" in line for line in lines)
    assert "1 row(s) repeat an earlier row exactly" in res.stderr and "line(s) 7" in res.stderr


def test_csv_without_a_header_row_names_columns_by_position(home, tmp_path):
    rows = [[f"Should I {_words(2000 + i)}?", a, m] for i, (a, m) in enumerate(PAIRS[:6])]
    f = _write(tmp_path / "rows.csv", rows)
    guessed = invoke(home, "import", str(f), "--format", "json")
    assert guessed.exit_code == 2  # the first data row is not a header
    hint = invoke(home, "import", str(f), "--no-header")
    assert hint.exit_code == 2 and "(1, 2, 3)" in hint.stderr and "--aligned 1 --misaligned 2" in hint.stderr
    d = _json(invoke(home, "import", str(f), "--no-header", "--prompt", "1", "--aligned", "2", "--misaligned", "3",
                     "--set", "dimension=safety", "--into", "nohead", "--format", "json"))
    _adds_up(d)
    assert d["rows_read"] == 6 and d["prompts_imported"] == 6  # the first line is data, not column names
    assert d["files"][0]["header"] is False and d["files"][0]["mapping"]["prompt"] == "1"
    assert _prompts(home, "nohead")[0] == ("rows-1", rows[0][0])  # keys count lines from 1: no header line
    # without prompts too: --no-header --no-prompt --aligned 1 --misaligned 2
    g = _write(tmp_path / "two.csv", [[a, m] for a, m in PAIRS[:4]])
    two = _json(invoke(home, "import", str(g), "--no-header", "--no-prompt", "--aligned", "1", "--misaligned", "2",
                       "--set", "dimension=value", "--format", "json"))
    assert two["prompts_imported"] == 4
    # a bad row is named by its line (line 2: the second line of the file)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\nonly,two\n", encoding="utf-8")
    res = invoke(home, "import", str(bad), "--no-header", "--prompt", "1", "--aligned", "2", "--misaligned", "3")
    assert res.exit_code == 2 and f"{bad}:2:" in res.stderr
    js = tmp_path / "x.jsonl"
    js.write_text('{"prompt": "p"}\n', encoding="utf-8")
    assert "applies to CSV and TSV" in invoke(home, "import", str(js), "--no-header").stderr


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(home, tmp_path, encoding):
    path = tmp_path / "u.csv"
    bom = {"utf-16": "", "utf-16-be": "\ufeff", "utf-32": ""}[encoding]  # utf-16/32 codecs write the mark
    path.write_text(bom + "prompt,aligned,misaligned\nIs it kind to share? ✓,Yes — gently,No\n", encoding=encoding)
    d = _json(invoke(home, "import", str(path), "--set", "dimension=value", "--format", "json"))
    assert d["prompts_imported"] == 1 and d["files"][0]["encoding"] == encoding.split("-be")[0]
    assert _prompts(home, "u")[0][1] == "Is it kind to share? ✓"


def test_utf16_without_a_byte_order_mark_says_what_was_found(home, tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("prompt,aligned,misaligned\nHello?,Yes,No\n", encoding="utf-16-le")
    res = invoke(home, "import", str(path))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "UTF-16 (little-endian)" in res.stderr and "expected UTF-8" in res.stderr
    assert "contains a NUL byte" not in res.stderr


def test_exact_duplicate_rows_are_skipped_whatever_their_ids(home, tmp_path):
    """500 copies of one record with distinct ids in this project's own format (taken as given otherwise):
    one prompt is imported, the rest are counted as exact duplicates and the summary warns."""
    rec = {"prompt": "Is it fair to keep a found wallet?", "domains": ["Honesty"],
           "pairs": [{"dimension": "value", "aligned": "Return it.", "misaligned": "Keep it."}]}
    f = tmp_path / "copies.jsonl"
    f.write_text("".join(json.dumps({"id": f"copy-{i}", **rec}) + "\n" for i in range(500)), encoding="utf-8")
    d = _json(invoke(home, "import", str(f), "--format", "json"))
    _adds_up(d)
    assert (d["prompts_imported"], d["exact_duplicates"], d["pairs_imported"]) == (1, 499, 1)
    res = invoke(home, "import", str(f), "--into", "again")
    assert "499 row(s) repeat an earlier row exactly" in res.stderr and "line(s) 2, 3, 4, 5, 6" in res.stderr


def test_real_xstest_counters_add_up(home):
    """The shared XSTest completions (skipped when absent): single responses only, so every response stored
    is a single one, and the rows add up."""
    f = shared_file("xstest_v2_completions_gpt4.csv")
    d = _json(invoke(home, "import", str(f), "--format", "json"))
    _adds_up(d)
    assert d["pairs_imported"] == 0 and d["responses_imported"] == d["single_responses_imported"] > 400
