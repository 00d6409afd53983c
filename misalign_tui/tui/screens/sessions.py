"""Saved comparisons: reopen one in the explorer, turn it into a report, delete it."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.sessions import SavedSession, delete_session, list_sessions
from misalign_tui.core.store import Store
from misalign_tui.tui.messages import SessionsLoaded, WorkFailed


class SessionsScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open"),
        Binding("R", "report", "Report"),
        Binding("delete,X", "delete", "Delete"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[SavedSession] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="sessions-body"):
            yield Static(id="sessions-hint", classes="callout")
            yield DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("name", "models", "metric", "grouping", "filters", "updated")

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
                if not self.sessions else "o reopens in Explore · R writes a report · X deletes")
        self.query_one("#sessions-hint", Static).update(hint)
        table = self.query_one(DataTable)
        table.clear()
        for s in self.sessions:
            st = s.state
            table.add_row(s.name, ", ".join(st.models) or "all", st.metric, st.grouping,
                          ", ".join(f"{k}={v}" for k, v in st.filters.items()) or "-", s.updated_at[:10],
                          key=s.name)

    def _current(self) -> SavedSession | None:
        table = self.query_one(DataTable)
        if not self.sessions or table.cursor_row is None:
            self.notify("no session selected")
            return None
        return self.sessions[table.cursor_row]

    def action_open(self) -> None:
        s = self._current()
        if s:
            self.app.open_session(s.state)  # type: ignore[attr-defined]

    def action_delete(self) -> None:
        s = self._current()
        if s:
            self._delete(s.name)

    @work(thread=True, group="sessions", exit_on_error=False)
    def _delete(self, name: str) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            delete_session(store, name)
            self.post_message(SessionsLoaded(list_sessions(store)))

    def action_report(self) -> None:
        s = self._current()
        if s:
            self._report(s)

    @work(thread=True, group="sessions", exit_on_error=False)
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
