"""One prompt: its labels, both responses of each pair, every model's verdict, and what the model saw.

Every piece of text here comes from a benchmark or a model, so each is a plain ``Content`` block (never markup,
control characters shown): a prompt about "the interval [0, 1)" or holding an escape sequence reads as written.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Header, Static

from misalign_tui.core.store import Store
from misalign_tui.core.views.item import ItemVerdict, ItemView, read_item
from misalign_tui.tui.messages import ItemLoaded, WorkFailed
from misalign_tui.tui.plain import Part, assemble, plain
from misalign_tui.tui.screens.base import AppScreen

Block = tuple[str, list[Part]]  # (CSS class, the parts of one paragraph)


def _verdict(v: ItemVerdict) -> list[Part]:
    return [v.model, (f" (run {v.run_id}, {v.method}): ", "dim"), v.value]


def item_blocks(item: ItemView) -> list[Block]:
    """The item as paragraphs, each with the class that indents it (app.tcss): pair, response, verdict."""
    blocks: list[Block] = [
        ("item-title", [(item.key, "bold"), f"  type: {item.semantic_type or '-'}"]),
        ("item-meta", ["domains: ", ", ".join(f"{d}/{n}" for d, n in item.domains) or "-"]),
        ("item-prompt", [item.text]),
    ]
    by_id = {r[0]: r for r in item.responses}
    by_response: dict[int, list[ItemVerdict]] = {}
    by_pair: dict[int, list[ItemVerdict]] = {}
    for v in item.verdicts:
        if v.response_id is not None:
            by_response.setdefault(v.response_id, []).append(v)
        if v.pair_id is not None:
            by_pair.setdefault(v.pair_id, []).append(v)
    shown: set[int] = set()
    for pid, dim, a, m in item.pairs:
        blocks.append(("item-pair", [(f"Pair {pid}", "bold"), f" — {dim or 'untargeted'}"]))
        judged = False
        for rid in (a, m):
            r = by_id.get(rid)
            if r is None:
                continue
            shown.add(rid)
            blocks.append(("item-response", [(r[2], "green" if r[2] == "aligned" else "red"), ": ", r[3]]))
            for v in by_response.get(rid, []):
                blocks.append(("item-verdict", _verdict(v)))
                judged = True
        if by_pair.get(pid):
            blocks.append(("item-verdict", [("on the pair:", "dim")]))
            blocks += [("item-verdict", _verdict(v)) for v in by_pair[pid]]
            judged = True
        if not judged:
            blocks.append(("item-verdict", [("(no verdicts on this pair yet)", "dim")]))
    for rid, r in by_id.items():
        if rid not in shown:
            blocks.append(("item-response", [f"{r[2]} ({r[1] or 'untargeted'}): ", r[3]]))
            blocks += [("item-verdict", _verdict(v)) for v in by_response.get(rid, [])]
    if item.formatted:
        blocks.append(("item-pair", [("What the model saw", "bold"),
                                     " (run template, placeholders filled with the first response)"]))
        for name, text in item.formatted:
            blocks += [("item-meta", [(name, "dim")]), ("item-formatted", [text])]
    return blocks


class ItemScreen(AppScreen):
    HOME = "#item-body"
    BINDINGS = [Binding("escape,backspace", "back", "Back")]

    def __init__(self, prompt_id: int) -> None:
        super().__init__()
        self.prompt_id = prompt_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="item-body"):
            yield Static("loading…", id="item-loading")
        yield self.footer()

    def on_mount(self) -> None:
        self.load_item()

    def action_back(self) -> None:
        self.app.pop_screen()

    @work(thread=True, exclusive=True, group="item", exit_on_error=False)
    def load_item(self) -> None:
        try:
            with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
                self.post_message(ItemLoaded(read_item(store, self.prompt_id)))
        except LookupError as exc:
            self.post_message(WorkFailed(str(exc)))

    async def on_item_loaded(self, message: ItemLoaded) -> None:
        body = self.query_one("#item-body", VerticalScroll)
        await body.remove_children()
        await body.mount_all([Static(assemble(*parts), classes=cls) for cls, parts in item_blocks(message.item)])

    def on_work_failed(self, message: WorkFailed) -> None:
        self.query_one("#item-loading", Static).update(plain(message.text))

    def text(self) -> str:
        """The item as shown, one paragraph per line (for tests and the fuzz test)."""
        return "\n".join(str(s.render()) for s in self.query_one("#item-body").query(Static))
