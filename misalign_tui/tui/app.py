"""The app factory shared by the CLI and the tests (snapshot and Pilot), and what the screens share:
the run queue (runs go on while you browse), sessions, the command palette."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from misalign_tui.core.sessions import SessionState
from misalign_tui.core.text import printable, printable_line
from misalign_tui.core.workspace import Workspace
from misalign_tui.tui.messages import RunFinished, RunProgressed, WorkFailed
from misalign_tui.tui.run_control import QueuedRun, RunSignals, RunStatus, execute
from misalign_tui.tui.screens.build import BuildScreen
from misalign_tui.tui.screens.compare import CompareScreen
from misalign_tui.tui.screens.dashboard import DashboardScreen
from misalign_tui.tui.screens.dialogs import ConfirmQuit, NamePrompt, Stopping
from misalign_tui.tui.screens.explore import ExploreScreen
from misalign_tui.tui.screens.help import HelpScreen
from misalign_tui.tui.screens.item import ItemScreen
from misalign_tui.tui.screens.models import ModelsScreen
from misalign_tui.tui.screens.review import ReviewScreen
from misalign_tui.tui.screens.run import RunScreen
from misalign_tui.tui.screens.sessions import SessionsScreen


class MisalignApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "misalign-tui"
    # screens read the class to lay out for the width they have (app.tcss): narrow stacks what sits side by side
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-normal"), (150, "-wide")]
    MODES = {"dashboard": DashboardScreen, "models": ModelsScreen, "run": RunScreen, "explore": ExploreScreen,
             "compare": CompareScreen, "sessions": SessionsScreen, "build": BuildScreen, "review": ReviewScreen}
    BINDINGS = [
        Binding("d", "switch_mode('dashboard')", "Dash"),
        Binding("m", "switch_mode('models')", "Models"),
        Binding("r", "switch_mode('run')", "Run"),
        Binding("e", "switch_mode('explore')", "Explore"),
        Binding("c", "switch_mode('compare')", "Compare"),
        Binding("S", "switch_mode('sessions')", "Sessions"),
        Binding("B", "switch_mode('build')", "Build", show=False),
        Binding("V", "switch_mode('review')", "Review", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("t", "toggle_dark", "Theme", show=False),
        Binding("P", "pause_runs", "Pause runs", show=False),
        Binding("ctrl+x", "cancel_runs", "Cancel runs", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, workspace: Workspace, shown_home: str | None = None) -> None:
        super().__init__()
        self.workspace = workspace
        self.sub_title = printable_line(shown_home if shown_home is not None else str(workspace.home))
        self.run_statuses: dict[str, RunStatus] = {}
        self._queue: deque[QueuedRun] = deque()
        self._queue_lock = threading.Lock()
        self._signals = RunSignals()
        self._run_worker: Worker | None = None

    def on_mount(self) -> None:
        # llama.cpp and simhash log to stderr/logging; under the app they must not reach the terminal.
        logging.getLogger("misalign_tui.llama").propagate = False
        logging.getLogger("simhash").propagate = False
        self.switch_mode("dashboard")

    # -- theme, help, palette ----------------------------------------------------------------------------

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def all_bindings(self) -> list[tuple[str, str, str, str]]:
        """(where, key, description, action) for the app and every screen: the help screen and the palette."""
        rows: list[tuple[str, str, str, str]] = []
        for b in self.BINDINGS:
            if isinstance(b, Binding):
                rows.append(("app", b.key_display or b.key, b.description, b.action))
        screens: list[type[Screen]] = [*self.MODES.values(), ItemScreen]  # type: ignore[list-item]
        for cls in screens:
            where = cls.__name__.removesuffix("Screen").lower()
            for b in cls.BINDINGS:
                key, action, desc = (b[0], b[1], b[2]) if isinstance(b, tuple) else (b.key, b.action, b.description)
                rows.append((where, key, desc, action))
        return rows

    def action_help(self) -> None:
        self.push_screen(HelpScreen([(w, k, d) for w, k, d, _ in self.all_bindings()]))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        here = type(screen).__name__.removesuffix("Screen").lower()
        for where, key, desc, action in self.all_bindings():
            if where == "app":
                yield SystemCommand(desc if "switch_mode" not in action else f"Go to {desc}", f"key {key}",
                                    lambda a=action: self.run_action(a))
            elif where == here:
                yield SystemCommand(f"{desc} ({where})", f"key {key}", lambda a=action: self.run_action(a, screen))
        yield SystemCommand("Toggle dark/light theme", "key t", self.action_toggle_dark)
        yield SystemCommand("Save this comparison as a session", "key s on Explore/Compare", self.action_save_session)

    # -- runs ----------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._run_worker is not None and self._run_worker.is_running

    def queue_runs(self, requests: list[QueuedRun]) -> None:
        with self._queue_lock:
            for req in requests:
                self._queue.append(req)
                self.run_statuses[req.key] = RunStatus(req.key, req)
        if not self.running:
            self._signals = RunSignals()
            self._run_worker = self.run_queue(self._signals)
        self.notify(f"queued {len(requests)} run(s); they go on while you browse (P pauses, ctrl+x cancels)")

    def resume_run(self, run_id: int) -> None:
        """Queue the stored run ``run_id``: the core rebuilds its exact request (core.runs.identity)."""
        from misalign_tui.core.errors import UserError
        from misalign_tui.core.store import Store, run_info

        try:
            with Store(self.workspace.db_path) as store:
                info = run_info(store, run_id)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        self.queue_runs([QueuedRun(info.model, info.method, resume_run_id=run_id)])

    @work(thread=True, group="runs", exit_on_error=False)
    def run_queue(self, signals: RunSignals) -> None:
        while not signals.cancel.is_set():
            with self._queue_lock:
                if not self._queue:
                    return
                req = self._queue.popleft()
            final = execute(self.workspace, req, signals, lambda st: self.post_message(RunProgressed(st)))
            self.post_message(RunFinished(final))
        with self._queue_lock:  # cancelled: what was still queued is dropped, and says so
            while self._queue:
                req = self._queue.popleft()
                self.post_message(RunFinished(RunStatus(req.key, req, "interrupted", error="cancelled before start")))

    def on_run_progressed(self, message: RunProgressed) -> None:
        self._show_status(message.progress)

    def on_run_finished(self, message: RunFinished) -> None:
        st = message.status
        self._show_status(st)
        if st.state == "failed":
            self.notify(f"{st.request.model}: run failed: {st.error}", severity="error", timeout=12, markup=False)
        elif st.state == "interrupted":
            self.notify(f"{st.request.model}: run stopped; finished items are kept (u on Run resumes)", markup=False)
        elif st.verdict:
            self.notify(f"{st.request.model}: run complete — judge: {st.verdict}", markup=False, timeout=12)
        else:
            self.notify(f"{st.request.model}: run complete — press e to explore", markup=False)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every notification is plain text with control characters shown: messages quote model names,
        paths and errors, and a ``[section]`` or an ``ESC`` in them is text, not markup or a command."""
        super().notify(printable(message), title=printable_line(title), severity=severity, timeout=timeout,
                       markup=False)

    def _show_status(self, st: RunStatus) -> None:
        if self.run_statuses.get(st.key, st).finished and not st.finished:
            return  # a progress message that arrived after the end
        self.run_statuses[st.key] = st
        if isinstance(self.screen, RunScreen):
            self.screen.update_status(st)

    def action_pause_runs(self) -> None:
        if not self.running:
            self.notify("no run in progress")
            return
        if self._signals.resume.is_set():
            self._signals.resume.clear()
            self.notify("runs paused after the current item (P resumes)")
            state = "paused"
        else:
            self._signals.resume.set()
            self.notify("runs resumed")
            state = "running"
        for st in list(self.run_statuses.values()):
            if st.state in ("running", "paused"):
                self._show_status(replace(st, state=state))

    def action_cancel_runs(self) -> None:
        if not self.running:
            self.notify("no run in progress")
            return
        self._signals.cancel.set()
        self._signals.resume.set()
        self.notify("cancelling: the run stops after the current item and can be resumed")

    async def stop_runs(self) -> None:
        """Cancel and wait until the worker has left the engine (the core marks the run interrupted)."""
        if self._run_worker is not None and self.running:
            self._signals.cancel.set()
            self._signals.resume.set()
            await self._run_worker.wait()

    async def action_quit(self) -> None:
        if not self.running:
            self.exit()
            return

        async def answer(stop: bool | None) -> None:
            if stop:  # say so at once: the engine ends the batch in flight first, which takes seconds
                await self.push_screen(Stopping())
                await self.stop_runs()
                self.exit()

        self.push_screen(ConfirmQuit(), answer)

    # -- navigation shared by screens ------------------------------------------------------------------------

    def open_item(self, prompt_id: int) -> None:
        self.push_screen(ItemScreen(prompt_id))

    def open_session(self, state: SessionState) -> None:
        self.switch_mode("explore")
        screen = self.screen
        if isinstance(screen, ExploreScreen):
            screen.apply_session(state)

    def current_session_state(self) -> SessionState | None:
        screen = self.screen
        if isinstance(screen, ExploreScreen):
            return screen.session_state()
        if isinstance(screen, CompareScreen):
            from misalign_tui.core.metrics.vocabulary import HEADLINE

            method = screen.data.method if screen.data else "judge"
            return SessionState(models=screen.selected_models(), grouping="model", metric=HEADLINE[method])
        return None

    def action_save_session(self) -> None:
        state = self.current_session_state()
        if state is None:
            self.notify("open Explore or Compare first: a session saves what they show", severity="warning")
            return

        def save(name: str | None) -> None:
            if name:
                self._save_session(name, state)

        self.push_screen(NamePrompt("Save this comparison as:"), save)

    @work(thread=True, group="sessions", exit_on_error=False)
    def _save_session(self, name: str, state: SessionState) -> None:
        from misalign_tui.core.errors import UserError
        from misalign_tui.core.sessions import save_session
        from misalign_tui.core.store import Store

        try:
            with Store(self.workspace.db_path) as store:
                save_session(store, name, state)
        except UserError as exc:
            self.post_message(WorkFailed(str(exc)))
            return
        self.call_from_thread(self.notify, f"session saved: {name} (S lists sessions)")

    def on_work_failed(self, message: WorkFailed) -> None:
        self.notify(message.text, severity="error", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed unexpectedly: shown in one line, the app lives on."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.name}: {type(error).__name__}: {error}", severity="error", timeout=12)


def create_app(home: str | Path | None = None, shown_home: str | None = None) -> MisalignApp:
    """The app on the workspace ``home`` (created, migrated and seeded before any screen reads it).
    ``shown_home`` is what the header says the workspace is (default: its path); tests pass a fixed name so
    snapshots do not depend on where the workspace lies."""
    from misalign_tui.core.views.workspace import prepare_workspace

    return MisalignApp(prepare_workspace(home), shown_home)


def run_app(ctx: object) -> None:
    create_app(getattr(ctx, "home_arg", None)).run()
