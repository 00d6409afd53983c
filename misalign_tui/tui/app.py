"""The app factory shared by the CLI and the tests (snapshot and Pilot)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from misalign_tui.tui.screens.dashboard import DashboardScreen
from misalign_tui.workspace import Workspace, open_workspace


class MisalignApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "misalign-tui"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen())


def create_app(home: str | Path | None = None) -> MisalignApp:
    return MisalignApp(open_workspace(home).ensure())


def run_app(ctx: object) -> None:
    home = getattr(ctx, "home_arg", None)
    create_app(home).run()
