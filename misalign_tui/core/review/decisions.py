"""Reviewers and their decisions: every decision is a row of ``review_decisions`` (who, when, what was shown,
the decision and a note), never overwritten — undo sets ``undone_at``, a second decision on the same response
by the same reviewer supersedes the first without deleting it, and two reviewers deciding the same item at once
are both kept, each under their own name.

A reviewer's *current* decision on a response is their latest one not undone. Which item comes next for a
reviewer (``resume_position``): the first item with a response they have not decided; once every item is
decided, the first one they skipped — so quitting mid-queue resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from misalign_tui.core.errors import UserError
from misalign_tui.core.review.queues import ReviewItem
from misalign_tui.core.store import Store, last_id
from misalign_tui.core.text import check_name, printable

DECISIONS = ("aligned", "misaligned", "skip", "flag")
LABELS = ("aligned", "misaligned")        # the decisions that rate a response
MAX_NAME = 80


def check_reviewer(name: str) -> str:
    """A reviewer's name as they chose it: no control characters, not empty, at most 80 characters."""
    name = check_name("reviewer", name)
    if not name:
        raise UserError("reviewer name: empty; give the name decisions are stored under")
    if len(name) > MAX_NAME:
        raise UserError(f"reviewer name {printable(name[:20])!r}…: longer than {MAX_NAME} characters")
    return name


def remember_reviewer(store: Store, name: str) -> str:
    """Record the reviewer in the workspace (the app asks once and keeps the name); returns the checked name."""
    name = check_reviewer(name)
    with store.transaction() as c:
        c.execute("INSERT INTO reviewers(name) VALUES (?) ON CONFLICT(name) DO UPDATE SET "
                  "last_used_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')", (name,))
    return name


def last_reviewer(store: Store) -> str | None:
    row = store.conn.execute("SELECT name FROM reviewers ORDER BY last_used_at DESC, rowid DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def shown(order: Sequence[str], deciding: str, verdict_visible: bool, face: str, **extra: object) -> dict[str, object]:
    """What a decision records as shown: the slots in display order, the one decided, whether the model's
    verdict (or the label) was visible when it was decided, and the face (app or file)."""
    return {"order": list(order), "deciding": deciding, "verdict_visible": verdict_visible, "face": face, **extra}


@dataclass(frozen=True)
class NewDecision:
    """A decision to store: the item, the response decided (review_responses.id) and what was shown."""

    item_id: int
    review_response_id: int
    decision: str
    note: str | None = None
    shown: dict[str, object] | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Decision:
    id: int
    item_id: int
    review_response_id: int
    reviewer: str
    decision: str
    note: str | None
    decided_at: str


def check_decision(decision: str, note: str | None) -> str | None:
    """Why this decision cannot be stored, or None."""
    if decision not in DECISIONS:
        return f"{decision!r} is not a decision; one of {', '.join(DECISIONS)}"
    if decision == "flag" and not (note or "").strip():
        return "a flag needs a note saying what is wrong"
    return None


def record_decisions(store: Store, reviewer: str, decisions: Sequence[NewDecision], via: str = "app") -> list[int]:
    """Store the decisions in one transaction (all or none); returns their ids."""
    reviewer = check_reviewer(reviewer)
    for d in decisions:
        problem = check_decision(d.decision, d.note)
        if problem:
            raise UserError(f"decision on item {d.item_id}: {problem}")
    ids = []
    at = utc_now()  # one time for the whole action: undo finds every row of it
    with store.transaction() as c:
        c.execute("INSERT INTO reviewers(name) VALUES (?) ON CONFLICT(name) DO UPDATE SET "
                  "last_used_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')", (reviewer,))
        for d in decisions:
            ids.append(last_id(c.execute(
                "INSERT INTO review_decisions(item_id, review_response_id, reviewer, decision, note, shown_json, "
                "seconds, via, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (d.item_id, d.review_response_id, reviewer, d.decision, (d.note or "").strip() or None,
                 json.dumps(d.shown or {}, sort_keys=True, ensure_ascii=False), d.seconds, via, at))))
    return ids


def utc_now() -> str:
    """The time as the database writes it (``strftime('%Y-%m-%dT%H:%M:%fZ','now')``)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def undo_decisions(store: Store, decision_ids: Iterable[int]) -> int:
    """Mark decisions undone (they stay in the table); returns how many were still in force."""
    ids = list(decision_ids)
    if not ids:
        return 0
    with store.transaction() as c:
        cur = c.execute(f"UPDATE review_decisions SET undone_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') "
                        f"WHERE id IN ({','.join('?' * len(ids))}) AND undone_at IS NULL", ids)
        return cur.rowcount


def undo_last(store: Store, queue_id: int, reviewer: str) -> list[Decision]:
    """Undo the reviewer's latest action in the queue still in force: their latest decision with every other
    stored with it (a skip or flag covers each response of the item); returns what was undone."""
    last = store.conn.execute(
        "SELECT d.item_id, d.decided_at FROM review_decisions d JOIN review_items i ON i.id = d.item_id "
        "WHERE i.queue_id = ? AND d.reviewer = ? AND d.undone_at IS NULL ORDER BY d.id DESC LIMIT 1",
        (queue_id, reviewer)).fetchone()
    if last is None:
        return []
    rows = [Decision(*r) for r in store.conn.execute(
        "SELECT id, item_id, review_response_id, reviewer, decision, note, decided_at FROM review_decisions "
        "WHERE item_id = ? AND reviewer = ? AND decided_at = ? AND undone_at IS NULL", (last[0], reviewer, last[1]))]
    undo_decisions(store, [d.id for d in rows])
    return rows


def current_decisions(store: Store, queue_id: int | None = None, reviewer: str | None = None,
                      items: Sequence[int] | None = None) -> list[Decision]:
    """Each reviewer's current decision (latest not undone) per response, for one queue (or some of its
    items, or every queue)."""
    where: list[str] = ["d.undone_at IS NULL"]
    args: list[object] = []
    if items is not None:
        where.append(f"d.item_id IN ({','.join('?' * len(items))})")
        args += list(items)
    if queue_id is not None:
        where.append("i.queue_id = ?")
        args.append(queue_id)
    if reviewer is not None:
        where.append("d.reviewer = ?")
        args.append(reviewer)
    cond = " AND ".join(where)
    return [Decision(*r) for r in store.conn.execute(
        "SELECT d.id, d.item_id, d.review_response_id, d.reviewer, d.decision, d.note, d.decided_at "
        "FROM review_decisions d JOIN review_items i ON i.id = d.item_id "
        f"WHERE d.id IN (SELECT max(d.id) FROM review_decisions d JOIN review_items i ON i.id = d.item_id "
        f"WHERE {cond} GROUP BY d.review_response_id, d.reviewer) ORDER BY d.id", args)]


def resume_position(items: Sequence[ReviewItem], mine: dict[int, str]) -> int:
    """Index of the item to show a reviewer whose current decisions are ``mine`` (response id → decision):
    the first with an undecided response, else the first skipped, else the end (len(items))."""
    for i, item in enumerate(items):
        if any(r.id not in mine for r in item.responses):
            return i
    for i, item in enumerate(items):
        if any(mine.get(r.id) == "skip" for r in item.responses):
            return i
    return len(items)
