"""Build a benchmark from a recipe: each step's counts and rejections live, rejected candidates with reasons."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from misalign_tui.core.build.checker import measurement_line
from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.store import Store
from misalign_tui.tui.messages import BuildFinished, BuildLoaded, BuildProgressed

STEPS = ("seed", "classify", "expand", "dedup", "pairs", "publish")


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items())) or "-"


def read_build_state(store: Store, build_id: int | None = None, limit: int = 300) -> tuple[list, list, list]:
    """(builds, steps of the chosen build (latest by default), its rejected candidates)."""
    c = store.conn
    builds = [(*tuple(r)[:4], measurement_line(json.loads(r[4]) if r[4] else None)) for r in c.execute(
        "SELECT id, name, status, started_at, checker_json FROM build_runs ORDER BY id DESC LIMIT 20")
    ] if _has(c, "build_runs") else []
    if not builds:
        return [], [], []
    bid = build_id or builds[0][0]
    steps = [(r["step"], r["status"], r["items_done"], r["items_total"], json.loads(r["counts_json"] or "{}"))
             for r in c.execute("SELECT * FROM build_steps WHERE build_id = ?", (bid,))]
    steps.sort(key=lambda s: STEPS.index(s[0]) if s[0] in STEPS else 99)
    rejected = [tuple(r) for r in c.execute(
        "SELECT id, kind, stage, coalesce(domain, ''), coalesce(dimension, ''), label, model, reason, text, "
        "coalesce(feedback, ''), attempt, p_misaligned, perplexity FROM build_candidates "
        "WHERE build_id = ? AND status = 'rejected' ORDER BY id LIMIT ?", (bid, limit))]
    return builds, steps, rejected


def _has(conn, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None


class BuildScreen(Screen[None]):
    BINDINGS = [
        Binding("b", "focus_recipe", "Recipe"),
        Binding("D", "demo", "Demo build"),
        Binding("x", "cancel", "Cancel build"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._cancel = threading.Event()
        self._rejected: list[tuple] = []
        self.building = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="recipe TOML path, then Enter (D runs the small demo recipe)", id="build-recipe",
                    compact=True)
        with Horizontal(id="build-body"):
            with Vertical(id="build-left"):
                yield Static(id="build-status", classes="section-title")
                yield Static(id="build-checker", classes="verdicts")
                yield DataTable(id="build-steps", cursor_type="row", zebra_stripes=True)
                yield Static("Rejected candidates", classes="section-title")
                yield DataTable(id="build-rejected", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="build-detail"):
                yield Static("Highlight a rejected candidate to read it and why it was dropped.", id="build-why")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#build-steps", DataTable).add_columns("step", "status", "done", "rate", "counts")
        self.query_one("#build-rejected", DataTable).add_columns("kind", "stage", "dimension", "label", "reason")

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load_state()

    @work(thread=True, exclusive=True, group="build-state", exit_on_error=False)
    def load_state(self) -> None:
        with Store(self.app.workspace.db_path) as store:  # type: ignore[attr-defined]
            self.post_message(BuildLoaded(*read_build_state(store)))

    def on_build_loaded(self, message: BuildLoaded) -> None:
        if message.builds:
            bid, name, status, created, checker = message.builds[0]
            self.query_one("#build-status", Static).update(f"Build {bid}: {name} — {status}")
            self.query_one("#build-checker", Static).update(Text(checker))  # the model's name is not markup
        else:
            self.query_one("#build-status", Static).update(
                "No builds yet. Type a recipe path above, or press D for the demo recipe (needs the default model).")
        steps = self.query_one("#build-steps", DataTable)
        if not self.building:
            steps.clear()
            for step, status, done, total, counts in message.steps:
                steps.add_row(step, status, f"{done}/{total}", "-", _counts(counts), key=step)
        self._rejected = message.rejected
        table = self.query_one("#build-rejected", DataTable)
        table.clear()
        for r in message.rejected:
            table.add_row(r[1], r[2] or "-", r[4] or "-", r[5] or "-", (r[7] or "-")[:60], key=str(r[0]))

    @on(DataTable.RowHighlighted, "#build-rejected")
    def _show_rejected(self, event: DataTable.RowHighlighted) -> None:
        if not (0 <= event.cursor_row < len(self._rejected)):
            return
        (cid, kind, stage, domain, dim, label, model, reason, text, feedback, attempt, p_mis,
         ppl) = self._rejected[event.cursor_row]
        lines = [f"[b]{kind} candidate {cid}[/] (attempt {attempt}) by {escape(model)}",
                 f"domain: {escape(domain) or '-'}  dimension: {dim or '-'}  label: {label or '-'}",
                 f"[red]rejected at {stage or '-'}:[/] {escape(reason or '-')}"]
        if p_mis is not None:
            lines.append(f"checker P(misaligned) = {p_mis:.3f}")
        if ppl is not None:
            lines.append(f"perplexity = {ppl:.1f}")
        if feedback:
            lines.append(f"feedback given to the next attempt: {escape(feedback)}")
        lines += ["", escape(text)]
        self.query_one("#build-why", Static).update("\n".join(lines))

    # -- running a build -------------------------------------------------------------------------------

    def action_focus_recipe(self) -> None:
        self.query_one("#build-recipe", Input).focus()

    def action_demo(self) -> None:
        self.start(None)

    @on(Input.Submitted, "#build-recipe")
    def _recipe(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.start(event.value.strip())

    def start(self, recipe_path: str | None) -> None:
        if self.building:
            self.notify("a build is already running (x cancels it)", severity="warning")
            return
        self.building = True
        self._cancel = threading.Event()
        self.query_one("#build-steps", DataTable).clear()
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
            self.post_message(BuildFinished(f"built {result.name} v{result.version} (build {result.build_id})", True))
        except Cancelled:
            self.post_message(BuildFinished("build cancelled; start it again to resume", False))
        except (UserError, OSError, ImportError) as exc:
            self.post_message(BuildFinished(f"build failed: {exc}", False))
        except Exception as exc:  # noqa: BLE001 - the app lives on; the error is shown
            self.post_message(BuildFinished(f"build failed: {type(exc).__name__}: {exc}", False))

    def on_build_progressed(self, message: BuildProgressed) -> None:
        p = message.progress
        table = self.query_one("#build-steps", DataTable)
        cells = [p.step, "running", f"{p.done}/{p.total}",  # type: ignore[attr-defined]
                 "-" if p.rate is None else f"{p.rate:.2f}/s", _counts(p.counts)]  # type: ignore[attr-defined]
        if p.step in table.rows:  # type: ignore[attr-defined]
            for col, v in zip(table.columns, cells, strict=True):
                table.update_cell(p.step, col, v, update_width=True)  # type: ignore[attr-defined]
        else:
            table.add_row(*cells, key=p.step)  # type: ignore[attr-defined]
        self.query_one("#build-status", Static).update(f"Building — {p.step}: {p.message or ''}")  # type: ignore[attr-defined]

    def on_build_finished(self, message: BuildFinished) -> None:
        self.building = False
        self.notify(message.text, severity="information" if message.ok else "error", timeout=10)
        self.load_state()
