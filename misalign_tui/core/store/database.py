"""The workspace database: connections, transactions and the queries the rest of the core shares (the schema
is the sum of the named migrations in migrations.py).

Plain SQLite (WAL, foreign keys on) with readable table names, so an auditor can open it with ``sqlite3``,
``sqlite-utils`` or Datasette and find every prompt, response, verdict and its provenance without our code.
One connection per thread; the TUI reads while a CLI run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from misalign_tui.core.errors import UserError
from misalign_tui.core.store.migrations import migrate as apply_migrations
from misalign_tui.core.store.migrations import pending
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES, Domain, Taxonomy

BUSY_TIMEOUT_MS = 15_000
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"


def last_id(cursor: sqlite3.Cursor) -> int:
    """The rowid the INSERT just run on ``cursor`` created."""
    if cursor.lastrowid is None:
        raise RuntimeError("the INSERT created no row")
    return cursor.lastrowid


class _Connection(sqlite3.Connection):
    """A connection that knows whether it was opened read-only (``connect``)."""

    read_only = False


def _writable(path: Path) -> bool:
    """Whether SQLite can write here: the file and its folder (WAL keeps its -wal and -shm files beside it)."""
    if not path.exists():
        return True  # to be created: SQLite says so if the folder is not writable
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _sqlite(target: str, *, uri: bool) -> _Connection:
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None,
                           uri=uri, factory=_Connection)
    conn.row_factory = sqlite3.Row
    return conn


def _open_read_only(path: Path) -> _Connection:
    """``mode=ro``; where SQLite cannot create the WAL index (-shm) beside a WAL database — a read-only folder or
    filesystem — ``immutable=1``, which is exact only when no write-ahead log is left to replay."""
    base = "file:" + quote(str(path.resolve()))
    conn = _sqlite(base + "?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise UserError(f"{path}: read-only here, and its write-ahead log {wal.name} holds changes SQLite can "
                            "only read where it may create the -shm file; copy the db folder somewhere writable"
                            ) from None
        conn = _sqlite(base + "?immutable=1", uri=True)
    conn.read_only = True
    return conn


def connect(path: str | Path, *, migrate: bool = True) -> sqlite3.Connection:
    """Open the database (WAL, foreign keys, busy timeout), migrating it to the current schema.

    A database this process cannot write (a read-only file, folder or filesystem) is opened read-only so that
    every command that only reads still works (``_open_read_only``); a write then fails with one line saying the
    database is read-only. Pending migrations are applied only to a database that passes ``PRAGMA
    quick_check``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a database file")
    try:
        conn = _sqlite(str(path), uri=False) if _writable(path) else _open_read_only(path)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not conn.read_only:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                except sqlite3.OperationalError:
                    pass  # a read-only file keeps its mode; reads still work
            conn.execute("PRAGMA synchronous = NORMAL")
        if migrate:
            if not conn.read_only and pending(conn, path):
                require_intact(conn, path)
            apply_migrations(conn, path)
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from exc
    return conn


def integrity_problems(conn: sqlite3.Connection, *, full: bool = False) -> list[str]:
    """What SQLite finds wrong with the database file: ``PRAGMA quick_check`` (every page and record, in one
    pass), or with ``full`` ``PRAGMA integrity_check`` (indexes and constraints too); [] when it is intact."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def require_intact(conn: sqlite3.Connection, path: str | Path) -> None:
    """Refuse to write to a damaged database, in one line (``misalign-tui doctor`` shows every problem)."""
    problems = integrity_problems(conn)
    if problems:
        first = problems[0].replace("\n", " ")
        raise UserError(f"{path}: the database is damaged ({len(problems)} problem(s) found by PRAGMA quick_check, "
                        f"first: {first}); nothing was written. misalign-tui doctor checks it in full; restore a "
                        "backup, or export what is still readable")


def check_database(path: str | Path) -> list[str]:
    """``PRAGMA integrity_check`` on the workspace database, opened without migrating it (and read-only where
    it cannot be written): every problem, [] when it is intact."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no database here yet (misalign-tui init creates it)")
    try:
        conn = _sqlite(str(path), uri=False) if _writable(path) else _open_read_only(path)
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    try:
        return integrity_problems(conn, full=True)
    finally:
        conn.close()


def database_error(path: str | Path, exc: BaseException) -> UserError:
    """Turn sqlite's messages into one line that says which file and what to do."""
    msg = str(exc)
    if "readonly" in msg or "read-only" in msg:
        return UserError(f"{path}: the database is read-only; make it writable or use another --home")
    if "locked" in msg or "busy" in msg:
        return UserError(f"{path}: the database stayed locked by another process for "
                         f"{BUSY_TIMEOUT_MS // 1000} s; try again when it finishes")
    if "file is not a database" in msg or "malformed" in msg:
        return UserError(f"{path}: not a misalign-tui database, or damaged ({msg}); misalign-tui doctor checks it")
    if "disk is full" in msg or "full" in msg:
        return UserError(f"{path}: the disk is full; free space and rerun (finished work is kept)")
    if "disk I/O error" in msg:
        return UserError(f"{path}: cannot write the database (disk I/O error: is the disk full, over a quota or "
                         "failing?); finished work is kept")
    if "unable to open" in msg:
        return UserError(f"{path}: cannot open the database (check the folder exists and is writable)")
    return UserError(f"{path}: database error: {msg}")


