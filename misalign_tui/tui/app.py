"""The app factory shared by the CLI and the tests (snapshot and Pilot)."""

from __future__ import annotations

import logging
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from misalign_tui.tui.screens.dashboard import DashboardScreen
from misalign_tui.tui.screens.help import HelpScreen
from misalign_tui.tui.screens.models import ModelsScreen
from misalign_tui.workspace import Workspace, open_workspace


class MisalignApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "misalign-tui"
    MODES = {"dashboard": DashboardScreen, "models": ModelsScreen}
    BINDINGS = [
        Binding("d", "switch_mode('dashboard')", "Dashboard"),
        Binding("m", "switch_mode('models')", "Models"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("t", "toggle_dark", "Theme"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.sub_title = str(workspace.home)

    def on_mount(self) -> None:
        # llama.cpp and simhash log to stderr/logging; under the app they must not reach the terminal.
        logging.getLogger("misalign_tui.llama").propagate = False
        logging.getLogger("simhash").propagate = False
        self.switch_mode("dashboard")

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_help(self) -> None:
        rows: list[tuple[str, str, str]] = []
        for b in self.BINDINGS:
            if isinstance(b, Binding):
                rows.append(("app", b.key_display or b.key, b.description))
        for b in getattr(self.screen, "BINDINGS", []):
            key, _, desc = b if isinstance(b, tuple) else (b.key, b.action, b.description)
            rows.append((type(self.screen).__name__.removesuffix("Screen").lower(), key, desc))
        self.push_screen(HelpScreen(rows))


def create_app(home: str | Path | None = None) -> MisalignApp:
    from misalign_tui.core.store import Store
    from misalign_tui.core.taxonomy import published_taxonomy

    workspace = open_workspace(home).ensure()
    with Store(workspace.db_path) as store:  # creates and migrates the database before any screen reads it
        if not store.conn.execute("SELECT 1 FROM domains LIMIT 1").fetchone():
            store.sync_taxonomy(published_taxonomy())
    return MisalignApp(workspace)


def run_app(ctx: object) -> None:
    create_app(getattr(ctx, "home_arg", None)).run()
