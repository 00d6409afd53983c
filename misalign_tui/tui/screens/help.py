"""Every binding of the app and of the current screen, in one place."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from misalign_tui.tui.plain import lines


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self._rows = bindings

    def compose(self) -> ComposeResult:
        rows: list = [[("Keys", "bold"), "  (Ctrl+P opens the command palette with every action)"], [""]]
        for where, key, description in self._rows:
            rows.append([("  " + f"{key:>10}", "bold"), f"  {description}  ", (where, "dim")])
        rows += [[""], ["Escape leaves a text field; pressed again, it closes this list or goes back."]]
        with VerticalScroll(id="help-body"):
            yield Static(lines(*rows))
