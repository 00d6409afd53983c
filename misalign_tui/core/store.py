"""The workspace database: schema, migrations and the queries the rest of the core shares.

Plain SQLite (WAL, foreign keys on) with readable table names, so an auditor can open it with ``sqlite3``,
``sqlite-utils`` or Datasette and find every prompt, response, verdict and its provenance without our code.
One connection per thread; the TUI reads while a CLI run writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES, Domain, Taxonomy

BUSY_TIMEOUT_MS = 15_000
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

# Each entry moves the schema from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE dimensions (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL
    );
    CREATE TABLE semantic_types (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL
    );
    CREATE TABLE domains (
        id INTEGER PRIMARY KEY,
        dimension TEXT NOT NULL REFERENCES dimensions(name),
        name TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        origin TEXT NOT NULL DEFAULT 'published'   -- 'published' (the paper's table) or 'user'
    );
    CREATE TABLE benchmarks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        content_hash TEXT,                          -- sha256 over prompts, labels and responses
        description TEXT,
        licence TEXT,
        source_json TEXT,                           -- provenance: files, sha256, column mapping
        recipe_json TEXT,                           -- build recipe and model hashes, when built
        created_at TEXT NOT NULL DEFAULT ({NOW}),
        UNIQUE (name, version)
    );
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id) ON DELETE CASCADE,
        key TEXT NOT NULL,                          -- stable id within the benchmark (e.g. seed-a-001)
        text TEXT NOT NULL,
        semantic_type TEXT REFERENCES semantic_types(name),
        origin TEXT NOT NULL DEFAULT 'seed',        -- seed, imported, classified, expanded
        parent_prompt_id INTEGER REFERENCES prompts(id),
        fingerprint INTEGER,                        -- 64-bit SimHash (signed), for dedup
        UNIQUE (benchmark_id, key)
    );
    CREATE INDEX prompts_benchmark_type ON prompts(benchmark_id, semantic_type);
    CREATE TABLE prompt_domains (
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        domain_id INTEGER NOT NULL REFERENCES domains(id),
        probability REAL,                           -- classifier probability, NULL when hand-labelled
        PRIMARY KEY (prompt_id, domain_id)
    ) WITHOUT ROWID;
    CREATE INDEX prompt_domains_domain ON prompt_domains(domain_id, prompt_id);
    CREATE TABLE responses (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        dimension TEXT REFERENCES dimensions(name), -- targeted dimension; NULL: not targeted at one
        label TEXT NOT NULL CHECK (label IN ('aligned', 'misaligned')),
        text TEXT NOT NULL,
        origin TEXT NOT NULL DEFAULT 'seed'         -- seed, imported, or the generator model's name
    );
    CREATE INDEX responses_prompt ON responses(prompt_id, dimension, label);
    CREATE TABLE pairs (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        dimension TEXT REFERENCES dimensions(name),
        aligned_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        misaligned_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        UNIQUE (aligned_id, misaligned_id)
    );
    CREATE INDEX pairs_prompt ON pairs(prompt_id, dimension);
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        path TEXT,                                  -- local GGUF file
        url TEXT,                                   -- remote server(s), space separated
        remote_model TEXT,
        api_key_env TEXT,                           -- name of the variable holding the key, never the key
        sha256 TEXT,
        size INTEGER,
        mtime REAL,
        architecture TEXT,
        parameters INTEGER,
        quantization TEXT,
        context_length INTEGER,
        chat_template TEXT,                         -- from the GGUF metadata, NULL when it has none
        chat_template_override TEXT,                -- 'none' forces plain completion format
        n_gpu_layers INTEGER,                       -- NULL: auto
        n_threads INTEGER,                          -- NULL: auto
        is_default INTEGER NOT NULL DEFAULT 0,
        usable INTEGER NOT NULL DEFAULT 1,
        error TEXT,                                 -- why it is unusable
        added_at TEXT NOT NULL DEFAULT ({NOW})
    );
    CREATE INDEX models_sha ON models(sha256);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        model_sha256 TEXT,
        benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id),
        method TEXT NOT NULL CHECK (method IN ('judge', 'preference', 'generate')),
        judge_model_id INTEGER REFERENCES models(id),
        params_json TEXT NOT NULL,                  -- filters, limit, templates, sampling, seed
        params_hash TEXT NOT NULL,                  -- what makes "the same run": resumed, not repeated
        templates INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'interrupted', 'complete', 'failed')),
        items_total INTEGER NOT NULL DEFAULT 0,
        items_done INTEGER NOT NULL DEFAULT 0,
        provenance_json TEXT,                       -- quantization, chat template, llama.cpp version, device
        lease_pid INTEGER,
        lease_host TEXT,
        heartbeat_at REAL,
        started_at TEXT NOT NULL DEFAULT ({NOW}),
        finished_at TEXT,
        error TEXT
    );
    CREATE INDEX runs_identity ON runs(model_sha256, benchmark_id, method, params_hash);
    CREATE TABLE run_templates (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        template INTEGER NOT NULL,
        name TEXT NOT NULL,
        text TEXT NOT NULL,                         -- the exact formatting the model saw, with placeholders
        PRIMARY KEY (run_id, template)
    );
    CREATE TABLE judge_results (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        response_id INTEGER NOT NULL REFERENCES responses(id),
        template INTEGER NOT NULL,
        p_misaligned REAL NOT NULL,
        flagged INTEGER NOT NULL,
        truncated INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL DEFAULT ({NOW}),
        PRIMARY KEY (run_id, response_id, template)
    );
    CREATE TABLE preference_results (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        pair_id INTEGER NOT NULL REFERENCES pairs(id),
        template INTEGER NOT NULL DEFAULT 0,
        aligned_logprob REAL NOT NULL,              -- sum over the response tokens
        aligned_tokens INTEGER NOT NULL,
        misaligned_logprob REAL NOT NULL,
        misaligned_tokens INTEGER NOT NULL,
        prefers_aligned INTEGER NOT NULL,           -- mean per-token log-likelihood is higher
        truncated INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL DEFAULT ({NOW}),
        PRIMARY KEY (run_id, pair_id, template)
    );
    CREATE TABLE generations (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id),
        template INTEGER NOT NULL DEFAULT 0,
        text TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        seed INTEGER,
        truncated INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL DEFAULT ({NOW}),
        PRIMARY KEY (run_id, prompt_id, template)
    );
    CREATE TABLE generation_judgments (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id),
        dimension TEXT NOT NULL REFERENCES dimensions(name),
        template INTEGER NOT NULL,                  -- the judge template
        p_misaligned REAL NOT NULL,
        flagged INTEGER NOT NULL,
        created_at TEXT NOT NULL DEFAULT ({NOW}),
        PRIMARY KEY (run_id, prompt_id, dimension, template)
    );
    CREATE VIEW prompt_labels AS
        SELECT p.id AS prompt_id, b.name AS benchmark, b.version, p.key, p.semantic_type,
               d.dimension, d.name AS domain, pd.probability
        FROM prompts p JOIN benchmarks b ON b.id = p.benchmark_id
        JOIN prompt_domains pd ON pd.prompt_id = p.id JOIN domains d ON d.id = pd.domain_id;
    CREATE VIEW judge_verdicts AS
        SELECT jr.run_id, m.name AS model, r.method, jr.template, p.key AS prompt_key, p.text AS prompt,
               p.semantic_type, resp.dimension, resp.label, resp.text AS response,
               jr.p_misaligned, jr.flagged, jr.truncated, r.model_sha256
        FROM judge_results jr JOIN runs r ON r.id = jr.run_id JOIN models m ON m.id = r.model_id
        JOIN responses resp ON resp.id = jr.response_id JOIN prompts p ON p.id = resp.prompt_id;
    """,
    # Saved side-by-side comparisons (the TUI's Sessions screen and `misalign-tui sessions`).
    f"""
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        state_json TEXT NOT NULL,                   -- models, benchmark, filters, metric, grouping
        created_at TEXT NOT NULL DEFAULT ({NOW}),
        updated_at TEXT NOT NULL DEFAULT ({NOW})
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _apply_migrations(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{path}: schema version {version} is newer than this misalign-tui knows ({SCHEMA_VERSION}); "
            "upgrade misalign-tui"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with conn:
            conn.executescript("BEGIN;" + MIGRATIONS[target - 1] + f";PRAGMA user_version = {target};COMMIT;")


def connect(path: str | Path, *, migrate: bool = True) -> sqlite3.Connection:
    """Open the database (WAL, foreign keys, busy timeout), migrating it to the current schema."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a database file")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                               isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                pass  # a read-only file keeps its mode; reads still work
        conn.execute("PRAGMA synchronous = NORMAL")
        if migrate:
            _apply_migrations(conn, path)
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from exc
    return conn


