"""A saved session turned into an audit report: what the Sessions screen and `sessions report` write.

The report itself is the audit report (core/report/audit.py, the same as ``misalign-tui report``) of the runs
to show (core.runs.catalog.runs_to_show) of the session's models, with its filters and grouping; a short
header says which session it came from and which runs were skipped.
"""

from __future__ import annotations

from pathlib import Path

from misalign_tui.core import metrics
from misalign_tui.core.errors import UserError
from misalign_tui.core.io.atomic_file import atomic_text_file
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.metrics.vocabulary import METRICS, methods_for
from misalign_tui.core.report.audit import build_report
from misalign_tui.core.report.markdown import md
from misalign_tui.core.report.render import render
from misalign_tui.core.runs.catalog import runs_to_show
from misalign_tui.core.sessions import SavedSession
from misalign_tui.core.store import Store
from misalign_tui.core.workspace import Workspace


def session_report_markdown(store: Store, session: SavedSession, bootstrap: int = 1000) -> str:
    st = session.state
    selection = runs_to_show(store, models=st.models or None, methods=methods_for(st.metric))
    runs = selection.by_model()
    label = METRICS[st.metric].label
    if not runs:
        raise UserError(f"session {session.name!r}: none of its models ({', '.join(st.models) or 'any'}) has a "
                        f"run for {label}")
    group_by = st.grouping if st.grouping in metrics.GROUPINGS else "dimension"
    report = build_report(store, list(runs.values()), group_by=group_by, filters=Filters.parse(st.filters),
                          bootstrap=bootstrap)
    header = [f"<!-- session: {md(session.name)} -->", f"Session **{md(session.name)}**: models "
              f"{md(', '.join(runs))}; metric {label}; grouping {st.grouping}; filters "
              f"{md(Filters.parse(st.filters).as_text() or 'none')}.",
              *([md(selection.skipped_note()) + "."] if selection.skipped else []), ""]
    return "\n".join(header) + "\n" + render(report, "md")


def write_session_report(workspace: Workspace, session: SavedSession, out: Path | None = None) -> Path:
    path = out or workspace.home / "reports" / f"{session.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store(workspace.db_path) as store:
        text = session_report_markdown(store, session)
    with atomic_text_file(path) as fh:
        fh.write(text)
    return path
