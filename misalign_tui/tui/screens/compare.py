"""Two or more models on the same items: per-dimension and per-type deltas, and where they disagree; ``W``
switches to the languages view: the first chosen model's English items against their parallel items in each other
language (McNemar per language, Holm across them), and the items whose verdict changes with the language.

Models are lettered (A is the first, B… the others) so the value columns stay narrow whatever the names: the
status line says which letter is which model. The p-values and n are figures and are never cut.
"""

from __future__ import annotations

from string import ascii_uppercase

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Header, SelectionList, Static
from textual.widgets.selection_list import Selection

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store
from misalign_tui.core.text import shorten_all
from misalign_tui.core.views.compare import (
    CompareData,
    LanguagesData,
    compare_choices,
    read_compare,
    read_languages,
)
from misalign_tui.core.views.figures import pct
from misalign_tui.tui.messages import CompareLoaded, CompareModelsLoaded, LadderLoaded, LanguagesLoaded
from misalign_tui.tui.plain import assemble, lines
from misalign_tui.tui.screens.base import AppScreen
from misalign_tui.tui.widgets.ladder import LadderPanel
from misalign_tui.tui.widgets.tables import FittedTable, figure_col, name_col

PICK_NAME_WIDTH = 17  # the model list is 24 cells wide (app.tcss): a checkbox and a name


def letter(i: int) -> str:
    return ascii_uppercase[i] if i < len(ascii_uppercase) else f"M{i + 1}"


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


