"""Small typed messages that workers post to the UI thread; only the UI thread touches widgets.

Each is a dataclass whose fields say what it carries (a core view object, never an ``object`` payload), so a
handler reads ``message.data.models`` with a type checker's help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.message import Message

from misalign_tui.core.build.state import StepProgress
from misalign_tui.core.models.registry import ModelInfo
from misalign_tui.core.sessions import SavedSession
from misalign_tui.core.store import RunInfo
from misalign_tui.core.views.build import BuildState
from misalign_tui.core.views.compare import CompareData, LanguagesData
from misalign_tui.core.views.explain import JudgeExplanation
from misalign_tui.core.views.explore import ExploreData, ExploreOptions
from misalign_tui.core.views.item import ItemView
from misalign_tui.core.views.ladder import Ladder
from misalign_tui.core.views.workspace import WorkspaceSummary
from misalign_tui.tui.run_control import RunStatus


@dataclass
class WorkspaceLoaded(Message):
    """The dashboard's data, read in a worker thread."""

    summary: WorkspaceSummary


@dataclass
class ModelsLoaded(Message):
    models: list[ModelInfo]


@dataclass
class WorkFailed(Message):
    """A worker hit an error meant for the user: shown as a notification, the app lives on."""

    text: str


@dataclass
class RunProgressed(Message):
    """A run's progress; floods coalesce (only the latest per run stays queued)."""

    progress: RunStatus

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunProgressed) and message.progress.key == self.progress.key


@dataclass
class RunFinished(Message):
    """A queued run ended: complete, cancelled (resumable) or failed (with the error shown)."""

    status: RunStatus


@dataclass
class RunChoicesLoaded(Message):
    """What the Run screen's form offers, and the runs it can resume."""

    models: list[tuple[str, bool]]  # (name, is_default)
    benchmarks: list[str]           # name@version
    interrupted: list[RunInfo]


@dataclass
class OptionsLoaded(Message):
    """The Explore filters' choices (benchmarks, models, domains)."""

    options: ExploreOptions


@dataclass
class ExploreLoaded(Message):
    data: ExploreData


@dataclass
class CompareModelsLoaded(Message):
    models: list[str]   # every model with a run
    pick: list[str]     # the two to compare first


@dataclass
class CompareLoaded(Message):
    data: CompareData


@dataclass
class LanguagesLoaded(Message):
    """Compare's languages view: one model's English items against their parallel items."""

    data: LanguagesData


@dataclass
class ItemLoaded(Message):
    item: ItemView


@dataclass
class ExplanationReady(Message):
    """One judge verdict explained (core/views/explain.py), from the Item screen's worker."""

    explanation: JudgeExplanation


@dataclass
class ExplainStatus(Message):
    """Where the Item screen's explain worker is: "explaining 2/4…", "done", or what went wrong (one line)."""

    text: str


@dataclass
class SessionsLoaded(Message):
    sessions: list[SavedSession]


@dataclass
class LoadTestDone(Message):
    model: str
    text: str
    ok: bool = True


@dataclass
class BuildProgressed(Message):
    """A build step's progress; floods coalesce per step."""

    progress: StepProgress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BuildProgressed) and message.progress.step == self.progress.step


@dataclass
class BuildLoaded(Message):
    """The latest build, its steps and rejected candidates, read in a worker."""

    state: BuildState


@dataclass
class BuildFinished(Message):
    """A build ended: published (``information``), published empty (``warning``), cancelled or failed."""

    text: str
    severity: Literal["information", "warning", "error"]


@dataclass
class LadderLoaded(Message):
    """The Compare screen's ladder mode: a model's quantization ladder (None with ``error`` when it has none)."""

    model: str
    ladder: Ladder | None
    error: str | None = None
