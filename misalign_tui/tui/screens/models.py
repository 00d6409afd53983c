"""The model registry: GGUF metadata, why a file is unusable, add a path, per-model settings."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.models import ModelInfo, register_file
from misalign_tui.core.store import Store
from misalign_tui.tui.messages import ModelsLoaded, WorkFailed
from misalign_tui.tui.workspace_queries import read_models


def describe(m: ModelInfo) -> str:
    lines = [f"[b]{m.name}[/]" + ("  (default)" if m.is_default else "")]
    if not m.usable:
        lines.append(f"[red]unusable:[/] {m.error}")
    fields = [
        ("path", m.path), ("url", m.url), ("architecture", m.architecture),
        ("parameters", f"{m.parameters:,}" if m.parameters else None), ("quantization", m.quantization),
        ("context", m.context_length), ("size", f"{m.size:,} bytes" if m.size else None), ("sha256", m.sha256),
        ("chat template", "yes" if m.chat_template else "none (plain completion)"),
        ("override", "none (plain)" if m.chat_template_override == "none" else
         ("custom" if m.chat_template_override else None)),
        ("GPU layers", "auto" if m.n_gpu_layers is None else m.n_gpu_layers),
        ("threads", "auto" if m.n_threads is None else m.n_threads),
    ]
    lines += [f"{k}: {v}" for k, v in fields if v is not None]
    return "\n".join(lines)


class ModelsScreen(Screen[None]):
    BINDINGS = [("a", "focus_add", "Add path"), ("g", "reload", "Rescan")]

    def __init__(self) -> None:
        super().__init__()
        self._models: list[ModelInfo] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="models-body"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="model-side"):
                yield Static(id="model-detail")
        yield Input(placeholder="path to a .gguf file, then Enter", id="model-path")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("name", "arch", "quant", "status")
        self.action_reload()

    def action_reload(self) -> None:
        self.load_models()

    def action_focus_add(self) -> None:
        self.query_one("#model-path", Input).focus()

    @work(thread=True, exclusive=True, group="models", exit_on_error=False)
    def load_models(self) -> None:
        self.post_message(ModelsLoaded(read_models(self.app.workspace)))  # type: ignore[attr-defined]

    def on_models_loaded(self, message: ModelsLoaded) -> None:
        self._models = message.models
        table = self.query_one(DataTable)
        table.clear()
        for m in self._models:
            table.add_row(m.name + (" *" if m.is_default else ""), m.architecture or "-", m.quantization or "-",
                          "ok" if m.usable else "unusable", key=str(m.id))
        self._show(0)
        if not self._models:
            self.query_one("#model-detail", Static).update(
                "No models yet. Type a path below and press Enter, or run misalign-tui init for the default model.")

    def _show(self, index: int) -> None:
        if 0 <= index < len(self._models):
            self.query_one("#model-detail", Static).update(describe(self._models[index]))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    @on(Input.Submitted, "#model-path")
    def _add(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.add_model(event.value.strip())
            event.input.value = ""

    @work(thread=True, group="models", exit_on_error=False)
    def add_model(self, path: str) -> None:
        ws = self.app.workspace  # type: ignore[attr-defined]
        try:
            with Store(ws.db_path) as store:
                info = register_file(store, Path(path))
        except UserError as exc:
            self.post_message(WorkFailed(str(exc)))
            return
        if not info.usable:
            self.post_message(WorkFailed(f"{info.path}: added as unusable: {info.error}"))
        self.post_message(ModelsLoaded(read_models(ws, rescan=False)))

    def on_work_failed(self, message: WorkFailed) -> None:
        self.notify(message.text, severity="error", timeout=8)
