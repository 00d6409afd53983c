"""Review: one item at a time, decided by single keys — the prompt with its domains, semantic type and targeted
dimension, the response (or both responses of a pair, A and B in a seeded random order), the model's verdict
hidden until the reviewer has decided (v shows it, and the decision records that it was seen).

Keys answer at once: the screen holds the queue in memory and a writer thread (one connection of its own)
stores each decision in the order given, so neither a slow disk nor a run writing the same database delays the
next item. Agreement figures (core.review.figures) refresh in a worker after each stored decision.
"""

from __future__ import annotations

import queue as queues
import threading
import time
from dataclasses import dataclass, field

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Select, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.review.decisions import (
    NewDecision,
    check_reviewer,
    current_decisions,
    last_reviewer,
    record_decisions,
    remember_reviewer,
    shown,
    undo_decisions,
    undo_last,
)
from misalign_tui.core.review.figures import ReviewFigures, figures_lines, queue_figures
from misalign_tui.core.review.queues import QueueInfo, ReviewItem, list_queues, queue_items
from misalign_tui.core.store import Store
from misalign_tui.core.views.review import current_slot, next_position, progress, rate_text, verdict_text
from misalign_tui.tui.messages import WorkFailed
from misalign_tui.tui.plain import Part, assemble, line, lines, plain, styled
from misalign_tui.tui.screens.dialogs import NamePrompt


@dataclass(eq=False)
class Action:
    """One key's decisions (a skip or flag covers every response left on the item), for undo."""

    item_index: int
    decisions: list[NewDecision]
    previous: dict[int, str | None]          # response id → the reviewer's decision before
    ids: list[int] = field(default_factory=list)
    stored: threading.Event = field(default_factory=threading.Event)
    stored_at: float | None = None           # perf_counter when committed (bench review)


class QueuesLoaded(Message):
    def __init__(self, queues: list[QueueInfo], reviewer: str | None) -> None:
        super().__init__()
        self.queues = queues
        self.reviewer = reviewer


class QueueLoaded(Message):
    def __init__(self, queue: QueueInfo, items: list[ReviewItem], mine: dict[int, str]) -> None:
        super().__init__()
        self.queue = queue
        self.items = items
        self.mine = mine


class FiguresLoaded(Message):
    def __init__(self, queue_id: int, figures: ReviewFigures) -> None:
        super().__init__()
        self.queue_id = queue_id
        self.figures = figures


class DecisionStored(Message):
    def __init__(self, action: Action) -> None:
        super().__init__()
        self.action = action


class DecisionFailed(Message):
    def __init__(self, action: Action | None, text: str) -> None:
        super().__init__()
        self.action = action
        self.text = text


class UndoneInStore(Message):
    """An undo found in the database (nothing left to undo in this session): what the reviewer's decisions
    on that item are now."""

    def __init__(self, item_id: int | None, mine: dict[int, str], undone: list[int]) -> None:
        super().__init__()
        self.item_id = item_id
        self.mine = mine
        self.undone = undone


