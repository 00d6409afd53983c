"""Small modal questions: a name to save under, a yes/no before something that cannot be undone (quitting during a
run, deleting a session), and the note shown while a run stops."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from misalign_tui.tui.plain import plain


class NamePrompt(ModalScreen[str | None]):
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(plain(self.question), classes="dialog-text")
            yield Input(value=self.value, id="name-input")
            yield Static("Enter saves, Escape cancels", classes="dim")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """A yes/no question; ``y`` or the first button says yes, ``n``/Escape or the second says no."""

    BINDINGS = [("y", "answer(True)", "Yes"), ("n,escape", "answer(False)", "No")]

    def __init__(self, text: str, yes: str = "Yes (y)", no: str = "No (n)") -> None:
        super().__init__()
        self.text = text
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(plain(self.text), classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes, id="yes", variant="error", compact=True)
                yield Button(self.no, id="no", variant="primary", compact=True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ConfirmQuit(Confirm):
    def __init__(self) -> None:
        super().__init__("A run is in progress. Stop it and quit? Finished items are kept; the run resumes later "
                         "(u on the Run screen, or the same run command).", "Stop and quit (y)", "Keep running (n)")


class Stopping(ModalScreen[None]):
    """Shown at once after "stop and quit": the engine finishes the batch in flight first (seconds)."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Stopping the run after the items in flight… finished items are kept.", id="stopping",
                         classes="dialog-text")
