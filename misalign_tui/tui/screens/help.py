"""Every binding of the app and of the current screen, in one place."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self._rows = bindings

    def compose(self) -> ComposeResult:
        lines = ["[b]Keys[/]  (Ctrl+P opens the command palette with every action)", ""]
        for where, key, description in self._rows:
            lines.append(f"  [b]{key:>10}[/]  {description}  [dim]{where}[/]")
        lines += ["", "Press Escape to close."]
        with VerticalScroll(id="help-body"):
            yield Static("\n".join(lines))
