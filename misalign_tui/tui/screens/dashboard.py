"""The workspace at a glance — benchmarks, models, recent runs — and the next useful action."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Header, Static

from misalign_tui.core.views.figures import figure
from misalign_tui.core.views.workspace import (
    WorkspaceSummary,
    device_label,
    parameters_label,
    read_summary,
    size_label,
    with_verdicts,
)
from misalign_tui.tui.messages import WorkspaceLoaded
from misalign_tui.tui.plain import assemble, lines
from misalign_tui.tui.screens.base import AppScreen, hidden
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col, text_col


def _key(k: str) -> tuple[str, str]:
    return (k, "bold")


def next_action(summary: WorkspaceSummary) -> Content:
    if not any(not b.empty for b in summary.benchmarks):
        return assemble("No benchmark with pairs yet — run ", _key("misalign-tui init"),
                        " to load the seed benchmark, or import one.")
    if not summary.models:
        return assemble("No models yet — press ", _key("m"), ", then ", _key("i"),
                        " to set up the default model (Gemma 3 270M, 253 MB), or ", _key("a"), " to add a GGUF file.")
    if not summary.runs:
        return assemble("No runs yet — press ", _key("r"), ", pick a model (space) and press ", _key("ctrl+r"),
                        " to profile it on the seed benchmark (set a limit for a quick first look).")
    if any(r.status in ("running", "interrupted") for r in summary.runs):
        return assemble("A run is unfinished — press ", _key("r"), " to watch or resume it.")
    return assemble("Press ", _key("e"), " to explore the trade-offs, ", _key("c"), " to compare models.")


class DashboardScreen(AppScreen):
    HOME = "#runs"
    BINDINGS = [("g", "reload", "Refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="dashboard"):
            yield Static(id="next-action", classes="callout")
            yield Static("Recent runs", id="runs-title", classes="section-title")
            yield FittedTable(id="runs")
            yield hidden(Static(id="judge-verdicts", classes="verdicts"))  # shown when there is a line
            yield Static(assemble("Models", ("  (* the default model)", "dim")), classes="section-title")
            yield FittedTable(id="models")
            yield Static("Benchmarks", classes="section-title")
            yield FittedTable(id="benchmarks")
        yield self.footer()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_summary()

    @work(thread=True, exclusive=True, group="dashboard", exit_on_error=False)
    def load_summary(self) -> None:
        # first the lists (fast), then the same with each recent run's headline figures from core.metrics,
        ws = self.app.workspace  # type: ignore[attr-defined]
        self.post_message(WorkspaceLoaded(read_summary(ws, headline_runs=0)))
        summary = read_summary(ws)
        self.post_message(WorkspaceLoaded(summary))
        self.post_message(WorkspaceLoaded(with_verdicts(ws, summary)))  # then how good each judge is

    def on_workspace_loaded(self, message: WorkspaceLoaded) -> None:
        s = message.summary
        self.query_one("#next-action", Static).update(next_action(s))
        self.query_one("#benchmarks", FittedTable).show(
            (name_col("name"), figure_col("version"), figure_col("prompts"), figure_col("responses"),
             figure_col("pairs"), figure_col("hash", right=False)),
            [(b.info.name, str(b.info.version), f"{b.info.prompts:,}", f"{b.info.responses:,}",
              "0 (empty)" if b.empty else f"{b.pairs:,}", (b.info.content_hash or "-")[:12]) for b in s.benchmarks])
        self.query_one("#models", FittedTable).show(
            (name_col("name"), figure_col("arch", right=False), figure_col("params"),
             figure_col("quant", right=False), figure_col("size"), figure_col("device", right=False),
             text_col("status", 10)),
            [(m.name + (" *" if m.is_default else ""), m.architecture or "-", parameters_label(m.parameters),
              m.quantization or "-", size_label(m.size), device_label(m),
              "ok" if m.usable else f"unusable: {m.error}") for m in s.models])
        benchmarks = {r.benchmark for r in s.runs}
        one_benchmark = len(benchmarks) == 1
        title = "Recent runs" + (f" on {next(iter(benchmarks))}" if one_benchmark else "")
        self.query_one("#runs-title", Static).update(assemble(title))
        columns = [figure_col("id"), name_col("model"), *(() if one_benchmark else (name_col("benchmark"),)),
                   figure_col("method", right=False), figure_col("status", right=False),
                   text_col("headline"), text_col("trade-off rate", 10)]
        rows = []
        for r in s.runs:
            headline = figure(r.headline_label, r.headline, r.headline_ci, r.headline_n) if r.headline_label else "-"
            trade = "-" if r.items_done == 0 or not r.headline_label else \
                "n/a" if r.trade_off_rate is None else figure("", r.trade_off_rate, r.trade_off_ci, r.trade_off_n)
            status = r.status if r.status == "complete" else f"{r.status} {r.items_done:,}/{r.items_total:,}"
            rows.append((str(r.id), r.model, *(() if one_benchmark else (r.benchmark,)), r.method, status, headline,
                         trade))
        self.query_one("#runs", FittedTable).show(columns, rows)
        verdicts = [[f"run {r.id} (", r.model, f") judge: {r.judge_verdict}" + (f"; {r.judge_figures}" if r.judge_figures else "")]
                    for r in s.runs if r.judge_verdict]
        shown = self.query_one("#judge-verdicts", Static)
        shown.update(lines(*verdicts) if verdicts else "")
        shown.display = bool(verdicts)  # no blank line where there is nothing to say
