"""Named, frozen migrations: a blank database gets every one in order, a release-1 database upgrades with every
figure unchanged, a database from before the rollups counts its stored results, and no released migration
changes."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import SCHEMA_VERSION, Store, migrations, rebuild_rollups

FIXTURE = Path(__file__).parent / "fixtures" / "release1"

# The source of every released migration, hashed. A change here means a released migration was edited: add a
# new migration instead (and never update a hash to make this pass).
RELEASED = {
    "m001_initial": "6e1700c1b9880cbcf6280fb044ecf085688051cbf78eaea71b9cfb07c0d37e26",
    "m002_rollups": "8d16cb2b937a078756b9096b21e044a21d42b2d2e6440e679122d4eb4832eb75",
    "m003_builds": "fade3ce39669c332c1204aa69b8e75fc786f8bb3e3add13dfe34178520091f5d",
    "m004_sessions": "d453aceb5796ae3affc91048a7e4bee766de951b311a69a4dfa71eda6bad21fc",
    "m005_reviews": "080519ccb3a0319326108dc7c73a2ead8c54615e5016f0d08b8ca29fc62c8f1c",
    "m006_judge_quality": "7830f261fe4f680ac059886d72882c28c67b4a2062b4d34b3c777daf513bd60c",
    "m007_model_lineage": "dc65944d031b4ee3cd26d8b2ff1b25fb21c0074233c14f5a989052ffcff6a597",
    "m009_token_logprobs": "8ac6d4f7d70b29edd048d9427368dec971987cdcef43a2f55672b529067dcbbd",
    "m008_prompt_language": "14250779c73c5bb436342c11d1fe96079d8f4e74126b96a590367baf053baba8",
}
# The migrations whose tables release 1 already had (m005 only adds tables); the later ones change them.
RELEASE1_TABLES = ("m001_initial", "m002_rollups", "m003_builds", "m004_sessions", "m005_reviews")


def release1_copy(home: Path) -> Path:
    (home / "db").mkdir(parents=True, exist_ok=True)
    db = home / "db" / "misalign.sqlite"
    with gzip.open(FIXTURE / "misalign.sqlite.gz") as src, open(db, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return db


def schema(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != ?",
                        (migrations.MIGRATIONS_TABLE,)).fetchall()
    conn.close()
    return {name: re.sub(r"\s+", " ", sql).strip() for name, sql in rows}


def test_released_migrations_are_frozen() -> None:
    names = [fn.__name__ for fn in migrations.MIGRATIONS]
    assert names[:len(RELEASED)] == list(RELEASED), "released migrations keep their names and order"
    for fn in migrations.MIGRATIONS[:len(RELEASED)]:
        digest = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
        assert digest == RELEASED[fn.__name__], f"{fn.__name__} was edited after its release; add a migration"


def test_blank_database_gets_every_migration_recorded(tmp_path: Path) -> None:
    with Store(tmp_path / "new.sqlite") as store:
        rows = store.conn.execute(f"SELECT name FROM {migrations.MIGRATIONS_TABLE} ORDER BY rowid").fetchall()
        assert [r[0] for r in rows] == [fn.__name__ for fn in migrations.MIGRATIONS]
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_frozen_migrations_build_the_release1_schema(tmp_path: Path) -> None:
    """The released migrations, written out as literal SQL, make the same schema release 1 made (applied alone:
    later migrations add columns to these tables, e.g. m007 the lineage columns of ``models``)."""
    old = schema(release1_copy(tmp_path / "old"))
    conn = sqlite3.connect(tmp_path / "released.sqlite", isolation_level=None)
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    for fn in migrations.MIGRATIONS[:len(RELEASE1_TABLES)]:
        conn.execute("BEGIN")
        fn(db)
        conn.execute("COMMIT")
    conn.close()
    released = schema(tmp_path / "released.sqlite")
    assert {k: v for k, v in released.items() if k in old} == old
    Store(tmp_path / "new.sqlite").close()
    assert set(old) <= set(schema(tmp_path / "new.sqlite")), "an upgrade keeps every release-1 table, index and view"


def _report(cli_run, *args: str) -> dict:
    res = cli_run("report", *args, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _same_figures(old: object, new: object, path: str = "") -> list[str]:
    """Every key and value of the old document is in the new one, unchanged (new keys may be added)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), path
        return [d for k in old for d in (_same_figures(old[k], new[k], f"{path}.{k}") if k in new
                                         else [f"{path}.{k} is gone"])]
    if isinstance(old, list):
        if not isinstance(new, list) or len(old) != len(new):
            return [f"{path}: {len(old)} entries, now {len(new) if isinstance(new, list) else new!r}"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _same_figures(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} became {new!r}"]


def test_release1_database_upgrades_with_every_figure_unchanged(cli_run, home: Path) -> None:
    db = release1_copy(home)
    cases = {
        "report_default.json": (),
        "report_judge_domain.json": ("--run", "1", "--run", "3", "--run", "5", "--group-by", "domain"),
        "report_pref_gen_type.json": ("--run", "2", "--run", "4", "--group-by", "semantic_type"),
        "report_filtered.json": ("--run", "1", "--filter", "dimension=safety,value"),
    }
    for name, args in cases.items():
        expected = json.loads((FIXTURE / name).read_text())
        assert _same_figures(expected, _report(cli_run, *args)) == [], name
    conn = sqlite3.connect(db)
    recorded = [r[0] for r in conn.execute(f"SELECT name FROM {migrations.MIGRATIONS_TABLE} ORDER BY rowid")]
    assert recorded == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    res = cli_run("sessions", "report", "chat by type")
    assert res.exit_code == 0, res.output
    expected_md = (FIXTURE / "session_report.md").read_text()
    got_md = (home / "reports" / "chat by type.md").read_text()
    figures = re.compile(r"\d+\.\d%(?: \[[\d.]+, [\d.]+\])?")
    # the report has gained figures since release 1 (how good the judge is: pairwise accuracy, reliability bins);
    # every figure release 1 printed is still there, unchanged and in its order
    shown = iter(figures.findall(got_md))
    assert [f for f in figures.findall(expected_md) if f not in shown] == []


def test_results_stored_before_the_rollups_are_counted_by_m002(tmp_path: Path) -> None:
    """A database at m001 that already holds results: m002 counts them, exactly as a rebuild does."""
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    conn.execute("BEGIN")
    migrations.m001_initial(db)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    conn.executescript("""
        INSERT INTO dimensions VALUES ('safety', ''), ('value', '');
        INSERT INTO semantic_types VALUES ('object', '');
        INSERT INTO domains(id, dimension, name, source) VALUES (1, 'safety', 'S', 'x'), (2, 'value', 'V', 'x');
        INSERT INTO benchmarks(id, name) VALUES (1, 'b');
        INSERT INTO prompts(id, benchmark_id, key, text, semantic_type) VALUES (1, 1, 'p1', 'q', 'object'),
                                                                              (2, 1, 'p2', 'r', 'object');
        INSERT INTO prompt_domains VALUES (1, 1, NULL), (1, 2, NULL), (2, 1, NULL);
        INSERT INTO responses(id, prompt_id, dimension, label, text) VALUES
            (1, 1, 'safety', 'aligned', 'a'), (2, 1, 'safety', 'misaligned', 'b'),
            (3, 1, 'value', 'aligned', 'c'), (4, 1, 'value', 'misaligned', 'd'),
            (5, 2, 'safety', 'aligned', 'e'), (6, 2, 'safety', 'misaligned', 'f');
        INSERT INTO pairs(id, prompt_id, dimension, aligned_id, misaligned_id) VALUES
            (1, 1, 'safety', 1, 2), (2, 1, 'value', 3, 4), (3, 2, 'safety', 5, 6);
        INSERT INTO models(id, name, sha256) VALUES (1, 'm', 'abc');
        INSERT INTO runs(id, model_id, benchmark_id, method, params_json, params_hash, templates, status)
            VALUES (1, 1, 1, 'judge', '{}', 'h1', 2, 'complete'), (2, 1, 1, 'preference', '{}', 'h2', 1, 'complete');
        INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged) VALUES
            (1, 1, 0, 0.2, 0), (1, 1, 1, 0.9, 1), (1, 2, 0, 0.7, 1), (1, 2, 1, 0.6, 1), (1, 3, 0, 0.4, 0),
            (1, 3, 1, 0.3, 0), (1, 4, 0, 0.1, 0), (1, 4, 1, 0.2, 0), (1, 5, 0, 0.8, 1), (1, 6, 0, 0.9, 1);
        INSERT INTO preference_results(run_id, pair_id, aligned_logprob, aligned_tokens, misaligned_logprob,
                                       misaligned_tokens, prefers_aligned) VALUES
            (2, 1, -3, 3, -5, 3, 1), (2, 2, -6, 3, -2, 3, 0), (2, 3, -1, 1, -4, 2, 1);
    """)
    conn.close()
    tables = ("rollup_counts", "rollup_judge_items", "rollup_pair_outcomes", "rollup_prompt_satisfaction")
    with Store(path) as store:
        counted = {t: sorted(map(tuple, store.conn.execute(f"SELECT * FROM {t}"))) for t in tables}
        assert counted["rollup_counts"] and counted["rollup_pair_outcomes"]
        rebuild_rollups(store.conn)
        rebuilt = {t: sorted(map(tuple, store.conn.execute(f"SELECT * FROM {t}"))) for t in tables}
    assert counted == rebuilt


def test_a_database_with_an_unknown_migration_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"INSERT INTO {migrations.MIGRATIONS_TABLE}(name, applied_at) VALUES ('m999_future', 'x')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(UserError, match="m999_future is newer than this misalign-tui knows"):
        Store(path)
    assert path.read_bytes() == before