@dataclass(frozen=True)
class BenchmarkInfo:
    id: int
    name: str
    version: int
    content_hash: str | None
    prompts: int
    responses: int
    created_at: str


@dataclass(frozen=True)
class RunInfo:
    id: int
    model: str
    model_id: int
    benchmark: str
    benchmark_id: int
    method: str
    status: str
    templates: int
    items_total: int
    items_done: int
    started_at: str
    finished_at: str | None
    judge_model: str | None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunInfo:
        """From a row of ``RUN_SQL``."""
        return cls(*tuple(row))


RUN_SQL = """
    SELECT r.id, m.name AS model, r.model_id, b.name || '@' || b.version AS benchmark, r.benchmark_id, r.method,
           r.status, r.templates, r.items_total, r.items_done, r.started_at, r.finished_at, j.name AS judge_model
    FROM runs r JOIN models m ON m.id = r.model_id JOIN benchmarks b ON b.id = r.benchmark_id
    LEFT JOIN models j ON j.id = r.judge_model_id
"""


def run_info(store: Store, run_id: int) -> RunInfo:
    row = store.conn.execute(RUN_SQL + " WHERE r.id = ?", (run_id,)).fetchone()
    if row is None:
        raise UserError(f"run {run_id} not found; misalign-tui runs list shows the runs")
    return RunInfo.from_row(row)


