"""One prompt: its labels, both responses of each pair, every model's verdict with its explanation, and what the
model saw.

Explanations (core/views/explain.py): a preference verdict shows both responses with each token shaded by its
log-probability (stored with the run) and the tokens that moved the margin most; ``x`` explains every judge verdict
on the screen — P(misaligned) with each sentence left out, one batched pass per verdict through the run's model, in
a worker (leaving the screen cancels it) — and shades each sentence by how much it raises or lowers P(misaligned).

Every piece of text here comes from a benchmark or a model, so each is a plain ``Content`` block (never markup,
control characters shown): a prompt about "the interval [0, 1)" or holding an escape sequence reads as written.
"""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Header, Static

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.backend import Backend
from misalign_tui.core.store import Store, run_info
from misalign_tui.core.views.explain import (
    JudgeExplanation,
    PreferenceExplanation,
    ResponseTokens,
    effect_level,
    explain_judge,
    logprob_level,
    open_run_backend,
)
from misalign_tui.core.views.item import ItemVerdict, ItemView, read_item
from misalign_tui.tui.messages import ExplainStatus, ExplanationReady, ItemLoaded, WorkFailed
from misalign_tui.tui.plain import Part, assemble, line, plain
from misalign_tui.tui.screens.base import AppScreen

Block = tuple[str, list[Part]]  # (CSS class, the parts of one paragraph)
TOP_SHOWN = 3  # sentences / tokens listed each way on the screen

# token log-probability levels 0 (expected) … 4 (very surprising); sentence effect levels −3 (lowers) … 3 (raises)
LOGPROB_STYLES = ("", "on $warning 20%", "on $warning 45%", "on $error 45%", "bold on $error 80%")
EFFECT_STYLES = {-3: "bold on $success 70%", -2: "on $success 40%", -1: "on $success 15%", 0: "",
                 1: "on $error 15%", 2: "on $error 40%", 3: "bold on $error 70%"}


def _verdict(v: ItemVerdict) -> list[Part]:
    return [v.model, (f" (run {v.run_id}, {v.method}): ", "dim"), v.value]


def _shaded_tokens(r: ResponseTokens) -> list[Part]:
    parts: list[Part] = [(t.text, LOGPROB_STYLES[logprob_level(t.logprob)]) for t in r.tokens if t.text]
    tail = r.text[r.tokens[-1].end:] if r.tokens else r.text
    return parts + ([tail] if tail else [])


def _quoted(text: str) -> Content:
    return assemble("“", line(text), "”")


def preference_blocks(e: PreferenceExplanation) -> list[Block]:
    """Both responses shaded by token log-probability, then the tokens that moved the margin most each way."""
    blocks: list[Block] = [("item-verdict", [(f"tokens, run {e.run_id} ({e.model}): darker = less expected by the "
                                              f"model; margin {e.margin:+.3f} nats/token", "dim")])]
    for r in (e.aligned, e.misaligned):
        blocks.append(("item-tokens", [(f"{r.label} (mean {r.mean:.2f}): ", "dim"), *_shaded_tokens(r)]))
    for direction in ("aligned", "misaligned"):
        top = e.toward(direction, TOP_SHOWN)
        parts: list[Part] = [(f"most toward {direction}: ", "dim")]
        for i, (label, t) in enumerate(top):
            parts += [*(["  "] if i else []), _quoted(t.label), (f" {t.contribution:+.3f} in {label}", "dim")]
        blocks.append(("item-verdict", parts if top else [*parts, ("none", "dim")]))
    return blocks


def judge_blocks(e: JudgeExplanation) -> list[Block]:
    """The response shaded sentence by sentence (red raises P(misaligned), green lowers it), then the strongest."""
    blocks: list[Block] = [("item-verdict", [(
        f"explained (run {e.run_id}): P(misaligned) {e.p_full:.3f} in this pass, {e.p_stored:.3f} in the run; "
        f"{len(e.sentences)} sentence(s), {e.requests} requests in one pass", "dim")])]
    parts: list[Part] = []
    for s in e.sentences:
        parts += [(s.text, EFFECT_STYLES[effect_level(s.effect)]), " "]
    blocks.append(("item-tokens", parts or [("(no sentences)", "dim")]))
    for word, rows in (("raises", e.raising(TOP_SHOWN)), ("lowers", e.lowering(TOP_SHOWN))):
        for s in rows:
            blocks.append(("item-verdict", [(f"{word} {s.effect:+.3f}: ", "dim"), _quoted(s.text)]))
    return blocks


