"""Workspace, store, taxonomy and model registry through the real CLI and real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from misalign_tui.core.store import SCHEMA_VERSION, Store, content_hash
from misalign_tui.core.workspace import ENV_HOME, resolve_home


def test_taxonomy_counts_published_names(cli_run) -> None:
    res = cli_run("taxonomy", "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["dimensions"] == {"safety": 14, "value": 56, "cultural": 41}
    names = [d["name"] for d in data["domains"]]
    assert len(names) == len(set(names)) == 111
    assert "Animal Abuse" in names and "Inner Harmony" in names and "Festivals and Markets" in names


def test_taxonomy_matches_published_table() -> None:
    import csv

    from misalign_tui.core.taxonomy import published_taxonomy
    from tests.shared_data import shared_file

    rows = list(csv.DictReader(open(shared_file("misaligntrade_domain_stats.csv"), encoding="utf-8")))
    assert {(r["dimension"], r["domain"]) for r in rows} == {
        (d.dimension, d.name) for d in published_taxonomy().domains
    }


def test_user_domains_extend_taxonomy(cli_run, tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text("dimension,domain,source\ncultural,Puppetry,my audit\n", encoding="utf-8")
    assert cli_run("taxonomy", "add", str(f)).exit_code == 0
    data = json.loads(cli_run("taxonomy", "--format", "json").stdout)
    assert data["dimensions"]["cultural"] == 42
    assert {"dimension": "cultural", "name": "Puppetry", "source": "my audit", "origin": "user"} in data["domains"]


def test_bad_taxonomy_file_names_line(cli_run, tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("dimension,domain\ncultural,Puppetry\nmoral,Thing\n", encoding="utf-8")
    res = cli_run("taxonomy", "add", str(f))
    assert res.exit_code == 2
    assert f"{f}: line 3: unknown dimension 'moral'" in res.stderr


def test_home_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "env"))
    assert resolve_home(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert resolve_home(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv(ENV_HOME)
    (tmp_path / "cwd" / "db").mkdir(parents=True)
    assert resolve_home(None, cwd=tmp_path / "cwd") == (tmp_path / "cwd").resolve()
    assert resolve_home(None, cwd=tmp_path) != tmp_path.resolve()


def test_schema_is_plain_sqlite(home: Path, cli_run) -> None:
    assert cli_run("benchmark", "list", "--format", "json").exit_code == 0
    conn = sqlite3.connect(home / "db" / "misalign.sqlite")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}
    assert {"domains", "benchmarks", "prompts", "prompt_domains", "responses", "pairs", "models", "runs",
            "judge_results", "preference_results", "generations", "judge_verdicts"} <= tables
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(home: Path, cli_run) -> None:
    cli_run("benchmark", "list")
    db = home / "db" / "misalign.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    res = cli_run("benchmark", "list")
    assert res.exit_code == 2
    assert "newer than this misalign-tui knows" in res.stderr and str(db) in res.stderr
    assert db.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_database(home: Path, cli_run, tmp_path: Path) -> None:
    cli_run("benchmark", "list")
    db = home / "db" / "misalign.sqlite"
    f = tmp_path / "x.csv"
    f.write_text("dimension,domain\ncultural,Puppetry\n")
    for p in (db, home / "db"):
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        res = cli_run("taxonomy", "add", str(f))
        assert res.exit_code == 2 and "read-only" in res.stderr
    finally:
        (home / "db").chmod(0o755)
        db.chmod(0o644)


def test_read_only_database_via_uri(home: Path, cli_run) -> None:
    """Works as root too: the database opened read-only is refused with one line naming the file."""
    cli_run("benchmark", "list")
    db = home / "db" / "misalign.sqlite"
    from misalign_tui.core.errors import UserError
    from misalign_tui.core.store import database_error

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as info:
        conn.execute("INSERT INTO dimensions VALUES ('x', 'y')")
    err = database_error(db, info.value)
    assert isinstance(err, UserError) and str(db) in str(err) and "read-only" in str(err)


def test_home_that_is_a_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from misalign_tui.cli import main
    from tests.conftest import _main_command

    f = tmp_path / "file"
    f.write_text("x")
    res = CliRunner().invoke(_main_command(main), ["--home", str(f), "benchmark", "list"])
    assert res.exit_code == 2
    assert str(f) in res.stderr and "Traceback" not in res.output


def test_content_hash_ignores_order_and_ids(tmp_path: Path) -> None:
    from misalign_tui.core.io.native import PairRecord, PromptRecord, insert_records
    from misalign_tui.core.taxonomy import published_taxonomy

    recs = [
        PromptRecord("a", "first prompt", "object", ["Animal Abuse"], [PairRecord("safety", "good", "bad")]),
        PromptRecord("b", "second prompt", "relation", ["Humility", "Dance"],
                     [PairRecord("value", "v+", "v-"), PairRecord("cultural", "c+", "c-")]),
    ]
    hashes = []
    for i, order in enumerate((recs, recs[::-1])):
        with Store(tmp_path / f"{i}.sqlite") as s:
            s.sync_taxonomy(published_taxonomy())
            with s.transaction() as c:
                bid = c.execute("INSERT INTO benchmarks(name) VALUES ('t')").lastrowid
                insert_records(s, bid, order)
            hashes.append(content_hash(s.conn, bid))
    assert hashes[0] == hashes[1]
    recs[0].pairs[0].misaligned = "worse"
    with Store(tmp_path / "2.sqlite") as s:
        s.sync_taxonomy(published_taxonomy())
        with s.transaction() as c:
            bid = c.execute("INSERT INTO benchmarks(name) VALUES ('t')").lastrowid
            insert_records(s, bid, recs)
        assert content_hash(s.conn, bid) != hashes[0]
