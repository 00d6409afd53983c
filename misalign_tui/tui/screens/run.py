"""Start runs (several models queued), watch each one's progress, pause, cancel, resume interrupted ones.

The queue lives on the app, so runs go on while you browse other screens.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    Button,
    Checkbox,
    Header,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.judge_templates import POLARITIES
from misalign_tui.core.io.native import EMBEDDED, SEED_BENCHMARK
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.models.registry import list_models
from misalign_tui.core.runs.catalog import resumable_runs
from misalign_tui.core.runs.request import DEFAULT_TEMPLATES, NORMALIZATIONS, Protocol, RunSpec
from misalign_tui.core.store import RunInfo, Store
from misalign_tui.core.views.figures import figure
from misalign_tui.tui.messages import RunChoicesLoaded
from misalign_tui.tui.plain import line, lines
from misalign_tui.tui.run_control import QueuedRun, RunStatus
from misalign_tui.tui.screens.base import AppScreen, hidden
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col, text_col

PROGRESS_COLUMNS = (name_col("model"), figure_col("method", right=False), figure_col("state", right=False),
                    figure_col("done"), figure_col("items/s"), figure_col("ETA"),
                    text_col("headline (95% CI, n)", 12))


def _eta(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f}s"
    return f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.1f}h"


def progress_row(st: RunStatus) -> tuple[str, ...]:
    """One run's row: done/total, rate, ETA and the running headline figure are figures, never cut."""
    headline = figure(st.headline_label, st.headline, st.headline_ci, st.headline_n) if st.headline_label else "-"
    return (st.request.model, st.request.method, st.state, f"{st.done:,}/{st.total:,}",
            "-" if st.items_per_s is None else f"{st.items_per_s:.2f}", _eta(st.eta_s), headline)


class RunScreen(AppScreen):
    HOME = "#run-models"
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
                yield Label("Models (space toggles, queued in order)")
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
                yield Button("Start (ctrl+r, or Enter in a field)", id="run-start", variant="primary", compact=True)
            with Vertical(id="run-side"):
                yield Static("Progress", classes="section-title")
                yield FittedTable(id="run-progress")
                yield hidden(Static(id="run-verdict", classes="verdicts"))  # shown when there is a line
                yield Static(id="run-errors", classes="error")
                yield Static("Interrupted runs (u resumes the highlighted one)", classes="section-title")
                yield FittedTable(id="run-interrupted")
        yield self.footer()

    def on_mount(self) -> None:
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
            known = store.benchmarks()
            benchmarks = [f"{b.name}@{b.version}" for b in known]
            # embedded benchmarks not loaded yet (the parallel-language seed): a run loads it when it starts
            benchmarks += [name for name in EMBEDDED if name not in {b.name for b in known}]
            interrupted = resumable_runs(store)
        self.post_message(RunChoicesLoaded(models, benchmarks, interrupted))

    def on_run_choices_loaded(self, message: RunChoicesLoaded) -> None:
        sl = self.query_one("#run-models", SelectionList)
        chosen = set(sl.selected)
        sl.clear_options()
        for name, is_default in message.models:
            sl.add_option(Selection(line(name + (" (default)" if is_default else "")), name, name in chosen or
                                    (not chosen and (is_default or len(message.models) == 1))))
        names = [(line(n), n) for n, _ in message.models]
        self.query_one("#run-judge", Select).set_options(names)
        self.query_one("#run-benchmark", Select).set_options([(line(b), b) for b in message.benchmarks])
        self._interrupted = message.interrupted
        self.query_one("#run-interrupted", FittedTable).show(
            (figure_col("id"), name_col("model"), figure_col("method", right=False), name_col("benchmark"),
             figure_col("done")),
            [(str(r.id), r.model, r.method, r.benchmark, f"{r.items_done:,}/{r.items_total:,}")
             for r in message.interrupted], keys=[str(r.id) for r in message.interrupted])

    def show_statuses(self) -> None:
        statuses = list(self.app.run_statuses.values())  # type: ignore[attr-defined]
        self.query_one("#run-progress", FittedTable).show(PROGRESS_COLUMNS, [progress_row(st) for st in statuses],
                                                          keys=[st.key for st in statuses])
        errors = [[(f"{st.request.model}: ", "bold"), st.error or ""] for st in statuses if st.error]
        self.query_one("#run-errors", Static).update(lines(*errors) if errors else "")
        self.show_verdicts()

    def update_status(self, status: RunStatus) -> None:
        """Called by the app on the UI thread for each (coalesced) progress message."""
        self.show_statuses()
        if status.finished:
            self.load_choices()

    def show_verdicts(self) -> None:
        """The finished judge runs' quality in words, under the progress (the run's final line)."""
        rows = [[f"run {st.run_id} (", st.request.model, f") judge: {st.verdict}"]
                for st in self.app.run_statuses.values() if st.verdict]  # type: ignore[attr-defined]
        shown = self.query_one("#run-verdict", Static)
        shown.update(lines(*rows) if rows else "")
        shown.display = bool(rows)

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
        self.query_one("#run-progress", FittedTable).focus()  # out of the form: screen keys work again

    def action_pause(self) -> None:
        self.app.action_pause_runs()  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.app.action_cancel_runs()  # type: ignore[attr-defined]

    def action_resume_interrupted(self) -> None:
        table = self.query_one("#run-interrupted", FittedTable)
        if not self._interrupted or table.cursor_row is None or table.cursor_row >= len(self._interrupted):
            self.notify("no interrupted run to resume")
            return
        self.app.resume_run(self._interrupted[table.cursor_row].id)  # type: ignore[attr-defined]
        self.show_statuses()
