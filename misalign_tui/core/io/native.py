"""This project's own benchmark format: JSON lines, one prompt per line.

``{"id": ..., "prompt": ..., "semantic_type": "object|attribute|relation", "domains": [...],
"pairs": [{"dimension": ..., "aligned": ..., "misaligned": ...}], "responses": [{"dimension": ..., "label": ...,
"text": ...}]}`` — ``responses`` holds single labelled responses that are not part of a pair (optional).
``prompt`` may be ``""`` for a prompt-less item (``import --no-prompt``), which then carries pairs or responses.
The embedded seed benchmark and ``export benchmark --format jsonl`` use it, and ``import`` reads it back.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store, last_id
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

SEED_BENCHMARK = "misalign-seed"
SEED_FILE = "misalign_seed.jsonl"


@dataclass
class PairRecord:
    dimension: str | None
    aligned: str
    misaligned: str


@dataclass
class ResponseRecord:
    dimension: str | None
    label: str
    text: str


@dataclass
class PromptRecord:
    key: str
    prompt: str
    semantic_type: str | None
    domains: list[str]
    pairs: list[PairRecord] = field(default_factory=list)
    responses: list[ResponseRecord] = field(default_factory=list)
    origin: str = "seed"
    probabilities: dict[str, float] = field(default_factory=dict)


def _text(value: object, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field {name!r} must be non-empty text")
    if "\x00" in value:
        raise UserError(f"{where}: field {name!r} contains a NUL byte")
    return value


def parse_record(obj: object, where: str, known_domains: set[str] | None = None) -> PromptRecord:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object")
    key = str(obj.get("id") or obj.get("key") or "").strip()
    if not key:
        raise UserError(f"{where}: missing field 'id'")
    # An empty prompt is a prompt-less item (import --no-prompt); it must carry responses.
    prompt = "" if obj.get("prompt") == "" and (obj.get("pairs") or obj.get("responses")) else \
        _text(obj.get("prompt"), where, "prompt")
    stype = obj.get("semantic_type")
    if stype is not None and stype not in SEMANTIC_TYPES:
        raise UserError(f"{where}: field 'semantic_type': {stype!r} is not one of {', '.join(SEMANTIC_TYPES)}")
    domains = obj.get("domains") or []
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise UserError(f"{where}: field 'domains' must be a list of names")
    if known_domains is not None:
        for d in domains:
            if d not in known_domains:
                raise UserError(f"{where}: field 'domains': unknown domain {d!r}")
    pairs = []
    for i, p in enumerate(obj.get("pairs") or []):
        if not isinstance(p, dict):
            raise UserError(f"{where}: pairs[{i}] must be an object")
        dim = p.get("dimension")
        if dim is not None and dim not in DIMENSIONS:
            raise UserError(f"{where}: pairs[{i}].dimension: unknown dimension {dim!r}")
        pairs.append(PairRecord(dim, _text(p.get("aligned"), where, f"pairs[{i}].aligned"),
                                _text(p.get("misaligned"), where, f"pairs[{i}].misaligned")))
    responses = []
    for i, r in enumerate(obj.get("responses") or []):
        if not isinstance(r, dict):
            raise UserError(f"{where}: responses[{i}] must be an object")
        label = r.get("label")
        if label not in ("aligned", "misaligned"):
            raise UserError(f"{where}: responses[{i}].label must be 'aligned' or 'misaligned'")
        dim = r.get("dimension")
        if dim is not None and dim not in DIMENSIONS:
            raise UserError(f"{where}: responses[{i}].dimension: unknown dimension {dim!r}")
        responses.append(ResponseRecord(dim, label, _text(r.get("text"), where, f"responses[{i}].text")))
    probs = obj.get("probabilities") or {}
    return PromptRecord(key, prompt, stype, list(domains), pairs, responses, str(obj.get("origin") or "seed"),
                        dict(probs) if isinstance(probs, dict) else {})


def read_jsonl(path: Path, known_domains: set[str] | None = None) -> Iterator[PromptRecord]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{n}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
                yield parse_record(obj, f"{path}:{n}", known_domains)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from exc


def record_to_json(rec: PromptRecord) -> dict[str, object]:
    out: dict[str, object] = {"id": rec.key, "prompt": rec.prompt, "semantic_type": rec.semantic_type,
                              "domains": rec.domains,
                              "pairs": [{"dimension": p.dimension, "aligned": p.aligned, "misaligned": p.misaligned}
                                        for p in rec.pairs]}
    if rec.responses:
        out["responses"] = [{"dimension": r.dimension, "label": r.label, "text": r.text} for r in rec.responses]
    return out


def insert_records(store: Store, benchmark_id: int, records: Iterable[PromptRecord]) -> int:
    """Insert prompts with their labels, pairs and responses; the caller owns the transaction."""
    domain_ids = store.domain_ids()
    n = 0
    for rec in records:
        insert_record(store.conn, benchmark_id, rec, domain_ids)
        n += 1
    return n


def insert_record(c: sqlite3.Connection, benchmark_id: int, rec: PromptRecord, domain_ids: dict[str, int],
                  fingerprint: int | None = None) -> int:
    """Insert one prompt with its domains, pairs and single responses; returns the prompt id."""
    pid = last_id(c.execute(
        "INSERT INTO prompts(benchmark_id, key, text, semantic_type, origin, fingerprint) VALUES (?, ?, ?, ?, ?, ?)",
        (benchmark_id, rec.key, rec.prompt, rec.semantic_type, rec.origin, fingerprint),
    ))
    for d in rec.domains:
        if d not in domain_ids:
            raise UserError(f"prompt {rec.key}: unknown domain {d!r}")
        c.execute("INSERT OR IGNORE INTO prompt_domains(prompt_id, domain_id, probability) VALUES (?, ?, ?)",
                  (pid, domain_ids[d], rec.probabilities.get(d)))
    for p in rec.pairs:
        insert_pair(c, pid, p, rec.origin)
    for r in rec.responses:
        insert_response(c, pid, r, rec.origin)
    return pid


def insert_pair(c: sqlite3.Connection, prompt_id: int, pair: PairRecord, origin: str) -> int:
    """Both responses of a pair and the pair row linking them; returns the pair id."""
    a = last_id(c.execute("INSERT INTO responses(prompt_id, dimension, label, text, origin) VALUES (?,?,?,?,?)",
                  (prompt_id, pair.dimension, "aligned", pair.aligned, origin)))
    m = last_id(c.execute("INSERT INTO responses(prompt_id, dimension, label, text, origin) VALUES (?,?,?,?,?)",
                  (prompt_id, pair.dimension, "misaligned", pair.misaligned, origin)))
    return last_id(c.execute("INSERT INTO pairs(prompt_id, dimension, aligned_id, misaligned_id) VALUES (?, ?, ?, ?)",
                         (prompt_id, pair.dimension, a, m)))


def insert_response(c: sqlite3.Connection, prompt_id: int, response: ResponseRecord, origin: str) -> int:
    """A single labelled response that belongs to no pair; returns its id."""
    return last_id(c.execute("INSERT INTO responses(prompt_id, dimension, label, text, origin) VALUES (?,?,?,?,?)",
                         (prompt_id, response.dimension, response.label, response.text, origin)))


def seed_path() -> Path | None:
    ref = resources.files("misalign_tui.data").joinpath(SEED_FILE)
    return Path(str(ref)) if ref.is_file() else None


def load_seed_benchmark(store: Store) -> int | None:
    """Load the embedded seed benchmark once; returns its id, or None when the package carries none."""
    path = seed_path()
    if path is None:
        return None
    row = store.conn.execute("SELECT id FROM benchmarks WHERE name = ? ORDER BY version DESC",
                             (SEED_BENCHMARK,)).fetchone()
    if row is not None:
        return int(row[0])
    known = set(store.domain_ids())
    records = list(read_jsonl(path, known))
    with store.transaction() as c:
        bid = last_id(c.execute(
            "INSERT INTO benchmarks(name, version, description, licence, source_json) VALUES (?, 1, ?, ?, ?)",
            (SEED_BENCHMARK, "MisAlign-Seed: written for misalign-tui, every published domain and semantic type",
             "MIT (written for this project)", json.dumps({"file": SEED_FILE, "embedded": True})),
        ))
        insert_records(store, bid, records)
        store.update_content_hash(bid)
    return int(bid)