def item_blocks(item: ItemView, explained: dict[tuple[int, int], JudgeExplanation] | None = None) -> list[Block]:
    """The item as paragraphs, each with the class that indents it (app.tcss): pair, response, verdict."""
    explained = explained or {}
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
                if (v.run_id, rid) in explained:
                    blocks += judge_blocks(explained[(v.run_id, rid)])
                judged = True
        if by_pair.get(pid):
            blocks.append(("item-verdict", [("on the pair:", "dim")]))
            for v in by_pair[pid]:
                blocks.append(("item-verdict", _verdict(v)))
                if (v.run_id, pid) in item.preferences:
                    blocks += preference_blocks(item.preferences[(v.run_id, pid)])
            judged = True
        if not judged:
            blocks.append(("item-verdict", [("(no verdicts on this pair yet)", "dim")]))
    for rid, r in by_id.items():
        if rid not in shown:
            blocks.append(("item-response", [f"{r[2]} ({r[1] or 'untargeted'}): ", r[3]]))
            for v in by_response.get(rid, []):
                blocks.append(("item-verdict", _verdict(v)))
                if (v.run_id, rid) in explained:
                    blocks += judge_blocks(explained[(v.run_id, rid)])
    if item.formatted:
        blocks.append(("item-pair", [("What the model saw", "bold"),
                                     " (run template, placeholders filled with the first response)"]))
        for name, text in item.formatted:
            blocks += [("item-meta", [(name, "dim")]), ("item-formatted", [text])]
    return blocks


class ItemScreen(AppScreen):
    HOME = "#item-body"
    BINDINGS = [Binding("escape,backspace", "back", "Back"),
                Binding("x", "explain", "Explain")]

    def __init__(self, prompt_id: int) -> None:
        super().__init__()
        self.prompt_id = prompt_id
        self.item: ItemView | None = None
        self.explained: dict[tuple[int, int], JudgeExplanation] = {}
        self.explain_status = ""
        self.cancel_explain = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="item-status")
        with VerticalScroll(id="item-body"):
            yield Static("loading…", id="item-loading")
        yield self.footer()

    def on_mount(self) -> None:
        self.load_item()

    def action_back(self) -> None:
        self.cancel_explain.set()
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self.cancel_explain.set()

    def action_explain(self) -> None:
        if self.item is None:
            return
        todo = [t for t in self.item.judge_verdicts() if t not in self.explained]
        if not todo:
            self._status("no judge verdicts to explain on this item" if not self.item.judge_verdicts()
                         else "every judge verdict here is explained")
            return
        self.cancel_explain = threading.Event()
        self.explain_verdicts(todo, self.cancel_explain)

    @work(thread=True, exclusive=True, group="explain", exit_on_error=False)
    def explain_verdicts(self, todo: list[tuple[int, int]], cancel: threading.Event) -> None:
        """One backend per run (its model loaded once), one batched pass per verdict; results as they come. A run
        that cannot be explained (its model gone) is named at the end; the other runs' verdicts still are."""
        backends: dict[int, Backend] = {}
        failed: dict[int, str] = {}
        done = 0
        try:
            with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
                for i, (run_id, response_id) in enumerate(todo):
                    if cancel.is_set():
                        return
                    if run_id in failed:
                        continue
                    try:
                        run = run_info(store, run_id)
                        self.post_message(ExplainStatus(f"explaining {i + 1}/{len(todo)}: run {run_id} "
                                                        f"({run.model}), response {response_id}…"))
                        if run_id not in backends:
                            backends[run_id] = open_run_backend(store, run)
                        e = explain_judge(store, run, response_id, backends[run_id], cancel)
                    except UserError as exc:
                        failed[run_id] = str(exc)
                        continue
                    except Cancelled:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a failure is a line on the screen, never a crash
                        failed[run_id] = f"{type(exc).__name__}: {exc}"
                        continue
                    done += 1
                    self.post_message(ExplanationReady(e))
            said = [f"explained {done} judge verdict(s); red raises P(misaligned), green lowers it"] if done else []
            said += [f"cannot explain run {r}: {why}" for r, why in failed.items()]
            self.post_message(ExplainStatus("; ".join(said)))
        except Cancelled:
            return
        finally:
            for b in backends.values():
                b.close()

    def _status(self, text: str) -> None:
        self.explain_status = text
        self.query_one("#item-status", Static).update(line(text))

    def on_explain_status(self, message: ExplainStatus) -> None:
        self._status(message.text)

    async def on_explanation_ready(self, message: ExplanationReady) -> None:
        e = message.explanation
        self.explained[(e.run_id, e.response_id)] = e
        await self._render_item()

    @work(thread=True, exclusive=True, group="item", exit_on_error=False)
    def load_item(self) -> None:
        try:
            with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
                self.post_message(ItemLoaded(read_item(store, self.prompt_id)))
        except LookupError as exc:
            self.post_message(WorkFailed(str(exc)))

    async def on_item_loaded(self, message: ItemLoaded) -> None:
        self.item = message.item
        if self.item.judge_verdicts():
            self._status("x explains each judge verdict, sentence by sentence")
        await self._render_item()

    async def _render_item(self) -> None:
        if self.item is None:
            return
        body = self.query_one("#item-body", VerticalScroll)
        scroll = body.scroll_y
        await body.remove_children()
        await body.mount_all([Static(assemble(*parts), classes=cls)
                              for cls, parts in item_blocks(self.item, self.explained)])
        body.scroll_to(y=scroll, animate=False)

    def on_work_failed(self, message: WorkFailed) -> None:
        self.query_one("#item-loading", Static).update(plain(message.text))

    def text(self) -> str:
        """The item as shown, one paragraph per line (for tests and the fuzz test)."""
        return "\n".join(str(s.render()) for s in self.query_one("#item-body").query(Static))
