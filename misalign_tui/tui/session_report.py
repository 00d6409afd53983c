"""A saved session turned into a Markdown report (no textual import: the CLI uses it too).

Uses the audit report code of core/io when it is present; until then a Markdown summary of the same tables
the explorer shows.
"""

from __future__ import annotations

from pathlib import Path

from misalign_tui.core.sessions import SavedSession
from misalign_tui.core.store import Store
from misalign_tui.tui.explore_data import METRIC_LABELS, ExploreQuery, read_explore
from misalign_tui.workspace import Workspace


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def session_report_markdown(store: Store, session: SavedSession) -> str:
    st = session.state
    label = METRIC_LABELS[st.metric]
    lines = [f"# {session.name}", "", f"- models: {', '.join(st.models) or 'all'}",
             f"- metric: {label}", f"- grouping: {st.grouping}",
             f"- filters: {', '.join(f'{k}={v}' for k, v in st.filters.items()) or 'none'}", ""]
    for grouping in ("dimension", "domain", "semantic_type", "model"):
        data = read_explore(store, ExploreQuery(models=tuple(st.models), dimension=st.filters.get("dimension"),
                                                domain=st.filters.get("domain"),
                                                semantic_type=st.filters.get("semantic_type"), metric=st.metric,
                                                grouping=grouping))
        lines += [f"## {label} by {grouping.replace('_', ' ')}", "", f"| {grouping} | model | {label} % | n |",
                  "|---|---|---:|---:|"]
        lines += [f"| {c.group} | {c.series} | {_pct(c.value)} | {c.n} |" for c in data.grouped()]
        if data.note:
            lines += ["", data.note]
        lines.append("")
    return "\n".join(lines)


def write_session_report(workspace: Workspace, session: SavedSession, out: Path | None = None) -> Path:
    path = out or workspace.home / "reports" / f"{session.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store(workspace.db_path) as store:
        path.write_text(session_report_markdown(store, session), encoding="utf-8")
    return path