class CompareScreen(AppScreen):
    HOME = "#compare-items"
    BINDINGS = [
        Binding("D", "toggle_disagreements", "Disagreements only"),
        Binding("W", "toggle_languages", "Languages"),
        Binding("enter", "open_item", "Open item", show=False),
        Binding("o", "open_item", "Open item"),
        Binding("M", "focus_models", "Models"),
        Binding("s", "save_session", "Save"),
        Binding("L", "toggle_ladder", "Ladder"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.disagreements_only = True
        self.languages = False  # the languages view (W) instead of models against each other
        self.data: CompareData | None = None
        self.languages_data: LanguagesData | None = None
        self._requested: tuple[str, ...] = ()
        self._filling = False
        self.ladder_mode = False
        self._ladder_model: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-body"):
            with Vertical(id="compare-pick"):
                yield Static("Models (M, space)", classes="section-title")
                yield SelectionList[str](id="compare-models")
            with Vertical(id="compare-main"):
                yield Static(id="compare-status")
                yield FittedTable(id="compare-deltas")
                yield Static(id="compare-disagree-title", classes="section-title")
                yield FittedTable(id="compare-items")
                yield LadderPanel(id="compare-ladder")
        yield self.footer()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_models()
        if self.ladder_mode:  # runs may have finished since: the ladder is read again
            self._show_ladder_of_highlighted()

    def action_focus_models(self) -> None:
        self.query_one("#compare-models", SelectionList).focus()

    @work(thread=True, exclusive=True, group="compare-models", exit_on_error=False)
    def load_models(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            # every model with a run of any method; read_compare pairs judge runs, else preference runs
            self.post_message(CompareModelsLoaded(*compare_choices(store)))

    def selected_models(self) -> list[str]:
        return list(self.query_one("#compare-models", SelectionList).selected)

    def on_compare_models_loaded(self, message: CompareModelsLoaded) -> None:
        sl = self.query_one("#compare-models", SelectionList)
        chosen = list(sl.selected)
        if [o.value for o in sl._options] == message.models and chosen:  # unchanged: keep the selection
            self.load_compare(chosen, self.disagreements_only)
            return
        pick = [m for m in chosen if m in message.models] or message.pick
        self._filling = True
        sl.clear_options()
        # beside the tables the list is 24 cells wide; on a narrow screen it spans the width above them
        width = PICK_NAME_WIDTH if self.app.size.width >= 100 else max(PICK_NAME_WIDTH, self.app.size.width - 8)
        shown = shorten_all(message.models, width)
        sl.add_options([Selection(assemble(s), m, m in pick) for s, m in zip(shown, message.models, strict=True)])
        self.call_after_refresh(setattr, self, "_filling", False)
        self.load_compare(pick, self.disagreements_only)

    @on(SelectionList.SelectedChanged)
    def _picked(self, event: SelectionList.SelectedChanged) -> None:
        if self._filling:
            return
        self.load_compare(list(event.selection_list.selected), self.disagreements_only)

    def load_compare(self, models: list[str], disagreements_only: bool) -> None:
        self._requested = tuple(models)
        if self.languages:
            # the chosen models first, then the others: the view shows the first with parallel items scored
            listed = [o.value for o in self.query_one("#compare-models", SelectionList)._options]
            self._load_languages(tuple(dict.fromkeys([*models, *listed])))
        else:
            self._load_compare(tuple(models), disagreements_only)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load_languages(self, models: tuple[str, ...]) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            data = read_languages(store, list(models))
        data.request = models
        self.post_message(LanguagesLoaded(data))

    def on_languages_loaded(self, message: LanguagesLoaded) -> None:
        data = message.data
        if not self.languages or data.request[:len(self._requested)] != self._requested:
            return  # an older answer, or the view was switched back
        self.languages_data = data
        res = data.result
        status: list = [[("languages of ", "bold"), data.model or "no model with parallel items scored"]]
        if data.run_id is not None:
            status.append([f"run {data.run_id} on {data.benchmark}"])
        if res is not None and res.rows:
            status.append([(f"{res.metric}: each English item against its parallel item (n = paired {res.unit}); "
                            "p: McNemar's exact test on the items that change, Holm across languages", "dim")])
        elif data.note:
            status.append([(data.note, "dim")])
        self.query_one("#compare-status", Static).update(lines(*status))
        rows = res.rows if res is not None else []
        self.query_one("#compare-deltas", FittedTable).show(
            (name_col("lang", 4), figure_col("EN %"), figure_col("here %"), figure_col("Δ"), figure_col("n"),
             figure_col("EN only"), figure_col("here only"), figure_col("p"), figure_col("Holm p"),
             name_col("change", 5)),
            [(r.language, pct(r.english_accuracy), pct(r.accuracy),
              "-" if r.accuracy is None or r.english_accuracy is None else
              f"{100 * (r.accuracy - r.english_accuracy):+.1f}", f"{r.n:,}", f"{r.english_only:,}",
              f"{r.language_only:,}", _p(r.p_value), _p(r.p_holm),
              {"english": "worse", "language": "better"}.get(r.verdict or "", "-")) for r in rows])
        flips = res.flips if res is not None else []
        self.query_one("#compare-disagree-title", Static).update(
            f"Items whose verdict changes with the language ({len(flips):,}; W: models view, o opens)")
        self.query_one("#compare-items", FittedTable).show(
            (name_col("lang", 4), name_col("item", 8), name_col("dimension", 6), figure_col("EN", right=False),
             figure_col("here", right=False)),
            [(f.language, f.item, f.dimension, *(Text("right", style="green") if ok else
                                                  Text("WRONG", style="bold red")
                                                  for ok in (f.english_right, not f.english_right)))
             for f in flips], keys=[str(i) for i in range(len(flips))])

    def action_toggle_languages(self) -> None:
        self.languages = not self.languages
        self.load_compare(self.selected_models(), self.disagreements_only)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load_compare(self, models: tuple[str, ...], disagreements_only: bool) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            data = read_compare(store, list(models), disagreements_only)
        data.request = (models, disagreements_only)
        self.post_message(CompareLoaded(data))

    def on_compare_loaded(self, message: CompareLoaded) -> None:
        data = message.data
        if self.languages or data.request != (self._requested, self.disagreements_only):
            return  # an older worker's answer; the latest request's is on its way
        self.data = data
        letters = {m: letter(i) for i, m in enumerate(data.models)}
        status: list = [[(f"{letters[m]} = ", "bold"), m] for m in data.models] or [["no models"]]
        status.append([f"{data.items:,} items judged by all"])
        if data.note:
            status.append([(data.note, "dim")])
        self.query_one("#compare-status", Static).update(lines(*status))
        several = len(data.models) > 2
        best = any(r.better for r in data.rows)
        self.query_one("#compare-deltas", FittedTable).show(
            (name_col("group", 8), *((figure_col("B is", right=False),) if several else ()), figure_col("A %"),
             figure_col("B %"), figure_col("Δ"), figure_col("n"), figure_col("p"), figure_col("Holm p"),
             *((name_col("better", 4),) if best else ())),
            [(f"{'dim' if r.kind == 'dimension' else r.kind} {r.group}", *((letters[r.other],) if several else ()),
              pct(r.value_a), pct(r.value_b), "-" if r.delta is None else f"{100 * r.delta:+.1f}", f"{r.n:,}",
              _p(r.p), _p(r.p_holm), *((r.better or "-",) if best else ())) for r in data.rows])
        title = "Items where they disagree" if self.disagreements_only else "All items"
        self.query_one("#compare-disagree-title", Static).update(
            f"{title} ({len(data.disagreements):,} shown; D toggles, o opens)")
        self.query_one("#compare-items", FittedTable).show(
            (name_col("prompt", 8), name_col("dimension", 6), figure_col("label", right=False),
             *(figure_col(letters[m], right=False) for m in data.models)),
            [(d.prompt_key, d.dimension, d.label,
              *(Text("right", style="green") if ok else Text("WRONG", style="bold red") for ok in d.verdicts))
             for d in data.disagreements], keys=[str(d.item_id) for d in data.disagreements])

    def action_toggle_disagreements(self) -> None:
        self.disagreements_only = not self.disagreements_only
        self.load_compare(self.selected_models(), self.disagreements_only)

    def action_open_item(self) -> None:
        items = self.query_one("#compare-items", FittedTable)
        if self.languages:
            flips = self.languages_data.result.flips if self.languages_data and self.languages_data.result else []
            if not flips or items.cursor_row is None or items.cursor_row >= len(flips):
                self.notify("no item to open")
                return
            self.app.open_item(flips[items.cursor_row].item_prompt_id)  # type: ignore[attr-defined]
            return
        if self.data is None or not self.data.disagreements or items.cursor_row is None or \
                items.cursor_row >= len(self.data.disagreements):
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
        # the ladder follows the highlighted model: the list takes focus (the items table is hidden)
        self.query_one("#compare-models" if self.ladder_mode else "#compare-items").focus()
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
            panel.show(message.ladder)
