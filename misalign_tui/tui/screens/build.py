"""Build a benchmark from a recipe: each step's counts and rejections live, rejected candidates with reasons."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Header, Input, Static

from misalign_tui.core.build.state import STEPS, AwaitingReview, StepProgress
from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.store import Store
from misalign_tui.core.views.build import BuildStep, Rejected, format_counts, published_note, read_build_state
from misalign_tui.tui.messages import BuildFinished, BuildLoaded, BuildProgressed
from misalign_tui.tui.plain import assemble, line, lines
from misalign_tui.tui.screens.base import AppScreen, hidden
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col, text_col

STEP_COLUMNS = (name_col("step"), figure_col("status", right=False), figure_col("done"), figure_col("rate"),
                text_col("counts"))


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2f}/s"


class BuildScreen(AppScreen):
    HOME = "#build-rejected"
    BINDINGS = [
        Binding("b", "focus_recipe", "Recipe path"),
        Binding("D", "demo", "Demo build"),
        Binding("x", "cancel", "Cancel build"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._cancel = threading.Event()
        self._rejected: list[Rejected] = []
        self._steps: dict[str, BuildStep] = {}
        self._rates: dict[str, float | None] = {}
        self.building = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="b: type a recipe TOML path, then Enter · D runs the small demo recipe",
                    id="build-recipe", compact=True)
        with Horizontal(id="build-body"):
            with Vertical(id="build-left"):
                yield Static(id="build-status", classes="section-title")
                yield Static(id="build-outcome")
                yield hidden(Static(id="build-checker", classes="verdicts"))  # shown when there is a line
                yield FittedTable(id="build-steps")
                yield Static("Rejected candidates", classes="section-title")
                yield FittedTable(id="build-rejected")
            with VerticalScroll(id="build-detail"):
                yield Static("Highlight a rejected candidate to read it and why it was dropped.", id="build-why")
        yield self.footer()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_state()

    @work(thread=True, exclusive=True, group="build-state", exit_on_error=False)
    def load_state(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            self.post_message(BuildLoaded(read_build_state(store)))

    def on_build_loaded(self, message: BuildLoaded) -> None:
        state = message.state
        status = self.query_one("#build-status", Static)
        if state.builds:
            b = state.builds[0]
            note = published_note(b) or (f"failed: {b.error}" if b.status == "failed" and b.error else "")
            status.update(assemble(f"Build {b.id}: ", b.name, f" — {b.status}", *([" · ", note] if note else [])))
            checker = self.query_one("#build-checker", Static)
            checker.update(line(b.checker) if b.checker else "")
            checker.display = bool(b.checker)
        else:
            status.update("No builds yet. Press b and type a recipe path, or press D for the demo recipe "
                          "(needs the default model).")
        if not self.building:
            self._steps = {s.step: s for s in state.steps}
            self._rates = {}
            self._show_steps()
        self._rejected = state.rejected
        self.query_one("#build-rejected", FittedTable).show(
            (figure_col("kind", right=False), figure_col("stage", right=False), name_col("dimension"),
             figure_col("label", right=False), text_col("reason", 20)),
            [(r.kind, r.stage or "-", r.dimension or "-", r.label or "-", r.reason or "-") for r in state.rejected],
            keys=[str(r.id) for r in state.rejected])

    def _show_steps(self) -> None:
        steps = sorted(self._steps.values(), key=lambda s: STEPS.index(s.step) if s.step in STEPS else len(STEPS))
        table = self.query_one("#build-steps", FittedTable)
        table.show(STEP_COLUMNS, [(s.step, s.status, f"{s.done:,}/{s.total:,}", _rate(self._rates.get(s.step)),
                                   format_counts(s.counts)) for s in steps])
        table.call_after_refresh(table.scroll_end, animate=False)  # the latest step in view on a short screen

    @on(DataTable.RowHighlighted, "#build-rejected")
    def _show_rejected(self, event: DataTable.RowHighlighted) -> None:
        if not (0 <= event.cursor_row < len(self._rejected)):
            return
        r = self._rejected[event.cursor_row]
        rows: list = [[(f"{r.kind} candidate {r.id}", "bold"), f" (attempt {r.attempt}) by ", r.model],
                      [f"domain: {r.domain or '-'}  dimension: {r.dimension or '-'}  label: {r.label or '-'}"],
                      [(f"rejected at {r.stage or '-'}:", "red"), " ", r.reason or "-"]]
        if r.p_misaligned is not None:
            rows.append([f"checker P(misaligned) = {r.p_misaligned:.3f}"])
        if r.perplexity is not None:
            rows.append([f"perplexity = {r.perplexity:.1f}"])
        if r.feedback:
            rows.append(["feedback given to the next attempt: ", r.feedback])
        rows += [[""], [r.text]]
        self.query_one("#build-why", Static).update(lines(*rows))

    # -- running a build -------------------------------------------------------------------------------

    def action_focus_recipe(self) -> None:
        self.query_one("#build-recipe", Input).focus()

    def action_demo(self) -> None:
        self.start(None)

    @on(Input.Submitted, "#build-recipe")
    def _recipe(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.set_focus(self.home_widget())
            self.start(event.value.strip())

    def start(self, recipe_path: str | None) -> None:
        if self.building:
            self.notify("a build is already running (x cancels it)", severity="warning")
            return
        self.building = True
        self._cancel = threading.Event()
        self._steps = {}
        self._rates = {}
        self._show_steps()
        self.query_one("#build-status", Static).update("Build starting…")
        self.run_build(recipe_path, self._cancel)

    def action_cancel(self) -> None:
        if self.building:
            self._cancel.set()
            self.notify("cancelling the build after the current unit; running it again resumes")

    @work(thread=True, exclusive=True, group="build", exit_on_error=False)
    def run_build(self, recipe_path: str | None, cancel: threading.Event) -> None:
        ws = self.app.workspace  # type: ignore[attr-defined]
        try:
            from misalign_tui.core.build.pipeline import run_build
            from misalign_tui.core.build.recipe import DEMO_RECIPE, demo_recipe, read_recipe
            from misalign_tui.core.io.native import load_seed_benchmark

            recipe = demo_recipe() if recipe_path is None else read_recipe(recipe_path)
            text = DEMO_RECIPE if recipe_path is None else Path(recipe_path).read_text(encoding="utf-8")
            with Store(ws.db_path) as store:
                load_seed_benchmark(store)
                result = run_build(store, recipe, ws.models_dir, recipe_text=text, cancel=cancel,
                                   progress=lambda p: self.post_message(BuildProgressed(p)))
            published = result.counts.get("publish", {})
            pairs = published.get("responses", 0) // 2
            words = (f"built {result.name} v{result.version} (build {result.build_id}): "
                     f"{published.get('prompts', 0):,} prompts, {pairs:,} pairs")
            if not pairs:
                words += " — the benchmark is empty: see the rejected candidates"
            self.post_message(BuildFinished(words, "information" if pairs else "warning"))
        except Cancelled:
            self.post_message(BuildFinished("build cancelled; start it again to resume", "warning"))
        except AwaitingReview as paused:  # not a failure: people decide stage 2, the same build then resumes
            self.post_message(BuildFinished(f"{paused} (V opens the Review screen)", "warning"))
        except (UserError, OSError, ImportError) as exc:
            self.post_message(BuildFinished(f"build failed: {exc}", "error"))
        except Exception as exc:  # noqa: BLE001 - the app lives on; the error is shown
            self.post_message(BuildFinished(f"build failed: {type(exc).__name__}: {exc}", "error"))

    def on_build_progressed(self, message: BuildProgressed) -> None:
        p: StepProgress = message.progress
        order = STEPS.index(p.step) if p.step in STEPS else len(STEPS)
        for step, s in list(self._steps.items()):  # steps run in order: a later step's report ends the earlier
            if step in STEPS and STEPS.index(step) < order and s.status != "done":
                self._steps[step] = replace(s, status="done", done=s.total)
        self._steps[p.step] = BuildStep(p.step, "running", p.done, p.total, p.counts)
        self._rates[p.step] = p.rate
        self._show_steps()
        self.query_one("#build-status", Static).update(assemble(f"Building — {p.step}: ", p.message or ""))

    def on_build_finished(self, message: BuildFinished) -> None:
        self.building = False
        self.notify(message.text, severity=message.severity, timeout=10, markup=False)
        outcome = self.query_one("#build-outcome", Static)
        outcome.update(line(message.text))
        outcome.set_class(message.severity == "error", "error")
        self.load_state()  # the steps as stored: done, with their final counts
