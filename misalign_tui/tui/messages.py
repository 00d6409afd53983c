"""Small messages that workers post to the UI thread; only the UI thread touches widgets."""

from __future__ import annotations

from textual.message import Message

from misalign_tui.core.models.registry import ModelInfo
from misalign_tui.core.views.workspace import WorkspaceSummary


class WorkspaceLoaded(Message):
    """The dashboard's data, read in a worker thread."""

    def __init__(self, summary: WorkspaceSummary) -> None:
        super().__init__()
        self.summary = summary


class ModelsLoaded(Message):
    def __init__(self, models: list[ModelInfo]) -> None:
        super().__init__()
        self.models = models


class WorkFailed(Message):
    """A worker hit an error meant for the user: shown as a notification, the app lives on."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class RunProgressed(Message):
    """A run's progress; floods coalesce (only the latest per run stays queued)."""

    def __init__(self, progress: object) -> None:
        super().__init__()
        self.progress = progress  # a misalign_tui.tui.run_control.RunStatus

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunProgressed) and message.progress.key == self.progress.key  # type: ignore[attr-defined]


class RunFinished(Message):
    """A queued run ended: complete, cancelled (resumable) or failed (with the error shown)."""

    def __init__(self, status: object) -> None:
        super().__init__()
        self.status = status


class ExploreLoaded(Message):
    def __init__(self, data: object) -> None:
        super().__init__()
        self.data = data  # misalign_tui.core.views.explore.ExploreData


class CompareLoaded(Message):
    def __init__(self, data: object) -> None:
        super().__init__()
        self.data = data


class ItemLoaded(Message):
    def __init__(self, item: object) -> None:
        super().__init__()
        self.item = item


class SessionsLoaded(Message):
    def __init__(self, sessions: list) -> None:
        super().__init__()
        self.sessions = sessions


class LoadTestDone(Message):
    def __init__(self, model: str, text: str) -> None:
        super().__init__()
        self.model = model
        self.text = text


class BuildProgressed(Message):
    """A build step's progress (core.build.state.StepProgress); floods coalesce per step."""

    def __init__(self, progress: object) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BuildProgressed) and message.progress.step == self.progress.step  # type: ignore[attr-defined]


class BuildLoaded(Message):
    """Builds, their steps and rejected candidates, read in a worker."""

    def __init__(self, builds: list, steps: list, rejected: list) -> None:
        super().__init__()
        self.builds = builds
        self.steps = steps
        self.rejected = rejected


class BuildFinished(Message):
    def __init__(self, text: str, ok: bool) -> None:
        super().__init__()
        self.text = text
        self.ok = ok


class LadderLoaded(Message):
    """The Compare screen's ladder mode: a model's quantization ladder, read in a worker."""

    def __init__(self, model: str, ladder: object | None, error: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.ladder = ladder  # misalign_tui.core.views.ladder.Ladder
        self.error = error