class DecisionWriter:
    """Stores decisions and undos in the order given, on a thread with its own connection."""

    def __init__(self, screen: ReviewScreen, db_path: object, reviewer: str, queue_id: int) -> None:
        self.screen, self.db_path, self.reviewer, self.queue_id = screen, db_path, reviewer, queue_id
        self.ops: queues.Queue[tuple[str, Action | None] | None] = queues.Queue()
        self.thread = threading.Thread(target=self._run, name="review-writer", daemon=True)
        self.thread.start()

    def record(self, action: Action) -> None:
        self.ops.put(("record", action))

    def undo(self, action: Action | None) -> None:
        self.ops.put(("undo", action))

    def close(self, timeout: float = 10.0) -> None:
        """Store what is still queued, then stop."""
        self.ops.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        store: Store | None = None
        while True:
            op = self.ops.get()
            if op is None:
                break
            kind, action = op
            try:
                if store is None:
                    store = Store(self.db_path)  # type: ignore[arg-type]
                if kind == "record" and action is not None:
                    action.ids = record_decisions(store, self.reviewer, action.decisions)
                    action.stored_at = time.perf_counter()
                    action.stored.set()
                    self.screen.post_message(DecisionStored(action))
                elif action is not None:
                    action.stored.wait(10)
                    undo_decisions(store, action.ids)
                else:
                    undone = undo_last(store, self.queue_id, self.reviewer)
                    item = undone[0].item_id if undone else None
                    mine = {d.review_response_id: d.decision for d in
                            current_decisions(store, self.queue_id, self.reviewer, items=[item])} if item else {}
                    self.screen.post_message(UndoneInStore(item, mine, [d.review_response_id for d in undone]))
            except Exception as exc:  # noqa: BLE001 - the writer lives on; the screen says what failed
                if action is not None:
                    action.stored.set()
                text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                self.screen.post_message(DecisionFailed(action if kind == "record" else None, text))
        if store is not None:
            store.close()


