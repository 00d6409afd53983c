"""The workspace at a glance — benchmarks, models, recent runs — and the next useful action."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from misalign_tui.core.views.workspace import WorkspaceSummary, read_summary, with_verdicts
from misalign_tui.tui.messages import WorkspaceLoaded


def next_action(summary: WorkspaceSummary) -> str:
    if not summary.benchmarks:
        return "No benchmark yet — run [b]misalign-tui init[/] to load the seed benchmark, or import one."
    if not summary.models:
        return ("No models yet — press [b]m[/], then [b]i[/] to set up the default model (Gemma 3 270M, 253 MB), "
                "or [b]a[/] to add a GGUF file.")
    if not summary.runs:
        return ("No runs yet — press [b]r[/], pick a model (space) and press [b]Enter[/] in a field (or [b]ctrl+r[/]) to profile it on the seed "
                "benchmark (set a limit for a quick first look).")
    if any(r.status in ("running", "interrupted") for r in summary.runs):
        return "A run is unfinished — press [b]r[/] to watch or resume it."
    return "Press [b]e[/] to explore the trade-offs, [b]c[/] to compare models."


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def device(m) -> str:
    """Where the model runs, from its settings (models set --gpu-layers / the Models screen)."""
    if m.n_gpu_layers is None:
        return "auto"
    if m.n_gpu_layers == 0:
        return "CPU"
    return "GPU (all)" if m.n_gpu_layers < 0 else f"GPU ({m.n_gpu_layers} layers)"


class DashboardScreen(Screen[None]):
    BINDINGS = [("g", "reload", "Refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="dashboard"):
            yield Static(id="next-action", classes="callout")
            yield Static("Benchmarks", classes="section-title")
            yield DataTable(id="benchmarks", cursor_type="row", zebra_stripes=True)
            yield Static("Models", classes="section-title")
            yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
            yield Static("Recent runs", classes="section-title")
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            yield Static(id="judge-verdicts", classes="verdicts")
        yield Footer()

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
        fill_table(self.query_one("#benchmarks", DataTable), ("name", "version", "prompts", "responses", "hash"),
                   [(b.name, str(b.version), str(b.prompts), str(b.responses), (b.content_hash or "-")[:12])
                    for b in s.benchmarks])
        fill_table(self.query_one("#models", DataTable), ("name", "arch", "params", "quant", "size", "device", "status"),
                   [(m.name + (" *" if m.is_default else ""), m.architecture or "-",
                     f"{m.parameters / 1e6:,.0f}M" if m.parameters else "-", m.quantization or "-",
                     f"{m.size / 1e6:,.0f} MB" if m.size else "-", device(m),
                     "ok" if m.usable else f"unusable: {m.error}") for m in s.models])
        fill_table(self.query_one("#runs", DataTable),
                   ("id", "model", "benchmark", "method", "status", "progress", "headline", "trade-off"),
                   [(str(r.id), r.model, r.benchmark, r.method, r.status, f"{r.items_done}/{r.items_total}",
                     f"{r.headline_label} {_pct(r.headline)}" if r.headline_label else "-", "n/a" if r.trade_off_rate is None else _pct(r.trade_off_rate))
                    for r in s.runs])
        verdicts = [f"run {r.id} ({r.model}) judge: {r.judge_verdict}" for r in s.runs if r.judge_verdict]
        self.query_one("#judge-verdicts", Static).update(Text("\n".join(verdicts)))  # names are not markup


def fill_table(table: DataTable, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Replace a table's content, columns included: after a plain ``clear()`` wider rows left the header drawn
    at the old column widths (seen in a real terminal)."""
    table.clear(columns=True)
    table.add_columns(*columns)
    table.add_rows(rows)
