"""Decision files for reviewers who work outside the app: ``review export`` writes a queue as CSV or JSON lines,
one item a row with its id and empty decision columns; ``review import`` reads the filled file back.

Columns: ``item`` (the id), ``queue``, ``position``, ``prompt_key``, ``dimension``, ``semantic_type``,
``domains``, ``prompt``, ``response_a``, ``response_b`` (empty for a single response), then the reviewer's
``decision_a``, ``decision_b`` (aligned, misaligned, skip or flag; empty: not decided) and ``note`` (a flag needs
one). The model's verdict and the gold label are not in the file (they would anchor the reviewer).

An import is all or nothing: every problem — an unknown item, a row from another queue or workspace, a bad
decision, a flag without a note, a broken line — is one line naming the file and line, and nothing is stored
while any remains. In CSV, a text cell starting with = + - or @ gets a leading apostrophe so that a spreadsheet
shows it instead of running it as a formula (text columns are never read back).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.io.tabular import BadRow, open_source, read_rows
from misalign_tui.core.review.decisions import DECISIONS, NewDecision, check_reviewer, record_decisions, shown
from misalign_tui.core.review.queues import DOMAIN_SEPARATOR, SLOTS, QueueInfo, queue_items
from misalign_tui.core.store import Store

COLUMNS = ("item", "queue", "position", "prompt_key", "dimension", "semantic_type", "domains", "prompt",
           "response_a", "response_b", "decision_a", "decision_b", "note")
TEXT_COLUMNS = ("prompt_key", "domains", "prompt", "response_a", "response_b")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_PROBLEMS = 50


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: name the decision file .csv or .jsonl (the format follows the name)")
    return fmt


def _spreadsheet_safe(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def export_queue(store: Store, queue: QueueInfo, path: str | Path) -> int:
    """Write the queue's items to ``path`` (.csv or .jsonl), replacing it only once complete; returns the rows.
    A build's human-checker queue writes the items the build has not taken yet."""
    path = Path(path)
    fmt = file_format(path)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise UserError(f"{path}: folder {folder} does not exist; create it or choose another path")
    items = [i for i in queue_items(store, queue.id) if i.applied_at is None or queue.purpose != "checker"]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
            if writer:
                writer.writerow(COLUMNS)
            for item in items:
                texts = [r.text for r in item.responses]
                row: dict[str, object] = {
                    "item": item.id, "queue": queue.name, "position": item.position + 1,
                    "prompt_key": item.prompt_key, "dimension": item.dimension or "",
                    "semantic_type": item.semantic_type or "", "domains": DOMAIN_SEPARATOR.join(item.domains),
                    "prompt": item.prompt, "response_a": texts[0] if texts else "",
                    "response_b": texts[1] if len(texts) > 1 else "", "decision_a": "", "decision_b": "", "note": ""}
                if writer:
                    writer.writerow([_spreadsheet_safe(str(row[c])) if c in TEXT_COLUMNS else row[c] for c in COLUMNS])
                else:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the decision file ({exc.strerror or exc})") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(items)


def _unsafe(text: str) -> str:
    """A cell as written before ``_spreadsheet_safe``."""
    return text[1:] if text[:1] == "'" and text[1:2] in ("=", "+", "-", "@") else text


@dataclass(frozen=True)
class ImportResult:
    decisions: int
    items: int
    undecided_rows: int
    queues: tuple[int, ...]


def _cell(values: dict[str, object], key: str) -> str:
    v = values.get(key)
    return "" if v is None else str(v).strip()


def import_decisions(store: Store, path: str | Path, reviewer: str) -> ImportResult:
    """Store the decisions of a filled decision file under ``reviewer`` — all of them, or none when any line
    has a problem (UserError: one line per problem, naming the file and line)."""
    reviewer = check_reviewer(reviewer)
    path = Path(path)
    file_format(path)
    src = open_source(path)
    known: dict[int, tuple[int, str, str, list[int]]] = {}  # item → (queue id, queue name, prompt key, responses)
    for item_id, qid, qname, pkey, sid in store.conn.execute(
            "SELECT i.id, q.id, q.name, i.prompt_key, s.id FROM review_items i JOIN review_queues q ON q.id = i.queue_id "
            "JOIN review_responses s ON s.item_id = i.id ORDER BY i.id, s.slot"):
        known.setdefault(item_id, (qid, qname, pkey, []))[3].append(sid)
    problems: list[str] = []
    decisions: list[NewDecision] = []
    seen: dict[int, int] = {}
    items: set[int] = set()
    queues: set[int] = set()
    undecided = 0
    for row in read_rows(src):
        if isinstance(row, BadRow):
            problems.append(f"{path}:{row.line}: " + (f"{row.field}: " if row.field else "") + row.error)
            continue
        where = f"{path}:{row.line}"
        if "item" not in src.columns:
            raise UserError(f"{path}:1: no 'item' column; decide a file written by misalign-tui review export "
                            f"(columns: {', '.join(COLUMNS)})")
        raw_id = _cell(row.values, "item")
        if not raw_id.isdigit():
            problems.append(f"{where}: item: {raw_id!r} is not an item id")
            continue
        item_id = int(raw_id)
        if item_id not in known:
            problems.append(f"{where}: item {item_id}: no such item in this workspace's review queues")
            continue
        qid, qname, pkey, responses = known[item_id]
        if item_id in seen:
            problems.append(f"{where}: item {item_id}: already decided on line {seen[item_id]}")
            continue
        seen[item_id] = row.line
        file_queue, file_key = _cell(row.values, "queue"), _unsafe(_cell(row.values, "prompt_key"))
        if file_queue and file_queue != qname or file_key and file_key != pkey:
            problems.append(f"{where}: item {item_id}: the file says queue {file_queue!r}, prompt {file_key!r}; this "
                            f"workspace's item {item_id} is queue {qname!r}, prompt {pkey!r} (a file from another "
                            "workspace?)")
            continue
        note = _cell(row.values, "note") or None
        row_decisions = []
        for slot, letter in enumerate(SLOTS):
            column = f"decision_{letter.lower()}"
            value = _cell(row.values, column).lower()
            if not value:
                continue
            if slot >= len(responses):
                problems.append(f"{where}: {column}: item {item_id} shows one response; leave {column} empty")
                continue
            if value not in DECISIONS:
                problems.append(f"{where}: {column}: {value!r} is not a decision; one of {', '.join(DECISIONS)} "
                                "(or empty)")
                continue
            if value == "flag" and not note:
                problems.append(f"{where}: {column}: a flag needs a note saying what is wrong")
                continue
            order = list(SLOTS[:len(responses)])
            row_decisions.append(NewDecision(item_id, responses[slot], value, note,
                                             shown(order, letter, False, "file", file=path.name, line=row.line)))
        if not row_decisions:
            undecided += 1
            continue
        decisions += row_decisions
        items.add(item_id)
        queues.add(qid)
    if "item" not in src.columns and src.columns:
        raise UserError(f"{path}:1: no 'item' column; decide a file written by misalign-tui review export "
                        f"(columns: {', '.join(COLUMNS)})")
    if src.format not in ("csv", "jsonl"):
        problems.insert(0, f"{path}: read as {src.format}; name the file .csv or .jsonl")
    if problems:
        shown_problems = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown_problems)
        raise UserError(f"{path}: {len(problems)} problem(s); nothing imported\n" + "\n".join(shown_problems)
                        + (f"\n… and {more} more" if more else ""))
    record_decisions(store, reviewer, decisions, via=f"file:{path.name}")
    return ImportResult(len(decisions), len(items), undecided, tuple(sorted(queues)))
