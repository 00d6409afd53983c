"""One prompt: its labels, both responses of each pair, every model's verdict, and what the model saw."""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from misalign_tui.core.store import Store
from misalign_tui.core.views.item import ItemView, read_item
from misalign_tui.tui.messages import ItemLoaded, WorkFailed


def render_item(item: ItemView) -> str:
    e = escape
    out = [f"[b]{e(item.key)}[/]  type: {item.semantic_type or '-'}",
           "domains: " + ", ".join(f"{d}/{e(n)}" for d, n in item.domains), "", e(item.text), ""]
    by_id = {r[0]: r for r in item.responses}
    verdicts_by_response: dict[int, list[str]] = {}
    verdicts_by_pair: dict[int, list[str]] = {}
    for v in item.verdicts:
        line = f"    {e(v.model)} (run {v.run_id}, {v.method}): {v.value}"
        if v.response_id is not None:
            verdicts_by_response.setdefault(v.response_id, []).append(line)
        if v.pair_id is not None:
            verdicts_by_pair.setdefault(v.pair_id, []).append(line)
    shown: set[int] = set()
    for pid, dim, a, m in item.pairs:
        out.append(f"[b]Pair {pid}[/] — {dim or 'untargeted'}")
        for rid in (a, m):
            r = by_id.get(rid)
            if r is None:
                continue
            shown.add(rid)
            colour = "green" if r[2] == "aligned" else "red"
            out.append(f"  [{colour}]{r[2]}[/]: {e(r[3])}")
            out += verdicts_by_response.get(rid, ["    (no verdicts yet)"])
        out += verdicts_by_pair.get(pid, [])
        out.append("")
    for rid, r in by_id.items():
        if rid not in shown:
            out.append(f"  {r[2]} ({r[1] or 'untargeted'}): {e(r[3])}")
            out += verdicts_by_response.get(rid, [])
    if item.formatted:
        out += ["", "[b]What the model saw[/] (run template, placeholders filled with the first response)"]
        for name, text in item.formatted:
            out += [f"[dim]{e(name)}[/]", e(text), ""]
    return "\n".join(out)


class ItemScreen(Screen[None]):
    BINDINGS = [("escape,backspace", "app.pop_screen", "Back")]

    def __init__(self, prompt_id: int) -> None:
        super().__init__()
        self.prompt_id = prompt_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="item-body"):
            yield Static("loading…", id="item-text")
        yield Footer()

    def on_mount(self) -> None:
        self.load_item()

    @work(thread=True, exclusive=True, group="item", exit_on_error=False)
    def load_item(self) -> None:
        try:
            with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
                self.post_message(ItemLoaded(read_item(store, self.prompt_id)))
        except LookupError as exc:
            self.post_message(WorkFailed(str(exc)))

    def on_item_loaded(self, message: ItemLoaded) -> None:
        self.query_one("#item-text", Static).update(render_item(message.item))  # type: ignore[arg-type]

    def on_work_failed(self, message: WorkFailed) -> None:
        self.query_one("#item-text", Static).update(message.text)
