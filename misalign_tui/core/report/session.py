"""A saved session turned into an audit report: what the Sessions screen and `sessions report` write.

The report itself is ``core.io.audit_report`` (the same as ``misalign-tui report``): the latest runs of the
session's models, with its filters and grouping; a short header says which session it came from.
"""

from __future__ import annotations

from pathlib import Path

from misalign_tui.core import metrics
from misalign_tui.core.errors import UserError
from misalign_tui.core.sessions import SavedSession
from misalign_tui.core.store import Store
from misalign_tui.core.views.explore import METRIC_LABELS, ExploreQuery, latest_runs
from misalign_tui.workspace import Workspace


def session_report_markdown(store: Store, session: SavedSession, bootstrap: int = 1000) -> str:
    from misalign_tui.core.report.audit import build_report, render

    st = session.state
    runs = latest_runs(store, ExploreQuery(models=tuple(st.models), metric=st.metric))
    if not runs:
        raise UserError(f"session {session.name!r}: none of its models ({', '.join(st.models) or 'any'}) has a "
                        f"run for {METRIC_LABELS[st.metric]}")
    group_by = st.grouping if st.grouping in metrics.GROUPINGS else "dimension"
    report = build_report(store, list(runs.values()), group_by=group_by, filters=dict(st.filters),
                          bootstrap=bootstrap)
    header = [f"<!-- session: {session.name} -->", f"Session **{session.name}**: models "
              f"{', '.join(runs)}; metric {METRIC_LABELS[st.metric]}; grouping {st.grouping}; filters "
              f"{', '.join(f'{k}={v}' for k, v in st.filters.items()) or 'none'}.", ""]
    return "\n".join(header) + "\n" + render(report, "md")


def write_session_report(workspace: Workspace, session: SavedSession, out: Path | None = None) -> Path:
    path = out or workspace.home / "reports" / f"{session.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store(workspace.db_path) as store:
        path.write_text(session_report_markdown(store, session), encoding="utf-8")
    return path
