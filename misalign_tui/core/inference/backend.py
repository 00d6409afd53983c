"""What a run needs from a model, whether it runs in this process or behind an inference server.

``Engine`` (llama.cpp in-process, inference/engine.py) and ``RemoteBackend`` (an OpenAI-compatible server,
inference/remote.py) both satisfy ``Backend`` (the type checker proves it: ``open_backend`` returns either as
one); the run code (core/runs/evaluate.py) drives a ``Backend`` and never asks which. Scores come in request
order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.engine import Engine, EngineSettings
from misalign_tui.core.inference.remote import RemoteBackend, RemoteSettings
from misalign_tui.core.inference.requests import (
    Generation,
    GenerationRequest,
    JudgeRequest,
    JudgeScore,
    LoglikRequest,
    LoglikScore,
)
from misalign_tui.core.models.registry import ModelInfo, require_usable


@runtime_checkable
class Backend(Protocol):
    """The scoring and generation surface shared by the local engine and remote servers."""

    device: str
    chat_template: str | None   # None: plain completion format

    @property
    def n_ctx(self) -> int | None: ...  # None: unknown here (a server); prompts are not cut locally

    def provenance(self) -> dict[str, Any]: ...

    def format_user_turn(self, text: str, history: Sequence[tuple[str, str]] = ()) -> str: ...

    def fit_prompt(self, build: Callable[[str], str], prompt: str) -> tuple[str, bool]: ...

    # ``skip``: keys of requests already scored. A resumed run passes all its requests in run order and the keys
    # it has stored, so the engine can evaluate them in the same windows as an uninterrupted run would
    # (inference/engine.py); skipped keys are never yielded.
    def judge(self, requests: Sequence[JudgeRequest], *, yes_words: Sequence[str] = ...,
              no_words: Sequence[str] = ..., cancel: threading.Event | None = None,
              skip: Collection[Any] = ...) -> Iterator[JudgeScore]: ...

    def loglik(self, requests: Sequence[LoglikRequest], *, cancel: threading.Event | None = None,
               skip: Collection[Any] = ...) -> Iterator[LoglikScore]: ...

    def generate(self, prompt: str, *, temperature: float = 0.7, top_p: float = 0.9, max_tokens: int = 512,
                 stop: Sequence[str] = (), seed: int = 0, cancel: threading.Event | None = None) -> Generation: ...

    # (key, answer) in request order; the engine decodes up to ``batch`` together, a server takes them
    # concurrently. ``skip``: keys stored before (a resumed run), not yielded.
    def generate_many(self, requests: Sequence[GenerationRequest], *, batch: int = ...,
                      cancel: threading.Event | None = None,
                      skip: Collection[Any] = ...) -> Iterator[tuple[Any, Generation]]: ...

    def close(self) -> None: ...


def open_backend(model: ModelInfo, settings: EngineSettings, remote: RemoteSettings | None = None) -> Backend:
    """The backend for a registered model: its servers for a remote model, else its GGUF file loaded here with
    the model's own GPU-layer and thread settings unless ``settings`` names them."""
    require_usable(model)
    if model.is_remote:
        if not model.url:
            raise UserError(f"model {model.name}: has no server URL; models add-remote NAME --url URL --model M")
        return RemoteBackend(model.url, model.remote_model, api_key_env=model.api_key_env,
                             chat_template=model.effective_chat_template, settings=remote or RemoteSettings(),
                             name=model.name)
    if not model.path:
        raise UserError(f"model {model.name}: not a local GGUF file")
    n_gpu = settings.n_gpu_layers if settings.n_gpu_layers is not None else model.n_gpu_layers
    threads = settings.n_threads if settings.n_threads is not None else model.n_threads
    eff = replace(settings, n_gpu_layers=n_gpu, n_threads=threads)
    return Engine(model.path, chat_template=model.effective_chat_template, settings=eff)
