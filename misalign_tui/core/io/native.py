"""This project's own benchmark format: JSON lines, one prompt per line.

``{"id": ..., "prompt": ..., "semantic_type": "object|attribute|relation", "domains": [...],
"pairs": [{"dimension": ..., "aligned": ..., "misaligned": ...}], "responses": [{"dimension": ..., "label": ...,
"text": ...}]}`` — ``responses`` holds single labelled responses that are not part of a pair (optional).
``prompt`` may be ``""`` for a prompt-less item (``import --no-prompt``), which then carries pairs or responses.
``language`` (a BCP 47 tag; English when absent) and ``source`` (a parallel item: the id of the English prompt of
the same benchmark it renders, listed before it) are optional.
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
from misalign_tui.core.languages import DEFAULT_LANGUAGE, normalise_tag, tag_error
from misalign_tui.core.store import Store, last_id
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

SEED_BENCHMARK = "misalign-seed"
SEED_FILE = "misalign_seed.jsonl"
# The seed with its parallel items: misalign-seed@1's English prompts unchanged plus, for 30 of them, the same
# scenario written in Spanish, Hindi, Arabic, Chinese (Simplified) and Swahili. A separate benchmark, so that
# misalign-seed@1 (and every run and figure on it) stays byte-identical.
LANGUAGES_BENCHMARK = "misalign-seed-languages"
LANGUAGES_FILE = "misalign_seed_languages.jsonl"
EMBEDDED = (SEED_BENCHMARK, LANGUAGES_BENCHMARK)


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
    language: str = DEFAULT_LANGUAGE
    source: str | None = None  # a parallel item: the key of the English prompt of the same benchmark it renders


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
    language, source = parse_language(obj.get("language"), obj.get("source"), where)
    return PromptRecord(key, prompt, stype, list(domains), pairs, responses, str(obj.get("origin") or "seed"),
                        dict(probs) if isinstance(probs, dict) else {}, language, source)


def parse_language(value: object, source: object, where: str) -> tuple[str, str | None]:
    """A record's language (BCP 47, normalised; English when absent) and parallel source key."""
    language = DEFAULT_LANGUAGE
    if value not in (None, ""):
        tag = normalise_tag(value) if isinstance(value, str) else None
        if tag is None:
            raise UserError(f"{where}: field 'language': {tag_error(value)}")
        language = tag
    if source in (None, ""):
        return language, None
    if not isinstance(source, str):
        raise UserError(f"{where}: field 'source' must be the id of the English prompt this item renders")
    return language, source.strip()


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
    if rec.language != DEFAULT_LANGUAGE or rec.source:
        out["language"] = rec.language
    if rec.source:
        out["source"] = rec.source
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
    """Insert one prompt with its domains, pairs and single responses; returns the prompt id. A parallel item's
    source must already be a prompt of the benchmark (files list sources before the items that render them)."""
    source_id = source_prompt_id(c, benchmark_id, rec.key, rec.source) if rec.source else None
    pid = last_id(c.execute(
        "INSERT INTO prompts(benchmark_id, key, text, semantic_type, origin, fingerprint, language, source_prompt_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (benchmark_id, rec.key, rec.prompt, rec.semantic_type, rec.origin, fingerprint, rec.language, source_id),
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


def source_prompt_id(c: sqlite3.Connection, benchmark_id: int, key: str, source: str) -> int:
    """The id of a parallel item's source prompt; refuses a missing or non-English source."""
    row = c.execute("SELECT id, language FROM prompts WHERE benchmark_id = ? AND key = ?",
                    (benchmark_id, source)).fetchone()
    if row is None:
        raise UserError(f"prompt {key}: field 'source': {source!r} is not a prompt of this benchmark (a parallel "
                        "item names an English prompt listed before it)")
    if row[1] != DEFAULT_LANGUAGE:
        raise UserError(f"prompt {key}: field 'source': {source!r} is in {row[1]}, not English; a parallel item "
                        "links to the English prompt")
    return int(row[0])


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


def seed_path(name: str = SEED_FILE) -> Path | None:
    ref = resources.files("misalign_tui.data").joinpath(name)
    return Path(str(ref)) if ref.is_file() else None


def load_seed_benchmark(store: Store) -> int | None:
    """Load the embedded seed benchmark once; returns its id, or None when the package carries none."""
    return load_embedded(store, SEED_BENCHMARK)


def load_embedded(store: Store, name: str) -> int | None:
    """Load an embedded benchmark once (``misalign-seed``, or ``misalign-seed-languages`` = the seed's file and
    its parallel items); returns its id, None when ``name`` is not embedded or the package lacks its files."""
    if name not in EMBEDDED:
        return None
    files = [SEED_FILE] if name == SEED_BENCHMARK else [SEED_FILE, LANGUAGES_FILE]
    paths = [seed_path(f) for f in files]
    if any(p is None for p in paths):
        return None
    row = store.conn.execute("SELECT id FROM benchmarks WHERE name = ? ORDER BY version DESC",
                             (name,)).fetchone()
    if row is not None:
        return int(row[0])
    known = set(store.domain_ids())
    records = [rec for p in paths if p is not None for rec in read_jsonl(p, known)]
    description = ("MisAlign-Seed: written for misalign-tui, every published domain and semantic type"
                   if name == SEED_BENCHMARK else
                   "MisAlign-Seed with parallel items: misalign-seed@1's English prompts and, for 30 of them, the "
                   "same scenario written in es, hi, ar, zh-Hans and sw (written for misalign-tui)")
    source: dict[str, object] = {"file": SEED_FILE, "embedded": True} if name == SEED_BENCHMARK else \
        {"files": files, "embedded": True}
    with store.transaction() as c:
        bid = last_id(c.execute(
            "INSERT INTO benchmarks(name, version, description, licence, source_json) VALUES (?, 1, ?, ?, ?)",
            (name, description, "MIT (written for this project)", json.dumps(source)),
        ))
        insert_records(store, bid, records)
        store.update_content_hash(bid)
    return int(bid)
