"""Saved comparisons: which models, benchmark, filters, metric and grouping an auditor was looking at.

Stored as JSON in the ``sessions`` table so the TUI reopens them and ``misalign-tui sessions`` lists them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.vocabulary import EXPLORER_METRICS
from misalign_tui.core.metrics.vocabulary import GROUPINGS as METRIC_GROUPINGS
from misalign_tui.core.store import NOW, Store
from misalign_tui.core.text import check_name

GROUPINGS = (*METRIC_GROUPINGS, "model")  # the explorer also groups by model


@dataclass
class SessionState:
    """What the explorer shows; the same fields a report needs to reproduce it."""

    models: list[str] = field(default_factory=list)
    benchmark: str | None = None
    filters: dict[str, str] = field(default_factory=dict)  # dimension / domain / semantic_type / model
    metric: str = "alignment_score"
    grouping: str = "dimension"

    def __post_init__(self) -> None:
        if self.metric not in EXPLORER_METRICS:
            raise UserError(f"session metric {self.metric!r}: use one of {', '.join(EXPLORER_METRICS)}")
        if self.grouping not in GROUPINGS:
            raise UserError(f"session grouping {self.grouping!r}: use one of {', '.join(GROUPINGS)}")


@dataclass(frozen=True)
class SavedSession:
    id: int
    name: str
    state: SessionState
    created_at: str
    updated_at: str

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, **asdict(self.state), "created_at": self.created_at,
                "updated_at": self.updated_at}


def save_session(store: Store, name: str, state: SessionState) -> SavedSession:
    """Save under ``name``, replacing a session of the same name."""
    name = check_name("session", name)
    if not name:
        raise UserError("session name: empty; give the comparison a name")
    with store.transaction() as c:
        c.execute(
            f"INSERT INTO sessions(name, state_json) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
            f"state_json = excluded.state_json, updated_at = {NOW}", (name, json.dumps(asdict(state))))
    return load_session(store, name)


def _row(r) -> SavedSession:
    return SavedSession(r["id"], r["name"], SessionState(**json.loads(r["state_json"])), r["created_at"],
                        r["updated_at"])


def list_sessions(store: Store) -> list[SavedSession]:
    return [_row(r) for r in store.conn.execute("SELECT * FROM sessions ORDER BY updated_at DESC, id DESC")]


def load_session(store: Store, name: str) -> SavedSession:
    r = store.conn.execute("SELECT * FROM sessions WHERE name = ?", (name,)).fetchone()
    if r is None:
        known = ", ".join(s.name for s in list_sessions(store)) or "none saved yet"
        raise UserError(f"session {name!r} not found; known: {known}")
    return _row(r)


def delete_session(store: Store, name: str) -> None:
    load_session(store, name)
    with store.transaction() as c:
        c.execute("DELETE FROM sessions WHERE name = ?", (name,))
