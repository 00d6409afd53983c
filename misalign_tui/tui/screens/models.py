"""The model registry: GGUF metadata, why a file is unusable, add a path, per-model settings, a load test."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Header, Input, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.models.registry import ModelInfo, lineage_order, register_file, update_model_settings
from misalign_tui.core.store import Store
from misalign_tui.core.views.workspace import parameters_label, quick_load_test, read_models, shown_path
from misalign_tui.core.workspace import Workspace
from misalign_tui.tui.messages import LoadTestDone, ModelsLoaded, WorkFailed
from misalign_tui.tui.plain import assemble, lines
from misalign_tui.tui.screens.base import AppScreen
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col


def _int_or_none(text: str, what: str, minimum: int) -> int | None:
    text = text.strip()
    if not text or text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a whole number (empty means auto)") from None
    if value < minimum:
        raise ValueError(f"{what}: must be at least {minimum}")
    return value


def describe(m: ModelInfo, workspace: Workspace, parent: str | None = None) -> Content:
    rows: list = [[(m.name, "bold"), "  (default)" if m.is_default else ""]]
    if not m.usable:
        rows.append([("unusable: ", "red"), m.error or "-"])
    fields = [
        ("path", shown_path(m.path, workspace)), ("url", m.url), ("architecture", m.architecture),
        ("parameters", f"{parameters_label(m.parameters)} ({m.parameters:,})" if m.parameters else None),
        ("quantization", m.quantization), ("context", f"{m.context_length:,}" if m.context_length else None),
        ("size", f"{m.size:,} bytes" if m.size else None), ("sha256", m.sha256),
        ("chat template", "yes" if m.chat_template else "none (plain completion)"),
        ("override", "none (plain)" if m.chat_template_override == "none" else
         ("custom" if m.chat_template_override else None)),
        ("bits per weight", None if m.bits_per_weight is None else f"{m.bits_per_weight:.2f}"),
        ("made from", None if not m.parent_sha256 else f"{parent or 'unregistered file'} ({m.parent_sha256[:12]})"),
        ("quantized to", None if not m.quantized_to else m.quantized_to
         + (" (requantized from an already quantized file)" if m.requantized else "")),
        ("quantizer", m.quantizer),
        ("GPU layers", "auto" if m.n_gpu_layers is None else m.n_gpu_layers),
        ("threads", "auto" if m.n_threads is None else m.n_threads),
    ]
    rows += [[(f"{k}: ", "dim"), str(v)] for k, v in fields if v is not None]
    return lines(*rows)


class ModelsScreen(AppScreen):
    HOME = "#models-table"
    BINDINGS = [("a", "focus_add", "Add path"), ("g", "reload", "Rescan"), ("c", "focus_settings", "GPU/threads"),
                ("l", "load_test", "Load test"), ("i", "default_model", "Default model")]

    def __init__(self) -> None:
        super().__init__()
        self._models: list[ModelInfo] = []
        self._names: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="models-body"):
            yield FittedTable(id="models-table")
            with VerticalScroll(id="model-side"):
                yield Static(id="model-detail")
                yield Static("c: GPU layers (-1 all, 0 CPU) and threads — Enter saves, empty = auto, Esc leaves",
                             classes="dim field-help")
                with Horizontal(id="model-settings"):
                    yield Input(placeholder="GPU layers", id="model-gpu-layers", compact=True)
                    yield Input(placeholder="threads", id="model-threads", compact=True)
                yield Static("l: load test (load the model, time prompt and generation)", id="model-load-test",
                             classes="dim")
        yield Input(placeholder="a: path to a .gguf file, then Enter (Esc leaves)", id="model-path", compact=True)
        yield self.footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_models()

    def action_focus_add(self) -> None:
        self.query_one("#model-path", Input).focus()

    @work(thread=True, exclusive=True, group="models", exit_on_error=False)
    def load_models(self) -> None:
        self.post_message(ModelsLoaded(read_models(self.app.workspace)))  # type: ignore[attr-defined]

    def on_models_loaded(self, message: ModelsLoaded) -> None:
        grouped = lineage_order(message.models)  # quantization variants under their parent
        self._models = [m for m, _ in grouped]
        self._names = {m.sha256: m.name for m in self._models if m.sha256}
        self.query_one("#models-table", FittedTable).show(
            (name_col("name"), figure_col("arch", right=False), figure_col("quant", right=False),
             figure_col("status", right=False)),
            [((" " * (depth - 1) + "└─" if depth else "") + m.name + (" *" if m.is_default else ""),
              m.architecture or "-", (m.quantization or "-") + ("†" if m.requantized else ""),
              "ok" if m.usable else "unusable") for m, depth in grouped],
            keys=[str(m.id) for m in self._models])
        self._show(self.query_one("#models-table", FittedTable).cursor_row or 0)
        if not self._models:
            self.query_one("#model-detail", Static).update(
                "No models yet. Press i to set up the default model (Gemma 3 270M, 253 MB), or a to type the path "
                "of a .gguf file.")

    def _show(self, index: int) -> None:
        if 0 <= index < len(self._models):
            m = self._models[index]
            self.query_one("#model-detail", Static).update(
                describe(m, self.app.workspace, self._names.get(m.parent_sha256 or "")))  # type: ignore[attr-defined]
            self.query_one("#model-gpu-layers", Input).value = "" if m.n_gpu_layers is None else str(m.n_gpu_layers)
            self.query_one("#model-threads", Input).value = "" if m.n_threads is None else str(m.n_threads)

    def current(self) -> ModelInfo | None:
        row = self.query_one("#models-table", FittedTable).cursor_row
        return self._models[row] if self._models and row is not None and row < len(self._models) else None

    def action_focus_settings(self) -> None:
        field = self.query_one("#model-gpu-layers", Input)
        field.focus()
        field.scroll_visible()

    @on(Input.Submitted, "#model-gpu-layers, #model-threads")
    def _save_settings(self, event: Input.Submitted) -> None:
        m = self.current()
        if m is None:
            return
        try:
            layers = _int_or_none(self.query_one("#model-gpu-layers", Input).value, "GPU layers", -1)
            threads = _int_or_none(self.query_one("#model-threads", Input).value, "threads", 1)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self.save_settings(m.id, layers, threads)

    @work(thread=True, group="models", exit_on_error=False)
    def save_settings(self, model_id: int, layers: int | None, threads: int | None) -> None:
        ws = self.app.workspace  # type: ignore[attr-defined]
        with Store(ws.db_path) as store:
            update_model_settings(store, model_id, {"n_gpu_layers": layers, "n_threads": threads})
        self.post_message(ModelsLoaded(read_models(ws, rescan=False)))
        self.app.call_from_thread(self.notify, "saved: GPU layers and threads")

    def action_default_model(self) -> None:
        self.notify("setting up the default model (Gemma 3 270M, 253 MB): assembling and checksumming…")
        self.default_model()

    @work(thread=True, exclusive=True, group="model-default", exit_on_error=False)
    def default_model(self) -> None:
        from misalign_tui.core.models.registry import ensure_default_model

        ws = self.app.workspace  # type: ignore[attr-defined]
        try:
            with Store(ws.db_path) as store:
                info = ensure_default_model(store, ws.models_dir)
        except UserError as exc:
            self.post_message(WorkFailed(str(exc)))
            return
        self.post_message(ModelsLoaded(read_models(ws, rescan=False)))
        self.app.call_from_thread(self.notify, f"default model ready: {info.name} — press r to profile it")

    def action_load_test(self) -> None:
        m = self.current()
        if m is None or not m.usable:
            self.notify("pick a usable model first", severity="warning")
            return
        result = self.query_one("#model-load-test", Static)
        result.update(assemble("loading ", m.name, "…"))
        result.scroll_visible()
        self.load_test(m.name)

    @work(thread=True, exclusive=True, group="model-load-test", exit_on_error=False)
    def load_test(self, name: str) -> None:
        try:
            self.post_message(LoadTestDone(name, quick_load_test(self.app.workspace, name)))  # type: ignore[attr-defined]
        except UserError as exc:
            self.post_message(LoadTestDone(name, str(exc), ok=False))

    def on_load_test_done(self, message: LoadTestDone) -> None:
        result = self.query_one("#model-load-test", Static)
        result.set_class(False, "dim")
        result.update(assemble(("load test: ", "bold"), message.text) if message.ok else
                      assemble(("load test failed: ", "red"), message.text))
        result.scroll_visible()

    @on(DataTable.RowHighlighted, "#models-table")
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

