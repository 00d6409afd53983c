"""Two or more models on the same items: per-dimension and per-type deltas, and where they disagree."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, SelectionList, Static

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.runs.catalog import runs_to_show
from misalign_tui.core.store import Store
from misalign_tui.core.views.compare import CompareData, read_compare
from misalign_tui.tui.messages import CompareLoaded, LadderLoaded
from misalign_tui.tui.widgets.ladder import LadderPanel


class CompareModelsLoaded(Message):
    def __init__(self, models: list[str]) -> None:
        super().__init__()
        self.models = models


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("D", "toggle_disagreements", "Disagreements only"),
        Binding("enter", "open_item", "Open item", show=False),
        Binding("o", "open_item", "Open item"),
        Binding("s", "save_session", "Save"),
        Binding("L", "toggle_ladder", "Ladder"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.disagreements_only = True
        self.data: CompareData | None = None
        self._requested: tuple[str, ...] = ()
        self._filling = False
        self.ladder_mode = False
        self._ladder_model: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-body"):
            with Vertical(id="compare-pick"):
                yield Static("Models (space)", classes="section-title")
                yield SelectionList[str](id="compare-models")
            with Vertical(id="compare-main"):
                yield Static(id="compare-status")
                yield DataTable(id="compare-deltas", cursor_type="row", zebra_stripes=True)
                yield Static(id="compare-disagree-title", classes="section-title")
                yield DataTable(id="compare-items", cursor_type="row", zebra_stripes=True)
                yield LadderPanel(id="compare-ladder")
        yield Footer()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_models()
        if self.ladder_mode:  # runs may have finished since: the ladder is read again
            self._show_ladder_of_highlighted()

    @work(thread=True, exclusive=True, group="compare-models", exit_on_error=False)
    def load_models(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            # every model with a run of any method; read_compare pairs judge runs, else preference runs
            self.post_message(CompareModelsLoaded(list(runs_to_show(store, methods=METHODS).by_model())))

    def on_compare_models_loaded(self, message: CompareModelsLoaded) -> None:
        sl = self.query_one("#compare-models", SelectionList)
        chosen = list(sl.selected)
        if [o.value for o in sl._options] == message.models and chosen:  # unchanged: keep the selection
            self.load_compare(chosen, self.disagreements_only)
            return
        pick = [m for m in chosen if m in message.models] or message.models[:2]
        self._filling = True
        sl.clear_options()
        sl.add_options([(m, m, m in pick) for m in message.models])
        self.call_after_refresh(setattr, self, "_filling", False)
        self.load_compare(pick, self.disagreements_only)

    def _picked(self, event: SelectionList.SelectedChanged) -> None:
        if self._filling:
            return
        self.load_compare(list(event.selection_list.selected), self.disagreements_only)

    def load_compare(self, models: list[str], disagreements_only: bool) -> None:
        self._requested = tuple(models)
        self._load_compare(tuple(models), disagreements_only)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load_compare(self, models: tuple[str, ...], disagreements_only: bool) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            data = read_compare(store, list(models), disagreements_only)
        data.request = (models, disagreements_only)
        self.post_message(CompareLoaded(data))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        data: CompareData = message.data  # type: ignore[assignment]
        if data.request != (self._requested, self.disagreements_only):
            return  # an older worker's answer; the latest request's is on its way
        self.data = data
        status = f"{' vs '.join(data.models) or 'no models'} · {data.items:,} items judged by all"
        self.query_one("#compare-status", Static).update(status + (f" · {data.note}" if data.note else ""))
        deltas = self.query_one("#compare-deltas", DataTable)
        deltas.clear(columns=True)
        first = data.models[0][:12] if data.models else "first"
        for label, width in (("group", 14), ("vs", 8), (first[:8], 6), ("other", 6), ("Δ", 6), ("n", 6),
                             ("paired test", 22)):
            deltas.add_column(label, width=width)
        for kind, group, other, values, delta, test, n in data.rows:
            deltas.add_row(f"{'dim' if kind == 'dimension' else kind} {group}", other[:8], *[_pct(v) for v in values],
                           "-" if delta is None else f"{100 * delta:+.1f}", f"{n:,}", test)
        title = "Items where they disagree" if self.disagreements_only else "All items"
        self.query_one("#compare-disagree-title", Static).update(
            f"{title} ({len(data.disagreements)} shown; D toggles, o opens)")
        items = self.query_one("#compare-items", DataTable)
        items.clear(columns=True)
        for label, width in (("prompt", 12), ("dimension", 10), ("label", 10)):
            items.add_column(label, width=width)
        for m in data.models:
            items.add_column(m[:12], width=max(6, len(m[:12])))
        for d in data.disagreements:
            items.add_row(d.prompt_key, d.dimension, d.label, *["right" if ok else "WRONG" for ok in d.verdicts],
                          key=f"{d.item_id}")

    def action_toggle_disagreements(self) -> None:
        self.disagreements_only = not self.disagreements_only
        self.load_compare(list(self.query_one("#compare-models", SelectionList).selected), self.disagreements_only)

    def action_open_item(self) -> None:
        items = self.query_one("#compare-items", DataTable)
        if self.data is None or not self.data.disagreements or items.cursor_row is None:
            self.notify("no item to open")
            return
        self.app.open_item(self.data.disagreements[items.cursor_row].prompt_id)  # type: ignore[attr-defined]

    def action_save_session(self) -> None:
        self.app.action_save_session()  # type: ignore[attr-defined]

    # -- ladder mode: one model's quantization variants (widgets/ladder.py) -------------------------------------

    def action_toggle_ladder(self) -> None:
        self.ladder_mode = not self.ladder_mode
        for wid in ("#compare-status", "#compare-deltas", "#compare-disagree-title", "#compare-items"):
            self.query_one(wid).display = not self.ladder_mode
        self.query_one(LadderPanel).set_class(self.ladder_mode, "-shown")
        if self.ladder_mode:
            self._show_ladder_of_highlighted()

    def _show_ladder_of_highlighted(self) -> None:
        sl = self.query_one("#compare-models", SelectionList)
        option = sl.get_option_at_index(sl.highlighted) if sl.highlighted is not None and sl.option_count else None
        model = str(option.value) if option is not None else (list(sl.selected) or [None])[0]
        if model is None:
            self.query_one(LadderPanel).failed("No model with runs yet: run one first (r).")
            return
        self._ladder_model = model
        self._load_ladder(model)

    @on(SelectionList.SelectionHighlighted, "#compare-models")
    def _ladder_follows_highlight(self) -> None:
        if self.ladder_mode:
            self._show_ladder_of_highlighted()

    @work(thread=True, exclusive=True, group="compare-ladder", exit_on_error=False)
    def _load_ladder(self, model: str) -> None:
        from misalign_tui.core.views.ladder import read_ladder

        try:
            with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
                self.post_message(LadderLoaded(model, read_ladder(store, model)))
        except UserError as exc:
            self.post_message(LadderLoaded(model, None, str(exc)))

    def on_ladder_loaded(self, message: LadderLoaded) -> None:
        if message.model != self._ladder_model:
            return  # an older worker's answer
        panel = self.query_one(LadderPanel)
        if message.ladder is None:
            panel.failed(message.error or "no ladder")
        else:
            panel.show(message.ladder)  # type: ignore[arg-type]