class Store:
    """One connection to the workspace database, with the queries the core shares.

    Not shared between threads: each thread opens its own ``Store`` on the same file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path)
        self._lock = threading.RLock()
        self._intact = False  # PRAGMA quick_check passed (run before this connection's first write)

    @property
    def read_only(self) -> bool:
        """Opened read-only: the file, its folder or its filesystem cannot be written here."""
        return bool(getattr(self.conn, "read_only", False))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolls back on error so nothing half-written stays. The first write of this
        connection checks the file first (``require_intact``): nothing is written into a damaged database."""
        with self._lock:
            if self.read_only:
                raise UserError(f"{self.path}: the database is read-only here (file, folder or filesystem); make it "
                                "writable or use another --home")
            if not self._intact:
                try:
                    require_intact(self.conn, self.path)
                except sqlite3.DatabaseError as exc:
                    raise database_error(self.path, exc) from exc
                self._intact = True
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise database_error(self.path, exc) from exc
            try:
                yield self.conn
            except sqlite3.OperationalError as exc:  # e.g. the disk filled: say so, not what rollback then says
                self._rollback()
                raise database_error(self.path, exc) from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise database_error(self.path, exc) from exc

    def _rollback(self) -> None:
        # SQLite has already rolled back by itself after some errors (a full disk); a second ROLLBACK would fail.
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # -- taxonomy ---------------------------------------------------------------------------------------

    def sync_taxonomy(self, taxonomy: Taxonomy) -> int:
        """Insert dimensions, semantic types and any domain not yet stored; returns domains added."""
        try:
            with self.transaction() as c:
                c.executemany("INSERT OR IGNORE INTO dimensions(name, description) VALUES (?, ?)",
                              DIMENSIONS.items())
                c.executemany("INSERT OR IGNORE INTO semantic_types(name, description) VALUES (?, ?)",
                              SEMANTIC_TYPES.items())
                before = c.execute("SELECT count(*) FROM domains").fetchone()[0]
                c.executemany(
                    "INSERT OR IGNORE INTO domains(dimension, name, source, origin) VALUES (?, ?, ?, ?)",
                    [(d.dimension, d.name, d.source, d.origin) for d in taxonomy.domains],
                )
                return c.execute("SELECT count(*) FROM domains").fetchone()[0] - before
        except sqlite3.DatabaseError as exc:
            raise database_error(self.path, exc) from exc

    def taxonomy(self) -> Taxonomy:
        rows = self.conn.execute("SELECT dimension, name, source, origin FROM domains ORDER BY id").fetchall()
        return Taxonomy(tuple(Domain(r[0], r[1], r[2], r[3]) for r in rows))

    def domain_ids(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT name, id FROM domains")}

    # -- benchmarks -------------------------------------------------------------------------------------

    def benchmarks(self) -> list[BenchmarkInfo]:
        rows = self.conn.execute(
            """
            SELECT b.id, b.name, b.version, b.content_hash, b.created_at,
                   (SELECT count(*) FROM prompts p WHERE p.benchmark_id = b.id) AS prompts,
                   (SELECT count(*) FROM responses r JOIN prompts p ON p.id = r.prompt_id
                     WHERE p.benchmark_id = b.id) AS responses
            FROM benchmarks b ORDER BY b.name, b.version
            """
        ).fetchall()
        return [BenchmarkInfo(r["id"], r["name"], r["version"], r["content_hash"], r["prompts"],
                              r["responses"], r["created_at"]) for r in rows]

    def benchmark(self, name: str, version: int | None = None) -> BenchmarkInfo:
        """The named benchmark (its latest version unless one is given); ``name@3`` picks version 3."""
        if version is None and "@" in name:
            name, _, v = name.rpartition("@")
            if not v.isdigit():
                raise UserError(f"benchmark {name}@{v}: the version after @ must be a number")
            version = int(v)
        matches = [b for b in self.benchmarks() if b.name == name and (version is None or b.version == version)]
        if not matches:
            known = ", ".join(sorted({b.name for b in self.benchmarks()})) or "none yet (run misalign-tui init)"
            raise UserError(f"benchmark {name!r}{'' if version is None else f' version {version}'} "
                            f"not found; known: {known}")
        return matches[-1]

    def benchmark_by_id(self, benchmark_id: int) -> BenchmarkInfo:
        for b in self.benchmarks():
            if b.id == benchmark_id:
                return b
        raise UserError(f"benchmark id {benchmark_id} not found")

    def update_content_hash(self, benchmark_id: int) -> str:
        digest = content_hash(self.conn, benchmark_id)
        self.conn.execute("UPDATE benchmarks SET content_hash = ? WHERE id = ?", (digest, benchmark_id))
        return digest


def content_hash(conn: sqlite3.Connection, benchmark_id: int) -> str:
    """sha256 over the benchmark's content (prompt text, type, domains, responses; a non-English or parallel
    prompt adds its language and its source prompt's text), independent of row ids, keys and insertion order —
    so an export re-imported elsewhere hashes the same, and a benchmark of English prompts hashes as it always
    did.

    One JSON line per prompt, lines sorted, each followed by a newline. Streams: the lines are built from three
    cursors ordered by prompt id and sorted by SQLite in a temporary table (UTF-8 byte order = code point
    order, as Python sorts), so memory stays flat however large the benchmark."""

    def grouped(sql: str) -> Iterator[tuple[int, list[list[str]]]]:
        cur = conn.execute(sql, (benchmark_id,))
        pid: int | None = None
        items: list[list[str]] = []
        for row in cur:
            if row[0] != pid:
                if pid is not None:
                    yield pid, items
                pid, items = row[0], []
            items.append(list(row[1:]))
        if pid is not None:
            yield pid, items

    sources = [
        grouped("SELECT pd.prompt_id, d.name FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id "
                "JOIN prompts p ON p.id = pd.prompt_id WHERE p.benchmark_id = ? ORDER BY pd.prompt_id"),
        grouped("SELECT r.prompt_id, coalesce(r.dimension, ''), r.label, r.text FROM responses r "
                "JOIN prompts p ON p.id = r.prompt_id WHERE p.benchmark_id = ? ORDER BY r.prompt_id"),
        grouped("SELECT pr.prompt_id, coalesce(pr.dimension, ''), ra.text, rm.text FROM pairs pr "
                "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
                "JOIN prompts p ON p.id = pr.prompt_id WHERE p.benchmark_id = ? ORDER BY pr.prompt_id"),
    ]
    heads: list[tuple[int, list[list[str]]] | None] = [next(src, None) for src in sources]

    def take(i: int, pid: int) -> list[list[str]]:
        head = heads[i]
        if head is None or head[0] != pid:
            return []
        heads[i] = next(sources[i], None)
        return head[1]

    conn.execute("CREATE TEMP TABLE IF NOT EXISTS content_hash_lines (line TEXT NOT NULL)")
    conn.execute("DELETE FROM content_hash_lines")
    lines = conn.cursor()
    prompts = conn.execute("SELECT p.id, p.text, coalesce(p.semantic_type, ''), p.language, s.text FROM prompts p "
                           "LEFT JOIN prompts s ON s.id = p.source_prompt_id WHERE p.benchmark_id = ? "
                           "ORDER BY p.id", (benchmark_id,))
    for pid, text, stype, language, source in prompts:
        domains = sorted(d[0] for d in take(0, pid))
        fields: list[object] = [text, stype, domains, sorted(take(1, pid)), sorted(take(2, pid))]
        if language != "en" or source is not None:  # English prompts hash as they did before languages existed
            fields += [language, source]
        line = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        lines.execute("INSERT INTO content_hash_lines(line) VALUES (?)", (line,))
    h = hashlib.sha256()
    for (line,) in conn.execute("SELECT line FROM content_hash_lines ORDER BY line"):
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    conn.execute("DELETE FROM content_hash_lines")
    return h.hexdigest()
