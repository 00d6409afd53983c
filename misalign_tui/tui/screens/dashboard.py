"""The workspace at a glance, and the next useful action."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from misalign_tui.core.store import Store


class DashboardScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="dashboard-summary")
        yield Footer()

    def on_mount(self) -> None:
        ws = self.app.workspace  # type: ignore[attr-defined]
        with Store(ws.db_path) as store:
            benches = store.benchmarks()
            n_models = store.conn.execute("SELECT count(*) FROM models").fetchone()[0]
            n_runs = store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        lines = [f"Workspace: {ws.home}", f"Benchmarks: {len(benches)}   Models: {n_models}   Runs: {n_runs}"]
        if not benches:
            lines.append("No benchmark yet — run `misalign-tui init` to load the seed benchmark.")
        elif not n_runs:
            lines.append("No runs yet — run `misalign-tui run --model default` to profile the default model.")
        self.query_one("#dashboard-summary", Static).update("\n".join(lines))