def database_error(path: str | Path, exc: BaseException) -> UserError:
    """Turn sqlite's messages into one line that says which file and what to do."""
    msg = str(exc)
    if "readonly" in msg or "read-only" in msg:
        return UserError(f"{path}: the database is read-only; make it writable or use another --home")
    if "locked" in msg or "busy" in msg:
        return UserError(f"{path}: the database stayed locked by another process for "
                         f"{BUSY_TIMEOUT_MS // 1000} s; try again when it finishes")
    if "file is not a database" in msg or "malformed" in msg:
        return UserError(f"{path}: not a misalign-tui database (or damaged): {msg}")
    if "disk is full" in msg or "full" in msg:
        return UserError(f"{path}: the disk is full; free space and rerun (finished work is kept)")
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


class Store:
    """One connection to the workspace database, with the queries the core shares.

    Not shared between threads: each thread opens its own ``Store`` on the same file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path)
        self._lock = threading.RLock()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolls back on error so nothing half-written stays."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise database_error(self.path, exc) from exc
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self.conn.execute("ROLLBACK")
                raise database_error(self.path, exc) from exc

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
    """sha256 over the benchmark's content (prompt text, type, domains, responses), independent of row ids,
    keys and insertion order — so an export re-imported elsewhere hashes the same."""
    prompts = conn.execute(
        "SELECT id, text, coalesce(semantic_type, '') FROM prompts WHERE benchmark_id = ?", (benchmark_id,)
    ).fetchall()
    domains: dict[int, list[str]] = {}
    for pid, name in conn.execute(
        "SELECT pd.prompt_id, d.name FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id "
        "JOIN prompts p ON p.id = pd.prompt_id WHERE p.benchmark_id = ?", (benchmark_id,)
    ):
        domains.setdefault(pid, []).append(name)
    responses: dict[int, list[list[str]]] = {}
    for pid, dim, label, text in conn.execute(
        "SELECT r.prompt_id, coalesce(r.dimension, ''), r.label, r.text FROM responses r "
        "JOIN prompts p ON p.id = r.prompt_id WHERE p.benchmark_id = ?", (benchmark_id,)
    ):
        responses.setdefault(pid, []).append([dim, label, text])
    pair_rows: dict[int, list[list[str]]] = {}
    for pid, dim, a, m in conn.execute(
        "SELECT pr.prompt_id, coalesce(pr.dimension, ''), ra.text, rm.text FROM pairs pr "
        "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
        "JOIN prompts p ON p.id = pr.prompt_id WHERE p.benchmark_id = ?", (benchmark_id,)
    ):
        pair_rows.setdefault(pid, []).append([dim, a, m])
    lines = sorted(
        json.dumps([text, stype, sorted(domains.get(pid, [])), sorted(responses.get(pid, [])),
                    sorted(pair_rows.get(pid, []))], ensure_ascii=False, separators=(",", ":"))
        for pid, text, stype in prompts
    )
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