class ReviewScreen(Screen[None]):
    BINDINGS = [
        Binding("a", "decide('aligned')", "Aligned"),
        Binding("m", "decide('misaligned')", "Misaligned"),
        Binding("s", "decide('skip')", "Skip"),
        Binding("f", "flag", "Flag + note"),
        Binding("u,ctrl+z", "undo", "Undo"),
        Binding("v", "toggle_verdict", "Verdict"),
        Binding("N", "new_queue", "New queue"),
        Binding("i", "change_reviewer", "Reviewer", show=False),
        Binding("g", "reload", "Refresh", show=False),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    def __init__(self) -> None:
        super().__init__()
        self.reviewer: str | None = None
        self.queue: QueueInfo | None = None
        self.queues: list[QueueInfo] = []
        self.items: list[ReviewItem] = []
        self.mine: dict[int, str] = {}
        self.index = 0
        self.verdict_visible = False
        self.shown_at = time.monotonic()
        self.session_seconds: list[float] = []
        self.actions: list[Action] = []
        self.writer: DecisionWriter | None = None
        self.last_line: Content = Content("")
        self.answered = 0          # items shown after a key; the review benchmark waits on it
        self.painted_at = 0.0
        self._asking = False
        self._asked = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Select([], prompt="no review queue yet — N makes one", id="review-queue", compact=True)
        yield Static(id="review-status")
        with Horizontal(id="review-body"):
            with VerticalScroll(id="review-item", can_focus=True):
                yield Static(id="review-prompt")
                yield Static(id="review-response-a", classes="review-response")
                yield Static(id="review-response-b", classes="review-response")
                yield Static(id="review-verdict")
                yield Static(id="review-last")
            with VerticalScroll(id="review-stats"):
                yield Static("Agreement figures appear once decisions are stored.", id="review-figures")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#review-item").focus()
        self.render_item()

    def on_screen_resume(self) -> None:
        self.load_queues()

    def on_unmount(self) -> None:
        self._close_writer()

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # -- loading -------------------------------------------------------------------------------------------

    @property
    def db_path(self):  # noqa: ANN201 - a Path
        return self.app.workspace.db_path  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="review-queues", exit_on_error=False)
    def load_queues(self) -> None:
        with Store(self.db_path) as store:
            self.post_message(QueuesLoaded(list_queues(store), last_reviewer(store)))

    def on_queues_loaded(self, message: QueuesLoaded) -> None:
        self.queues = message.queues
        if self.reviewer is None and message.reviewer:
            self.reviewer = message.reviewer
        current = self.queue.id if self.queue else None
        self._show_queues()
        if self.reviewer is None and not self._asked:
            self.ask_reviewer()
        elif current is None and self.queues:
            self.open_queue(self.queues[-1].id)
        else:
            self.render_item()

    def _show_queues(self) -> None:
        """The queue picker: every queue, newest first, with the open one selected."""
        if self.queue is not None and all(q.id != self.queue.id for q in self.queues):
            self.queues.append(self.queue)  # made a moment ago, before the list was read again
        select = self.query_one("#review-queue", Select)
        with self.prevent(Select.Changed):
            select.set_options([(line(f"{q.name} ({q.items} items)"), q.id) for q in reversed(self.queues)])
            if self.queue is not None:
                select.value = self.queue.id

    def ask_reviewer(self, again: str = "") -> None:
        if self._asking:
            return
        self._asking = self._asked = True

        def answer(name: str | None) -> None:
            self._asking = False
            if not name:
                if self.reviewer is None:
                    self.notify("decisions need a reviewer name: press i to give yours", severity="warning")
                self.render_item()
                return
            try:
                name = check_reviewer(name)
            except UserError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                self.ask_reviewer()
                return
            self._reviewer_set(name)
            self._remember(name)

        question = again or "Your reviewer name (kept in this workspace):"
        self.app.push_screen(NamePrompt(question, self.reviewer or ""), answer)

    @work(thread=True, group="review-reviewer", exit_on_error=False)
    def _remember(self, name: str) -> None:
        with Store(self.db_path) as store:
            remember_reviewer(store, name)

    def _reviewer_set(self, name: str) -> None:
        changed = self.reviewer != name
        self.reviewer = name
        self.notify(f"reviewing as {name}")
        if changed and self.queue is not None:
            self.open_queue(self.queue.id)
        elif self.queue is None and self.queues:
            self.open_queue(self.queues[-1].id)
        else:
            self.render_item()

    @on(Select.Changed, "#review-queue")
    def _queue_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, int) and (self.queue is None or event.value != self.queue.id):
            self.open_queue(event.value)

    def open_queue(self, queue_id: int) -> None:
        self._close_writer()
        self.actions.clear()
        self.read_queue(queue_id, self.reviewer)

    @work(thread=True, exclusive=True, group="review-queue", exit_on_error=False)
    def read_queue(self, queue_id: int, reviewer: str | None) -> None:
        with Store(self.db_path) as store:
            queue = next(q for q in list_queues(store) if q.id == queue_id)
            items = queue_items(store, queue_id)
            mine = {d.review_response_id: d.decision for d in current_decisions(store, queue_id, reviewer)} \
                if reviewer else {}
            self.post_message(QueueLoaded(queue, items, mine))
            self.post_message(FiguresLoaded(queue_id, queue_figures(store, queue_id)))

    def on_queue_loaded(self, message: QueueLoaded) -> None:
        self.queue, self.items, self.mine = message.queue, message.items, message.mine
        self.index = next_position(self.items, self.mine, -1)
        self.verdict_visible = False
        self.last_line = Content("")
        if self.reviewer is not None:
            self.writer = DecisionWriter(self, self.db_path, self.reviewer, self.queue.id)
        self._show_queues()
        self.shown_at = time.monotonic()
        self.render_item()

    def action_reload(self) -> None:
        self.load_queues()
        if self.queue is not None:
            self.refresh_figures(self.queue.id)

    @work(thread=True, exclusive=True, group="review-figures", exit_on_error=False)
    def refresh_figures(self, queue_id: int) -> None:
        with Store(self.db_path) as store:
            self.post_message(FiguresLoaded(queue_id, queue_figures(store, queue_id)))

    def on_figures_loaded(self, message: FiguresLoaded) -> None:
        if self.queue is None or message.queue_id != self.queue.id:
            return
        f = message.figures
        self.query_one("#review-figures", Static).update(
            lines([("Agreement", "bold"), " (95 % intervals, n)"], *(f"• {text}" for text in figures_lines(f))))

    # -- showing -----------------------------------------------------------------------------------------

    @property
    def item(self) -> ReviewItem | None:
        return self.items[self.index] if 0 <= self.index < len(self.items) else None

    def render_item(self) -> None:
        status = self.query_one("#review-status", Static)
        prompt = self.query_one("#review-prompt", Static)
        boxes = [self.query_one("#review-response-a", Static), self.query_one("#review-response-b", Static)]
        verdict = self.query_one("#review-verdict", Static)
        self.query_one("#review-last", Static).update(self.last_line)
        who: Part = self.reviewer if self.reviewer else ("no reviewer yet (i)", "bold")
        item = self.item
        if self.queue is None:
            status.update(assemble("reviewer: ", who))
            prompt.update(plain("No review queue yet. Press N to sample a benchmark's gold labels or a judge run's "
                          "verdicts, or run a recipe with checker = \"human\" (its stage-2 candidates queue here); "
                          "misalign-tui review export does the same for reviewers who work elsewhere."))
            for box in boxes:
                box.display = False
            verdict.update("")
            return
        done = progress(self.items, self.mine)
        place = f"item {self.index + 1}/{len(self.items)}" if item else "queue done"
        status.update(assemble(f"{place} · {done.text()} · ", who, f" · {rate_text(self.session_seconds)}"))
        if item is None:
            resume = (" The build takes the decisions when it runs again: misalign-tui build RECIPE (or the Build "
                      "screen) resumes it." if self.queue.purpose == "checker" else "")
            prompt.update(assemble(("Every item of this queue is decided.", "bold"), " u undoes your last decision; N "
                                   "starts another queue; the figures show how the reviewers agree." + resume))
            for box in boxes:
                box.display = False
            verdict.update("")
            return
        meta: list[Part] = ["  dimension: ", (item.dimension or "untargeted", "bold"),
                            f" · type: {item.semantic_type or '-'} · domains: {'; '.join(item.domains) or '-'}"]
        if item.applied_at:
            meta.append((" · taken by the build already", "dim"))
        prompt.update(assemble((item.prompt_key, "bold"), *meta, "\n\n", item.prompt))
        deciding = current_slot(item, self.mine)
        for box, r in zip(boxes, (*item.responses, None, None), strict=False):
            if r is None:
                box.display = False
                continue
            box.display = True
            mark = self.mine.get(r.id)
            box.set_class(r is deciding, "-deciding")
            box.update(assemble((r.letter, "bold"), ("  ", ""), (" deciding ", "reverse") if r is deciding else "",
                                f"  you: {mark}" if mark else "", "\n", r.text))
        body = self.query_one("#review-item", VerticalScroll)
        if deciding.slot == 0:
            body.scroll_home(animate=False)
        else:  # B below A: bring it into view (at 80×24 it starts below the fold)
            target = boxes[deciding.slot]
            self.call_after_refresh(lambda: body.scroll_to_widget(target, animate=False, top=True))
        if self.verdict_visible:
            verdict.update(assemble(("Verdict", "bold"), " (shown before deciding; recorded with the decision): "
                                    + " | ".join(f"{r.letter}: {verdict_text(self.queue, r)}" for r in item.responses)))
        else:
            verdict.update(styled("Verdict hidden until you decide (v shows it). a aligned · m misaligned · s skip · "
                                  "f flag with a note · u undo", "dim"))

    def _painted(self) -> None:
        self.painted_at = time.perf_counter()
        self.answered += 1

    # -- deciding ---------------------------------------------------------------------------------------

    def _ready(self) -> ReviewItem | None:
        if self.reviewer is None:
            self.ask_reviewer()
            return None
        if self.queue is None or self.writer is None:
            self.notify("no review queue open: N makes one", severity="warning")
            return None
        item = self.item
        if item is None:
            self.notify("every item of this queue is decided (u undoes the last)")
        return item

    def action_decide(self, decision: str, note: str | None = None) -> None:
        item = self._ready()
        if item is None:
            return
        deciding = current_slot(item, self.mine)
        targets = [deciding] if decision in ("aligned", "misaligned") else \
            [r for r in item.responses if r.id not in self.mine or self.mine[r.id] == "skip" or r is deciding]
        seconds = time.monotonic() - self.shown_at
        order = [r.letter for r in item.responses]
        decisions = [NewDecision(item.id, r.id, decision, note,
                                 shown(order, r.letter, self.verdict_visible, "app",
                                       screen=f"{self.size.width}x{self.size.height}"), round(seconds, 3))
                     for r in targets]
        action = Action(self.index, decisions, {r.id: self.mine.get(r.id) for r in targets})
        for r in targets:
            self.mine[r.id] = decision
        self.actions.append(action)
        assert self.writer is not None
        self.writer.record(action)
        self.session_seconds.append(seconds)
        if all(r.id in self.mine and self.mine[r.id] != "skip" for r in item.responses) or decision in ("skip", "flag"):
            self.last_line = self._summary(item)
            self.index = next_position(self.items, self.mine, self.index)
            self.verdict_visible = False
        self.shown_at = time.monotonic()
        self.render_item()
        self.call_after_refresh(self._painted)

    def _summary(self, item: ReviewItem) -> str:
        assert self.queue is not None
        you = ", ".join(f"{r.letter} {self.mine.get(r.id, '-')}" for r in item.responses)
        seen = " | ".join(f"{r.letter}: {verdict_text(self.queue, r)}" for r in item.responses)
        return styled(f"Previous item {item.prompt_key} — you: {you} · {seen}", "dim")

    def action_flag(self) -> None:
        if self._ready() is None:
            return
        index = self.index

        def answer(note: str | None) -> None:
            if note and self.index == index:
                self.action_decide("flag", note)
            elif not note:
                self.notify("not flagged: a flag needs a note")

        self.app.push_screen(NamePrompt("Flag this item — what is wrong? (the note is stored with the flag)"), answer)

    def action_undo(self) -> None:
        if self.writer is None or self.queue is None:
            return
        if not self.actions:
            self.writer.undo(None)  # the latest decision in the database (an earlier session)
            return
        action = self.actions.pop()
        self.writer.undo(action)
        self._revert(action)
        self.verdict_visible = False
        self.last_line = styled("Undone: decide this item again.", "dim")
        if self.session_seconds:
            self.session_seconds.pop()
        self.shown_at = time.monotonic()
        self.render_item()

    def on_undone_in_store(self, message: UndoneInStore) -> None:
        if message.item_id is None:
            self.notify("nothing to undo")
            return
        for rid in message.undone:
            self.mine.pop(rid, None)
        self.mine.update(message.mine)
        self.index = next((i for i, it in enumerate(self.items) if it.id == message.item_id), self.index)
        self.last_line = styled("Undone (from an earlier session): decide this item again.", "dim")
        self.render_item()

    def on_decision_stored(self, message: DecisionStored) -> None:
        if self.queue is not None:
            self.refresh_figures(self.queue.id)

    def on_decision_failed(self, message: DecisionFailed) -> None:
        self.notify(f"decision not stored: {message.text}", severity="error", timeout=12)
        action = message.action
        if action is not None and action in self.actions:
            self.actions.remove(action)
            self._revert(action)
            self.render_item()

    def _revert(self, action: Action) -> None:
        """The reviewer's decisions as they were before the action, and its item shown again."""
        for rid, before in action.previous.items():
            if before is None:
                self.mine.pop(rid, None)
            else:
                self.mine[rid] = before
        self.index = action.item_index

    def on_work_failed(self, message: WorkFailed) -> None:
        self.notify(message.text, severity="error", timeout=8)

    def action_toggle_verdict(self) -> None:
        if self.item is None:
            return
        self.verdict_visible = not self.verdict_visible
        self.render_item()

    def action_change_reviewer(self) -> None:
        self.ask_reviewer("Reviewer name for the decisions from now on:")

    def action_new_queue(self) -> None:
        from misalign_tui.tui.screens.review_queue_dialog import NewQueueDialog

        def created(queue_id: int | None) -> None:
            if queue_id is not None:
                self.load_queues()
                self.open_queue(queue_id)

        self.app.push_screen(NewQueueDialog(), created)
