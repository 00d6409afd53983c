"""What a run needs from a model, whether it runs in this process or behind an inference server.

``Engine`` (llama.cpp in-process, core/engine.py) and ``RemoteBackend`` (an OpenAI-compatible server,
core/remote.py) both satisfy ``Backend``, so evaluate.py drives either (its ``_engine_for`` picks one from the
registered model). Both yield scores in request order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from misalign_tui.core.inference.engine import (
        Generation,
        JudgeRequest,
        JudgeScore,
        LoglikRequest,
        LoglikScore,
    )


@runtime_checkable
class Backend(Protocol):
    """The scoring and generation surface shared by the local engine and remote servers."""

    device: str
    chat_template: str | None   # None: plain completion format
    n_ctx: int | None           # None: unknown here (a server); prompts are not cut locally

    def provenance(self) -> dict[str, Any]: ...

    def format_user_turn(self, text: str) -> str: ...

    def judge(self, requests: Sequence[JudgeRequest], *, yes_words: Sequence[str] = ...,
              no_words: Sequence[str] = ..., cancel: threading.Event | None = None) -> Iterator[JudgeScore]: ...

    def loglik(self, requests: Sequence[LoglikRequest], *,
               cancel: threading.Event | None = None) -> Iterator[LoglikScore]: ...

    def generate(self, prompt: str, *, temperature: float = 0.7, top_p: float = 0.9, max_tokens: int = 512,
                 stop: Sequence[str] = (), seed: int = 0, cancel: threading.Event | None = None) -> Generation: ...

    def close(self) -> None: ...
