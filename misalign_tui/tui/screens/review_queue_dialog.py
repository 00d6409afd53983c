"""A new review queue from the Review screen: a benchmark's gold labels, a judge run's verdicts, or a sample
of a build's model-checker decisions — seeded, so the same choice gives the same queue (as ``review export``)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store
from misalign_tui.core.views.review import create_queue, read_sources
from misalign_tui.tui.plain import line, plain


class SourcesLoaded(Message):
    def __init__(self, options: list[tuple[str, str]]) -> None:
        super().__init__()
        self.options = options


class QueueCreated(Message):
    def __init__(self, queue_id: int | None, error: str = "") -> None:
        super().__init__()
        self.queue_id = queue_id
        self.error = error


class NewQueueDialog(ModalScreen[int | None]):
    BINDINGS = [("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="review-new-queue"):
            yield Label("New review queue (shift+tab: what to review; Enter creates)")
            yield Select([], prompt="loading…", id="review-source")
            with Horizontal(classes="review-new-numbers"):
                yield Label("items")
                yield Input("20", id="review-sample", restrict=r"[0-9]*", compact=True)
                yield Label("seed")
                yield Input("0", id="review-seed", restrict=r"-?[0-9]*", compact=True)
            yield Label("", id="review-new-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create (Enter)", id="create", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.load_sources()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load_sources(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            self.post_message(SourcesLoaded(read_sources(store)))

    def on_sources_loaded(self, message: SourcesLoaded) -> None:
        select = self.query_one("#review-source", Select)
        select.set_options([(line(label), value) for label, value in message.options])
        if message.options:
            select.value = message.options[0][1]
        self.query_one("#review-sample", Input).focus()

    @on(Select.Changed, "#review-source")
    def _chosen(self) -> None:
        self.query_one("#review-sample", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def _create(self) -> None:
        source = self.query_one("#review-source", Select).value
        if not isinstance(source, str):
            self.query_one("#review-new-error", Label).update("choose what to review")
            return
        sample_text = self.query_one("#review-sample", Input).value.strip()
        seed_text = self.query_one("#review-seed", Input).value.strip() or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            self.query_one("#review-new-error", Label).update("seed: a whole number")
            return
        self.create(source, int(sample_text) if sample_text else None, seed)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def create(self, source: str, sample: int | None, seed: int) -> None:
        try:
            with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
                self.post_message(QueueCreated(create_queue(store, source, sample, seed)))
        except UserError as exc:
            self.post_message(QueueCreated(None, str(exc)))

    def on_queue_created(self, message: QueueCreated) -> None:
        if message.queue_id is None:
            self.query_one("#review-new-error", Label).update(plain(message.error))
            return
        self.dismiss(message.queue_id)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
