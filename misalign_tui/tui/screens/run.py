"""Start runs (several models queued), watch each one's progress, pause, cancel, resume interrupted ones.

The queue lives on the app, so runs go on while you browse other screens.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    SelectionList,
    Static,
)

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.judge_templates import POLARITIES
from misalign_tui.core.io.native import SEED_BENCHMARK
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.models.registry import list_models
from misalign_tui.core.runs.catalog import resumable_runs
from misalign_tui.core.runs.request import DEFAULT_TEMPLATES, NORMALIZATIONS, Protocol, RunSpec
from misalign_tui.core.store import RunInfo, Store
from misalign_tui.tui.run_control import QueuedRun, RunStatus


def _eta(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m"


class RunChoicesLoaded(Message):
    def __init__(self, models: list[tuple[str, bool]], benchmarks: list[str], interrupted: list[RunInfo]) -> None:
        super().__init__()
        self.models = models  # (name, is_default)
        self.benchmarks = benchmarks
        self.interrupted = interrupted


class RunScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+r", "start", "Start"),
        Binding("p", "pause", "Pause/resume"),
        Binding("x", "cancel", "Cancel"),
        Binding("u", "resume_interrupted", "Resume run"),
        Binding("g", "reload", "Refresh"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="run-body"):
            with VerticalScroll(id="run-form"):
                yield Label("Models (space toggles; queued in order)")
                yield SelectionList[str](id="run-models")
                yield Label("Method")
                with RadioSet(id="run-method"):
                    yield RadioButton("auto (judge if chat model, else preference)", value=True, id="method-auto")
                    yield RadioButton("judge", id="method-judge")
                    yield RadioButton("preference", id="method-preference")
                    yield RadioButton("generate (with a judge model)", id="method-generate")
                yield Label("Judge model (generate only)", classes="field")
                yield Select([], prompt="the model itself", id="run-judge", compact=True)
                yield Label("Benchmark", classes="field")
                yield Select([], prompt="misalign-seed (embedded)", id="run-benchmark", compact=True)
                yield Label("Filters", classes="field")
                yield Input(placeholder="dimension=safety,type=relation", id="run-filters", compact=True)
                yield Label("Limit (first N prompts)", classes="field")
                yield Input(placeholder="all", id="run-limit", type="integer", compact=True)
                yield Label("Judge templates", classes="field")
                yield Input(placeholder="3", id="run-templates", type="integer", compact=True)
                yield Label("Judge: demonstrations (shots)", classes="field")
                yield Input(placeholder="0", id="run-shots", type="integer", compact=True)
                yield Label("Judge: question polarity", classes="field")
                yield Select([(p, p) for p in POLARITIES], value="harm", allow_blank=False, id="run-polarity",
                             compact=True)
                yield Checkbox("Judge: contextual calibration", id="run-calibrate", compact=True)
                yield Label("Preference: normalisation", classes="field")
                yield Select([(n, n) for n in NORMALIZATIONS], value="none", allow_blank=False, id="run-normalize",
                             compact=True)
                yield Button("Start (Enter in a field, or ctrl+r)", id="run-start", variant="primary", compact=True)
            with Vertical(id="run-side"):
                yield Static("Progress", classes="section-title")
                yield DataTable(id="run-progress", cursor_type="row", zebra_stripes=True)
                yield Static(id="run-verdict", classes="verdicts")
                yield Static("Interrupted runs (u resumes the highlighted one)", classes="section-title")
                yield DataTable(id="run-interrupted", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#run-progress", DataTable).add_columns("model", "method", "state", "done", "items/s",
                                                               "ETA", "headline")
        self.query_one("#run-interrupted", DataTable).add_columns("id", "model", "method", "benchmark", "done")
        self._interrupted: list[RunInfo] = []

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_choices()
        self.show_statuses()

    @work(thread=True, exclusive=True, group="run-choices", exit_on_error=False)
    def load_choices(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            models = [(m.name, m.is_default) for m in list_models(store) if m.usable]
            benchmarks = [f"{b.name}@{b.version}" for b in store.benchmarks()]
            interrupted = resumable_runs(store)
        self.post_message(RunChoicesLoaded(models, benchmarks, interrupted))

    def on_run_choices_loaded(self, message: RunChoicesLoaded) -> None:
        sl = self.query_one("#run-models", SelectionList)
        chosen = set(sl.selected)
        sl.clear_options()
        for name, is_default in message.models:
            sl.add_option((name + (" (default)" if is_default else ""), name, name in chosen or
                           (not chosen and (is_default or len(message.models) == 1))))
        names = [(n, n) for n, _ in message.models]
        self.query_one("#run-judge", Select).set_options(names)
        self.query_one("#run-benchmark", Select).set_options([(b, b) for b in message.benchmarks])
        self._interrupted = message.interrupted
        table = self.query_one("#run-interrupted", DataTable)
        table.clear()
        for r in message.interrupted:
            table.add_row(str(r.id), r.model, r.method, r.benchmark, f"{r.items_done}/{r.items_total}", key=str(r.id))

    def show_statuses(self) -> None:
        table = self.query_one("#run-progress", DataTable)
        table.clear()
        for st in self.app.run_statuses.values():  # type: ignore[attr-defined]
            self._row(table, st, add=True)
        self.show_verdicts()

    def update_status(self, status: RunStatus) -> None:
        """Called by the app on the UI thread for each (coalesced) progress message."""
        table = self.query_one("#run-progress", DataTable)
        if status.key in table.rows:
            self._row(table, status, add=False)
        else:
            self._row(table, status, add=True)
        if status.finished:
            self.load_choices()
            self.show_verdicts()

    def show_verdicts(self) -> None:
        """The finished judge runs' quality in words, under the progress (the run's final line)."""
        lines = [f"run {st.run_id} ({st.request.model}) judge: {st.verdict}"
                 for st in self.app.run_statuses.values() if st.verdict]  # type: ignore[attr-defined]
        self.query_one("#run-verdict", Static).update(Text("\n".join(lines)))

    @staticmethod
    def _row(table: DataTable, st: RunStatus, add: bool) -> None:
        state = st.state if not st.error else f"failed: {st.error}"
        cells = [st.request.model, st.request.method, state, f"{st.done}/{st.total}",
                 "-" if st.items_per_s is None else f"{st.items_per_s:.2f}", _eta(st.eta_s),
                 "-" if st.headline is None else f"{st.headline_label} {100 * st.headline:.1f}"]
        if add:
            table.add_row(*cells, key=st.key)
        else:
            for col, value in zip(table.columns, cells, strict=True):
                table.update_cell(st.key, col, value, update_width=True)

    # -- actions ---------------------------------------------------------------------------------------

    def build_requests(self) -> list[QueuedRun]:
        models = list(self.query_one("#run-models", SelectionList).selected)
        if not models:
            raise ValueError("pick at least one model (space toggles it in the list)")
        pressed = self.query_one("#run-method", RadioSet).pressed_button
        method = (pressed.id or "method-auto").removeprefix("method-") if pressed else "auto"
        judge = self.query_one("#run-judge", Select).value
        judge_model = None if judge is Select.NULL else str(judge)
        if method == "generate" and not judge_model:
            raise ValueError("generate needs a judge model: pick one under 'judge model'")
        bench = self.query_one("#run-benchmark", Select).value
        limit_text = self.query_one("#run-limit", Input).value.strip()
        templates_text = self.query_one("#run-templates", Input).value.strip()
        filters = Filters.parse(self.query_one("#run-filters", Input).value)
        shots_text = self.query_one("#run-shots", Input).value.strip()
        protocol = Protocol(shots=int(shots_text) if shots_text else 0,
                            calibrate=self.query_one("#run-calibrate", Checkbox).value,
                            polarity=str(self.query_one("#run-polarity", Select).value),
                            normalize=str(self.query_one("#run-normalize", Select).value))
        return [QueuedRun(m, method, RunSpec(m, method, judge_model, SEED_BENCHMARK if bench is Select.NULL
                                             else str(bench), filters, int(limit_text) if limit_text else None,
                                             int(templates_text) if templates_text else DEFAULT_TEMPLATES,
                                             protocol=protocol))
                for m in models]

    @on(Input.Submitted, "#run-form Input")
    @on(Button.Pressed, "#run-start")
    def action_start(self) -> None:
        try:
            requests = self.build_requests()
        except (ValueError, UserError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.app.queue_runs(requests)  # type: ignore[attr-defined]
        self.show_statuses()
        self.query_one("#run-progress", DataTable).focus()  # out of the form: screen keys work again

    def action_pause(self) -> None:
        self.app.action_pause_runs()  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.app.action_cancel_runs()  # type: ignore[attr-defined]

    def action_resume_interrupted(self) -> None:
        table = self.query_one("#run-interrupted", DataTable)
        if not self._interrupted or table.cursor_row is None:
            self.notify("no interrupted run to resume")
            return
        self.app.resume_run(self._interrupted[table.cursor_row].id)  # type: ignore[attr-defined]
        self.show_statuses()
