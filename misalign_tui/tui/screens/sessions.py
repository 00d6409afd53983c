"""Saved comparisons: reopen one in the explorer, turn it into a report, delete it (after a yes)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Header, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.vocabulary import METRICS
from misalign_tui.core.sessions import SavedSession, delete_session, list_sessions
from misalign_tui.core.store import Store
from misalign_tui.tui.messages import SessionsLoaded, WorkFailed
from misalign_tui.tui.screens.base import AppScreen
from misalign_tui.tui.screens.dialogs import Confirm
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col, text_col


class SessionsScreen(AppScreen):
    HOME = "#sessions-table"
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open"),
        Binding("R", "report", "Report"),
        Binding("X,delete", "delete", "Delete"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[SavedSession] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="sessions-body"):
            yield Static(id="sessions-hint", classes="callout")
            yield FittedTable(id="sessions-table")
        yield self.footer()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_sessions()

    @work(thread=True, exclusive=True, group="sessions", exit_on_error=False)
    def load_sessions(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            self.post_message(SessionsLoaded(list_sessions(store)))

    def on_sessions_loaded(self, message: SessionsLoaded) -> None:
        self.sessions = message.sessions
        hint = ("No saved sessions. On Explore or Compare press s to save what you see under a name."
                if not self.sessions else "o reopens in Explore · R writes a report · X deletes (asks first)")
        self.query_one("#sessions-hint", Static).update(hint)
        self.query_one("#sessions-table", FittedTable).show(
            (name_col("name"), text_col("models", 10), figure_col("metric", right=False),
             figure_col("grouping", right=False), text_col("filters", 8), figure_col("updated", right=False)),
            [(s.name, ", ".join(s.state.models) or "all",
              METRICS[s.state.metric].label if s.state.metric in METRICS else s.state.metric,
              s.state.grouping.replace("_", " "),
              ", ".join(f"{k}={v}" for k, v in s.state.filters.items()) or "-", s.updated_at[:10])
             for s in self.sessions],
            keys=[s.name for s in self.sessions])

    def _current(self) -> SavedSession | None:
        table = self.query_one("#sessions-table", FittedTable)
        if not self.sessions or table.cursor_row is None or table.cursor_row >= len(self.sessions):
            self.notify("no session selected")
            return None
        return self.sessions[table.cursor_row]

    def action_open(self) -> None:
        s = self._current()
        if s:
            self.app.open_session(s.state)  # type: ignore[attr-defined]

    def action_delete(self) -> None:
        s = self._current()
        if s is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete(s.name)

        self.app.push_screen(Confirm(f"Delete the session {s.name!r}? Its saved view cannot be restored "
                                     "(reports already written stay).", "Delete (y)", "Keep (n)"), answer)

    # not in the "sessions" group: the reload that follows the dialog (screen resume) is exclusive in that group
    # and would cancel the delete before it ran
    @work(thread=True, group="session-edit", exit_on_error=False)
    def _delete(self, name: str) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            delete_session(store, name)
            self.post_message(SessionsLoaded(list_sessions(store)))
        self.app.call_from_thread(self.notify, f"session deleted: {name}")

    def action_report(self) -> None:
        s = self._current()
        if s:
            self._report(s)

    @work(thread=True, group="session-edit", exit_on_error=False)
    def _report(self, session: SavedSession) -> None:
        from misalign_tui.core.report.session import write_session_report

        try:
            path = write_session_report(self.app.workspace, session)  # type: ignore[attr-defined]
        except UserError as exc:
            self.post_message(WorkFailed(str(exc)))
            return
        self.app.call_from_thread(self.notify, f"report written: {path}", timeout=10)

    def on_work_failed(self, message: WorkFailed) -> None:
        self.notify(message.text, severity="error", timeout=8)
