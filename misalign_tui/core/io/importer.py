"""Import benchmark data from files into a new benchmark version, in one transaction.

Rules (the README states them for users):
- Each file's layout comes from a preset (detected from its columns, or ``--preset``) and/or column options.
- Rows whose prompt text equals a prompt already in the target (its previous version, or an earlier row of
  this import) are merged into it: new pairs, responses and domains are added, ones already there are skipped.
  Rows whose prompt is a near-duplicate of a different prompt (SimHash, Hamming ≤ 10) are skipped and counted.
  This project's own format is taken as given — its prompts were deduplicated when the benchmark was built, so
  rows merge by their ``id`` and are checked only against the previous version — and an export re-imports
  with the same content hash.
- Domain labels that match no domain (after normalising and aliases) are counted in ``unmatched_labels``; the
  row is imported without them (``strict_labels``: the row is bad instead). An unknown dimension, response
  label or semantic type makes the row bad. Rows a preset's rule keeps out are counted in ``excluded_rows``.
- A bad row stops the import and rolls everything back (one line naming file:line:field); with ``skip_bad``
  the good rows are imported and the bad ones written to a reject file (JSON lines).
- A row identical to an earlier row of the same import — same prompt text, semantic type, domains, pairs and
  responses — is skipped and counted in ``exact_duplicates`` whatever its id (and whatever the preset: this
  project's own format included); the summary warns with the count and the first lines.
- Prompt-less pairs (``prompt_less``: a file of response pairs with no prompt column): each row is its own item,
  stored with an empty prompt or with the constant ``context``, which never merges rows; near-duplicates are
  found by comparing the responses (SimHash of the item's responses, Hamming ≤ 10), never the empty prompt.
- Counters: every row read ends in exactly one of ``prompts_imported`` (a new prompt), ``merged_rows`` (added
  to an existing prompt), ``duplicates_skipped`` (= ``exact_duplicates`` + ``near_duplicates`` +
  ``already_present``), ``bad_rows`` (with ``skip_bad``) or ``excluded_rows``. ``pairs_imported`` counts pairs,
  ``responses_imported`` every response stored (two per pair plus the single ones), of which
  ``single_responses_imported`` are single labelled responses.
- Importing into an existing name makes version n+1: a copy of version n plus the new rows, with its own
  content hash; runs keep pointing at the version they ran on.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from itertools import chain
from pathlib import Path
from typing import IO, Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.io.domain_labels import LabelMatcher, normalise_label, read_aliases
from misalign_tui.core.io.native import PromptRecord, insert_pair, insert_record, insert_response
from misalign_tui.core.io.near_duplicates import HAMMING_THRESHOLD, NearDuplicateIndex, prompt_fingerprint
from misalign_tui.core.io.presets import (
    PRESETS,
    SETTABLE_FIELDS,
    ColumnMapping,
    ConvertContext,
    ConvertedRow,
    RowExcluded,
    RowProblem,
    convert_mapped,
    detect_preset,
    preset_mapping,
)
from misalign_tui.core.io.tabular import BadRow, SourceFile, SourceRow, open_source, read_rows
from misalign_tui.core.languages import normalise_tag, tag_error
from misalign_tui.core.store import Store, database_error, last_id
from misalign_tui.core.text import check_name, printable

EXAMPLES_KEPT = 20
NATIVE_PRESETS = ("native", "native-csv")


@dataclass
class ImportOptions:
    into: str | None = None
    preset: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)   # column options: prompt, aligned, ... domains
    constants: dict[str, str] = field(default_factory=dict)    # --set FIELD=VALUE
    aliases: Path | None = None
    licence: str | None = None
    skip_bad: bool = False
    reject_file: Path | None = None
    strict_labels: bool = False
    dedup: bool = True          # False: keep near-duplicates (identical prompts still merge)
    header: bool = True         # False: CSV/TSV without a header row, columns named 1, 2, … by position
    prompt_less: bool = False   # rows are response pairs (or labelled responses) without a prompt
    context: str | None = None  # prompt-less: a constant text stored as every item's prompt (rows never merge)


@dataclass
class ImportSummary:
    benchmark: str = ""
    version: int = 0
    benchmark_id: int = 0
    content_hash: str = ""
    previous_version: int | None = None
    changed: bool = True
    rows_read: int = 0
    prompts_imported: int = 0
    pairs_imported: int = 0
    responses_imported: int = 0          # every response stored: 2 per pair + the single ones
    single_responses_imported: int = 0   # single labelled responses (not part of a pair)
    duplicates_skipped: int = 0          # exact_duplicates + near_duplicates + already_present
    exact_duplicates: int = 0            # rows identical to an earlier row of this import, whatever their ids
    near_duplicates: int = 0
    already_present: int = 0
    merged_rows: int = 0
    bad_rows: int = 0
    excluded_rows: dict[str, int] = field(default_factory=dict)
    unmatched_labels: dict[str, int] = field(default_factory=dict)
    rows_with_unmatched_labels: int = 0
    prompts_without_responses: int = 0
    reject_file: str | None = None
    files: list[dict[str, object]] = field(default_factory=list)
    examples: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_settings(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``--set FIELD=VALUE`` items as a dict; FIELD is one of SETTABLE_FIELDS."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name == "prompt":
            raise UserError(f"--set {item}: a constant prompt would merge every row into one prompt; for pairs "
                            "without prompts use --no-prompt (each row its own item), with --context TEXT for "
                            "a constant context")
        if not sep or name not in SETTABLE_FIELDS:
            raise UserError(f"--set {item}: use FIELD=VALUE with FIELD one of {', '.join(SETTABLE_FIELDS)}")
        if name == "language":
            tag = normalise_tag(value)
            if tag is None:
                raise UserError(f"--set {item}: {tag_error(value.strip())}")
            value = tag
        out[name] = value.strip()
    return out


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def default_benchmark_name(path: Path) -> str:
    """The benchmark name a file gives when no --into is given: its name without the data suffixes, with any
    control character made visible (``printable``) so the name never holds one."""
    name = " ".join(printable(path.name).split())
    for suffix in (".gz", ".csv", ".tsv", ".jsonl", ".ndjson", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "imported"


class _Stop(Exception):
    """Nothing new to store: roll the new version back."""


class _Importer:
    def __init__(self, store: Store, options: ImportOptions, progress: Callable[[int], None] | None) -> None:
        self.store = store
        self.c = store.conn
        self.o = options
        self.progress = progress
        self.s = ImportSummary()
        aliases = read_aliases(options.aliases) if options.aliases else {}
        self.matcher = LabelMatcher(list(store.domain_ids()), aliases)
        self.domain_ids = store.domain_ids()
        self.prev_index = NearDuplicateIndex()
        self.import_index = NearDuplicateIndex()
        self.prev_response_index = NearDuplicateIndex()   # prompt-less items: their responses' fingerprints
        self.response_index = NearDuplicateIndex()
        self.seen_rows: set[bytes] = set()                # digests of the rows imported so far (exact copies)
        self.native_keys: dict[str, int] = {}
        self.native_new: set[int] = set()
        self.unmatched: Counter[str] = Counter()
        self.spelling: dict[str, str] = {}  # unmatched labels grouped by normal form, shown as first seen
        self.excluded: Counter[str] = Counter()
        self.reject_path = options.reject_file
        self.reject_fh: IO[str] | None = None
        self.benchmark_id = 0

    # -- reporting --------------------------------------------------------------------------------------------

    def _example(self, kind: str, item: dict[str, object]) -> None:
        lst = self.s.examples.setdefault(kind, [])
        if len(lst) < EXAMPLES_KEPT:
            lst.append(item)

    def _reject(self, src: SourceFile, line: int, fld: str | None, error: str, raw: str, kind: str) -> None:
        if self.reject_path is None:
            return
        if self.reject_fh is None:
            try:
                self.reject_fh = open(self.reject_path, "w", encoding="utf-8")
            except OSError as exc:
                raise UserError(f"{self.reject_path}: cannot write the reject file ({exc.strerror})") from exc
        truncated = len(raw) > 1_000_000
        rec = {"file": str(src.path), "line": line, "field": fld, "kind": kind, "error": error,
               "raw": raw[:1_000_000]}
        if truncated:
            rec["raw_truncated"] = True
        self.reject_fh.write(json.dumps(rec, ensure_ascii=True) + "\n")

    def _bad(self, src: SourceFile, line: int, fld: str | None, error: str, raw: str) -> None:
        self.s.bad_rows += 1
        where = f"{src.path}:{line}" + (f": field {fld!r}" if fld else "")
        if not self.o.skip_bad:
            raise UserError(f"{where}: {error}; nothing was imported — fix the row or rerun with --skip-bad")
        self._example("bad", {"file": str(src.path), "line": line, "field": fld, "error": error})
        self._reject(src, line, fld, error, raw, "bad")

    # -- the target version -----------------------------------------------------------------------------------

    def open_version(self, name: str) -> None:
        prev = self.c.execute("SELECT id, version, licence, content_hash FROM benchmarks WHERE name = ? "
                              "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        version = 1 if prev is None else prev["version"] + 1
        licence = self.o.licence if self.o.licence is not None else (prev["licence"] if prev else None)
        self.benchmark_id = last_id(self.c.execute(
            "INSERT INTO benchmarks(name, version, licence, description) VALUES (?, ?, ?, ?)",
            (name, version, licence, "imported with misalign-tui import"),
        ))
        self.s.benchmark, self.s.version, self.s.benchmark_id = name, version, self.benchmark_id
        if prev is not None:
            self.s.previous_version = prev["version"]
            self.prev_hash = prev["content_hash"]
            copy_version_content(self.c, prev["id"], self.benchmark_id)
        for pid, text, fp in self.c.execute("SELECT id, text, fingerprint FROM prompts WHERE benchmark_id = ?",
                                            (self.benchmark_id,)).fetchall():
            if fp is None:
                fp = prompt_fingerprint(text)
                self.c.execute("UPDATE prompts SET fingerprint = ? WHERE id = ?", (fp, pid))
            self.prev_index.add(fp, pid)
            if self.o.prompt_less:
                self.prev_response_index.add(prompt_fingerprint(self._responses_text(pid)), pid)

    # -- one file ---------------------------------------------------------------------------------------------

    def _layout(self, src: SourceFile) -> tuple[str, ColumnMapping | None]:
        columns = src.columns
        name = self.o.preset or (None if self.o.prompt_less or not src.header else detect_preset(columns))
        if name is not None and name not in PRESETS:
            raise UserError(f"--preset {name}: unknown; choose one of {', '.join(PRESETS)}")
        user = {k: v for k, v in self.o.columns.items() if v}
        if self.o.prompt_less:
            if "prompt" in user:
                raise UserError("--no-prompt: the rows have no prompt; drop --prompt (or drop --no-prompt)")
            if name is not None:
                raise UserError(f"--no-prompt does not apply to preset {name}; map the columns instead "
                                "(--aligned COL --misaligned COL, or --response COL --label COL)")
            if not any(k in user for k in ("aligned", "misaligned", "response")):
                raise UserError(f"{src.path}: --no-prompt needs the response columns: --aligned COL --misaligned "
                                f"COL (or --response COL --label COL); columns are: {', '.join(columns)}")
        if not user:
            if name is None:
                hint = (" (named by position with --no-header: e.g. --aligned 1 --misaligned 2)"
                        if not src.header else "")
                raise UserError(f"{src.path}: cannot tell the layout from the columns ({', '.join(columns)})"
                                f"{hint}; give --prompt with --aligned/--misaligned or --response/--label, "
                                "--no-prompt for pairs without prompts, or --preset")
            return name, preset_mapping(name, columns)
        if name is not None and PRESETS[name].converter is not None:
            raise UserError(f"{src.path}: preset {name} has its own rule; column options do not apply to it "
                            "(drop them, or choose --preset misaligntrade for a column mapping)")
        mapping = preset_mapping(name, columns) if name else ColumnMapping()
        assert mapping is not None
        if "aligned" in user or "misaligned" in user:
            if not ("aligned" in user and "misaligned" in user):
                raise UserError("--aligned and --misaligned go together (or use --response with --label)")
            mapping.pairs = [(str(user["aligned"]), str(user["misaligned"]))]
            mapping.responses_optional = False
        for key in ("prompt", "response", "label", "dimension", "semantic_type", "id", "language"):
            if key in user:
                setattr(mapping, key, str(user[key]))
        if "domains" in user:
            mapping.domains = [str(d) for d in user["domains"]]
        if mapping.response and not mapping.label and "label" not in self.o.constants:
            raise UserError("--response needs --label COL (or --set label=aligned|misaligned)")
        if self.o.prompt_less:
            mapping.prompt = None
        elif not mapping.prompt:
            mapping.prompt = "prompt"
        if src.format in ("csv", "tsv"):
            for role, col in mapping.columns():
                if col not in columns:
                    hint = ""
                    if role == "prompt" and "prompt" not in user:
                        hint = ("; name the prompt column with --prompt COL, or import pairs without prompts with "
                                "--no-prompt")
                    elif not src.header:
                        hint = " (no header row: columns are named by position)"
                    raise UserError(f"{src.path}:1: no column {col!r} (for {role}); columns are: "
                                    f"{', '.join(columns)}{hint}")
        return name or "columns", mapping

    def import_file(self, path: Path) -> None:
        src = open_source(path, header=self.o.header)
        size, digest = file_digest(path)
        rows = read_rows(src)
        head: list[SourceRow | BadRow] = []
        for r in rows:
            head.append(r)
            if isinstance(r, SourceRow):
                break
        if not src.columns:
            if head and isinstance(head[0], BadRow):
                b = head[0]
                self._bad(src, b.line, b.field, b.error, b.raw)
            raise UserError(f"{path}: no readable rows")
        preset, mapping = self._layout(src)
        key_prefix = default_benchmark_name(path) + "-"
        ctx = ConvertContext(self.matcher, self.o.constants, key_prefix, prompt_less=self.o.prompt_less,
                             context=self.o.context or "")
        converter = PRESETS[preset].converter if preset in PRESETS else None
        native = preset in NATIVE_PRESETS
        before = self.s.rows_read
        counts_before = (self.s.prompts_imported, self.s.pairs_imported, self.s.responses_imported,
                         self.s.duplicates_skipped, self.s.bad_rows, sum(self.excluded.values()), self.s.merged_rows)
        for row in chain(head, rows):
            self.s.rows_read += 1
            if self.progress and self.s.rows_read % 1000 == 0:
                self.progress(self.s.rows_read)
            if isinstance(row, BadRow):
                self._bad(src, row.line, row.field, row.error, row.raw)
                continue
            try:
                conv = converter(row, ctx) if converter else convert_mapped(row, mapping, ctx)  # type: ignore[arg-type]
                self._language(conv.record, row, mapping)
                self._labels(conv)
                self._store_row(conv.record, native, src, row.line)
            except RowProblem as exc:
                if exc.unmatched:
                    self.unmatched[exc.unmatched] += 1
                self._bad(src, row.line, exc.field, exc.message, row.raw)
            except RowExcluded as exc:
                self.excluded[exc.reason] += 1
                self._example("excluded", {"file": str(path), "line": row.line, "reason": exc.reason})
                self._reject(src, row.line, None, exc.reason, row.raw, "excluded")
        self.s.files.append({
            "name": path.name, "path": str(path.resolve()), "size": size, "sha256": digest, "format": src.format,
            "gzip": src.gzip, "encoding": src.encoding, "header": src.header,
            "preset": preset, "mapping": mapping.as_json() if mapping else None,
            "prompt_less": self.o.prompt_less, "context": self.o.context if self.o.prompt_less else None,
            "rows_read": self.s.rows_read - before,
            "prompts_imported": self.s.prompts_imported - counts_before[0],
            "merged_rows": self.s.merged_rows - counts_before[6],
            "pairs_imported": self.s.pairs_imported - counts_before[1],
            "responses_imported": self.s.responses_imported - counts_before[2],
            "duplicates_skipped": self.s.duplicates_skipped - counts_before[3],
            "bad_rows": self.s.bad_rows - counts_before[4],
            "excluded_rows": sum(self.excluded.values()) - counts_before[5],
        })

    def _language(self, rec: PromptRecord, row: SourceRow, mapping: ColumnMapping | None) -> None:
        """The row's language: its ``--language`` column, else ``--set language=``, else what the record says
        (native files carry a ``language`` field; English when none does)."""
        column = mapping.language if mapping is not None else None
        if column:
            value, fld = str(row.values.get(column) or "").strip(), column
        elif "language" in self.o.constants:
            value, fld = self.o.constants["language"], "--set language"
        else:
            return
        if not value:
            return
        tag = normalise_tag(value)
        if tag is None:
            raise RowProblem(fld, tag_error(value))
        rec.language = tag

    def _labels(self, conv: ConvertedRow) -> None:
        if not conv.unmatched:
            return
        for label in conv.unmatched:
            self.unmatched[self.spelling.setdefault(normalise_label(label), label)] += 1
        if self.o.strict_labels:
            raise RowProblem("domain", f"domain label {conv.unmatched[0]!r} matches no domain (add it to an "
                             "--aliases file or the taxonomy)")
        self.s.rows_with_unmatched_labels += 1

    # -- dedup, merge, insert ---------------------------------------------------------------------------------

    @staticmethod
    def _row_digest(rec: PromptRecord) -> bytes:
        """What makes two rows exact copies: everything but the id."""
        content = [rec.prompt, rec.semantic_type, sorted(rec.domains), rec.language, rec.source,
                   [[p.dimension, p.aligned, p.misaligned] for p in rec.pairs],
                   [[r.dimension, r.label, r.text] for r in rec.responses]]
        return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass")).digest()

    def _store_row(self, rec: PromptRecord, native: bool, src: SourceFile, line: int) -> None:
        digest = self._row_digest(rec)
        if digest in self.seen_rows:
            self.s.duplicates_skipped += 1
            self.s.exact_duplicates += 1
            self._example("exact_duplicates", {"file": str(src.path), "line": line, "id": rec.key})
            return
        self.seen_rows.add(digest)
        if self.o.prompt_less or (not rec.prompt.strip() and (rec.pairs or rec.responses)):
            if not (native and rec.key in self.native_keys):
                self._store_promptless(rec, native, src, line)
                return
        fp = prompt_fingerprint(rec.prompt)
        if native and rec.key in self.native_keys:
            pid = self.native_keys[rec.key]
            self._merge(pid, rec, src, line, dedup_items=pid not in self.native_new)
            return
        candidates = self.prev_index.matches(fp)
        if not native:
            candidates = sorted(candidates + self.import_index.matches(fp), key=lambda kv: kv[1])
        if not self.o.dedup:
            candidates = [(pid, d) for pid, d in candidates if d == 0]
        for pid, distance in candidates:
            if distance == 0 and self._text(pid) == rec.prompt:
                if native:
                    self.native_keys[rec.key] = pid
                self._merge(pid, rec, src, line, dedup_items=True)
                return
        if candidates and self.o.dedup:
            self._near_duplicate(*candidates[0], src, line, "prompts")
            return
        pid = self._insert(rec, fp, native)
        if not native:
            self.import_index.add(fp, pid)

    def _near_duplicate(self, pid: int, distance: int, src: SourceFile, line: int, compared: str) -> None:
        self.s.duplicates_skipped += 1
        self.s.near_duplicates += 1
        key = self.c.execute("SELECT key FROM prompts WHERE id = ?", (pid,)).fetchone()[0]
        self._example("near_duplicates", {"file": str(src.path), "line": line, "duplicate_of": key,
                                          "hamming": distance, "compared": compared})

    def _insert(self, rec: PromptRecord, fingerprint: int, native: bool) -> int:
        """A new prompt under a free key (a native row's own id is remembered for the rows that merge into it)."""
        original_key = rec.key
        rec.key = self._free_key(rec.key)
        try:
            pid = insert_record(self.c, self.benchmark_id, rec, self.domain_ids, fingerprint=fingerprint)
        except UserError as exc:
            if rec.source and "field 'source'" in str(exc):  # a parallel item whose source is missing
                raise RowProblem("source", str(exc).split("field 'source': ", 1)[-1]) from None
            raise
        if native:
            self.native_keys[original_key] = pid
            self.native_new.add(pid)
        self.s.prompts_imported += 1
        self.s.pairs_imported += len(rec.pairs)
        self.s.responses_imported += 2 * len(rec.pairs) + len(rec.responses)
        self.s.single_responses_imported += len(rec.responses)
        return pid

    @staticmethod
    def _record_responses_text(rec: PromptRecord) -> str:
        return "\n".join([f"{p.aligned}\n{p.misaligned}" for p in rec.pairs] + [r.text for r in rec.responses])

    def _responses_text(self, pid: int) -> str:
        """A stored item's responses as one text, the same way ``_record_responses_text`` joins a row's."""
        pairs = [f"{a}\n{m}" for a, m in self.c.execute(
            "SELECT ra.text, rm.text FROM pairs pr JOIN responses ra ON ra.id = pr.aligned_id "
            "JOIN responses rm ON rm.id = pr.misaligned_id WHERE pr.prompt_id = ? ORDER BY pr.id", (pid,))]
        singles = [r[0] for r in self.c.execute(
            "SELECT text FROM responses r WHERE prompt_id = ? AND NOT EXISTS (SELECT 1 FROM pairs p WHERE "
            "p.aligned_id = r.id OR p.misaligned_id = r.id) ORDER BY id", (pid,))]
        return "\n".join(pairs + singles)

    def _store_promptless(self, rec: PromptRecord, native: bool, src: SourceFile, line: int) -> None:
        """A prompt-less item: its own prompt row whatever its (empty or constant) text; near-duplicates are
        judged on the responses."""
        text = self._record_responses_text(rec)
        rfp = prompt_fingerprint(text)
        candidates = sorted(self.prev_response_index.matches(rfp) + self.response_index.matches(rfp),
                            key=lambda kv: kv[1])
        for pid, distance in candidates:
            if distance == 0 and self._responses_text(pid) == text:
                self.s.duplicates_skipped += 1
                self.s.already_present += 1
                return
        if candidates and self.o.dedup:
            self._near_duplicate(*candidates[0], src, line, "responses")
            return
        pid = self._insert(rec, prompt_fingerprint(rec.prompt), native)
        self.response_index.add(rfp, pid)

    def _text(self, pid: int) -> str:
        return str(self.c.execute("SELECT text FROM prompts WHERE id = ?", (pid,)).fetchone()[0])

    def _free_key(self, key: str) -> str:
        candidate, n = key, 1
        while self.c.execute("SELECT 1 FROM prompts WHERE benchmark_id = ? AND key = ?",
                             (self.benchmark_id, candidate)).fetchone():
            n += 1
            candidate = f"{key}~{n}"
        return candidate

    def _merge(self, pid: int, rec: PromptRecord, src: SourceFile, line: int, dedup_items: bool) -> None:
        """Add the row's labels to an existing prompt; an item already there counts as a duplicate."""
        c = self.c
        stype = c.execute("SELECT semantic_type FROM prompts WHERE id = ?", (pid,)).fetchone()[0]
        if rec.semantic_type and stype and rec.semantic_type != stype:
            raise RowProblem("semantic_type", f"{rec.semantic_type!r} conflicts with {stype!r} given earlier "
                             "for the same prompt")
        added = 0
        if rec.semantic_type and not stype:
            c.execute("UPDATE prompts SET semantic_type = ? WHERE id = ?", (rec.semantic_type, pid))
            added += 1
        for d in rec.domains:
            added += c.execute("INSERT OR IGNORE INTO prompt_domains(prompt_id, domain_id, probability) "
                               "VALUES (?, ?, ?)", (pid, self.domain_ids[d], rec.probabilities.get(d))).rowcount
        pairs_there: set[tuple[str, str, str]] = set()
        singles_there: set[tuple[str, str, str]] = set()
        if dedup_items:
            pairs_there = {tuple(r) for r in c.execute(
                "SELECT coalesce(pr.dimension, ''), ra.text, rm.text FROM pairs pr "
                "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
                "WHERE pr.prompt_id = ?", (pid,))}
            singles_there = {tuple(r) for r in c.execute(
                "SELECT coalesce(dimension, ''), label, text FROM responses r WHERE prompt_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM pairs p WHERE p.aligned_id = r.id OR p.misaligned_id = r.id)", (pid,))}
        for p in rec.pairs:
            k = (p.dimension or "", p.aligned, p.misaligned)
            if k in pairs_there:
                continue
            insert_pair(c, pid, p, rec.origin)
            if dedup_items:
                pairs_there.add(k)
            self.s.pairs_imported += 1
            self.s.responses_imported += 2
            added += 1
        for r in rec.responses:
            k = (r.dimension or "", r.label, r.text)
            if k in singles_there:
                continue
            insert_response(c, pid, r, rec.origin)
            if dedup_items:
                singles_there.add(k)
            self.s.responses_imported += 1
            self.s.single_responses_imported += 1
            added += 1
        if added:
            self.s.merged_rows += 1
        else:
            self.s.duplicates_skipped += 1
            self.s.already_present += 1

    # -- finish -----------------------------------------------------------------------------------------------

    def finish(self, paths: list[Path], presets: list[str]) -> None:
        s = self.s
        s.unmatched_labels = dict(self.unmatched.most_common())
        s.excluded_rows = dict(self.excluded.most_common())
        s.prompts_without_responses = self.c.execute(
            "SELECT count(*) FROM prompts p WHERE p.benchmark_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM responses r WHERE r.prompt_id = p.id)", (self.benchmark_id,)).fetchone()[0]
        s.content_hash = self.store.update_content_hash(self.benchmark_id)
        added = s.prompts_imported + s.pairs_imported + s.responses_imported + s.merged_rows
        if s.previous_version is not None and (not added or s.content_hash == getattr(self, "prev_hash", None)):
            raise _Stop
        if s.previous_version is None and not s.prompts_imported:
            raise UserError(f"{', '.join(str(p) for p in paths)}: no rows could be imported "
                            f"({s.rows_read} read, {s.bad_rows} bad, {sum(self.excluded.values())} excluded, "
                            f"{s.duplicates_skipped} duplicates)")
        source = {
            "files": s.files,
            "presets": sorted(set(presets)),
            "constants": self.o.constants,
            "aliases": _aliases_provenance(self.o.aliases),
            "licence": self.o.licence,
            "dedup": {"method": "simhash", "hamming_threshold": HAMMING_THRESHOLD,
                      "compared": "responses" if self.o.prompt_less else "prompts"} if self.o.dedup else None,
            "strict_labels": self.o.strict_labels,
            "previous_version": s.previous_version,
            "summary": {k: v for k, v in s.as_json().items() if k not in ("files", "examples")},
        }
        self.c.execute("UPDATE benchmarks SET source_json = ? WHERE id = ?",
                       (json.dumps(source, ensure_ascii=False), self.benchmark_id))


def _aliases_provenance(path: Path | None) -> dict[str, object] | None:
    if path is None:
        return None
    size, digest = file_digest(path)
    return {"name": path.name, "size": size, "sha256": digest}


def copy_version_content(c: sqlite3.Connection, old_id: int, new_id: int) -> None:
    """Copy prompts, domains, responses and pairs of one benchmark version into another (new row ids)."""
    c.execute("INSERT INTO prompts(benchmark_id, key, text, semantic_type, origin, parent_prompt_id, fingerprint, "
              "language) SELECT ?, key, text, semantic_type, origin, parent_prompt_id, fingerprint, language "
              "FROM prompts WHERE benchmark_id = ? ORDER BY id", (new_id, old_id))
    c.execute("UPDATE prompts SET source_prompt_id = (SELECT ns.id FROM prompts op JOIN prompts os "
              "ON os.id = op.source_prompt_id JOIN prompts ns ON ns.benchmark_id = ? AND ns.key = os.key "
              "WHERE op.benchmark_id = ? AND op.key = prompts.key) WHERE benchmark_id = ?",
              (new_id, old_id, new_id))
    c.execute("INSERT INTO prompt_domains(prompt_id, domain_id, probability) "
              "SELECT np.id, pd.domain_id, pd.probability FROM prompts op "
              "JOIN prompt_domains pd ON pd.prompt_id = op.id "
              "JOIN prompts np ON np.benchmark_id = ? AND np.key = op.key WHERE op.benchmark_id = ?",
              (new_id, old_id))
    c.execute("CREATE TEMP TABLE IF NOT EXISTS import_response_map (old INTEGER PRIMARY KEY, new INTEGER)")
    c.execute("DELETE FROM import_response_map")
    old_ids = [r[0] for r in c.execute("SELECT r.id FROM responses r JOIN prompts p ON p.id = r.prompt_id "
                                       "WHERE p.benchmark_id = ? ORDER BY r.id", (old_id,))]
    for rid in old_ids:
        new = last_id(c.execute("INSERT INTO responses(prompt_id, dimension, label, text, origin) "
                        "SELECT np.id, r.dimension, r.label, r.text, r.origin FROM responses r "
                        "JOIN prompts op ON op.id = r.prompt_id "
                        "JOIN prompts np ON np.benchmark_id = ? AND np.key = op.key WHERE r.id = ?",
                        (new_id, rid)))
        c.execute("INSERT INTO import_response_map(old, new) VALUES (?, ?)", (rid, new))
    c.execute("INSERT INTO pairs(prompt_id, dimension, aligned_id, misaligned_id) "
              "SELECT np.id, pr.dimension, ma.new, mm.new FROM pairs pr "
              "JOIN prompts op ON op.id = pr.prompt_id "
              "JOIN prompts np ON np.benchmark_id = ? AND np.key = op.key "
              "JOIN import_response_map ma ON ma.old = pr.aligned_id "
              "JOIN import_response_map mm ON mm.old = pr.misaligned_id WHERE op.benchmark_id = ?",
              (new_id, old_id))
    c.execute("DELETE FROM import_response_map")


def import_files(store: Store, paths: list[str | Path], options: ImportOptions,
                 progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import the files into one new benchmark version; all or nothing unless ``options.skip_bad``."""
    if not paths:
        raise UserError("give at least one file to import")
    files = [Path(p) for p in paths]
    for p in files:
        if not p.exists():
            raise UserError(f"{p}: no such file")
        if p.is_dir():
            raise UserError(f"{p}: is a folder; give a data file")
    name = check_name("benchmark", options.into) if options.into else default_benchmark_name(files[0])
    if not name:
        raise UserError("--into: empty; give the benchmark a name")
    if options.skip_bad and options.reject_file is None:
        options.reject_file = Path.cwd() / f"{name}.rejects.jsonl"
    imp = _Importer(store, options, progress)
    try:
        with store.transaction():
            imp.open_version(name)
            for p in files:
                imp.import_file(p)
            imp.finish(files, [str(f.get("preset")) for f in imp.s.files])
    except _Stop:
        imp.s.changed = False
        imp.s.version = imp.s.previous_version or 0
        imp.s.benchmark_id = 0
        imp.s.content_hash = getattr(imp, "prev_hash", "") or ""
    except sqlite3.DatabaseError as exc:
        raise database_error(store.path, exc) from exc
    finally:
        if imp.reject_fh is not None:
            imp.reject_fh.close()
    if imp.reject_fh is not None:
        imp.s.reject_file = str(imp.reject_path)
    if imp.s.benchmark_id == 0 and imp.s.changed is False:
        row = store.conn.execute("SELECT id FROM benchmarks WHERE name = ? AND version = ?",
                                 (name, imp.s.version)).fetchone()
        imp.s.benchmark_id = int(row[0]) if row else 0
    return imp.s

