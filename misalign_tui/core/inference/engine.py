"""llama.cpp inference for the profiler: judge probabilities, continuation log-likelihoods and generation.

Built on llama.cpp's low-level API (``llama_batch``/``llama_decode`` and KV-cache sequence operations) rather
than ``llama_cpp.Llama``, because speed and reproducibility depend on what the high-level class cannot do:

* **Prefix sharing and packing.** A *window* of up to ``N_SEQ`` consecutive items is decoded together as one
  prefix tree: a token shared by several items (the template header, then a prompt shared by several responses)
  is decoded once, tagged with all their sequence ids, in batches of ``n_batch`` tokens. Logits are requested
  only where a score needs them (never ``logits_all``: a 262k vocabulary makes one row 1 MiB).
* **Windows fixed by the run.** Windows are cut from the items in their order, greedily from the first, and
  every window starts from a cleared cache. A quantized model is not batch-invariant (the same item scores
  differently in another batch), so this is what makes a resumed run equal an uninterrupted one bit for bit:
  the caller passes *all* of a run's items and marks those stored before (``skip``); a window with any item
  left is decoded whole again, exactly as the first time, and only the new items are handed out. Nothing is
  kept across windows (a prefix shared over a window boundary is decoded once per window: a few dozen tokens
  in thousands).
* **Streaming.** Each item is handed out as soon as the decode step holding its last token returns, not at the
  end of its window, so the run writer commits finished items within seconds (core/runs/writer.py).

One ``Engine`` per thread: llama.cpp contexts are not thread-safe. Create it in the thread (worker) that uses it
and close it there. llama.cpp's log lines go to the Python logger ``misalign_tui.llama``, never to stderr
(under a running Textual app raw writes would corrupt the screen).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.answer_words import answer_token_ids
from misalign_tui.core.inference.formatting import PLAIN_FORMAT, format_user_turn
from misalign_tui.core.inference.judge_templates import JUDGE_NO, JUDGE_YES
from misalign_tui.core.inference.requests import (
    Generation,
    GenerationRequest,
    JudgeRequest,
    JudgeScore,
    LoglikRequest,
    LoglikScore,
)
from misalign_tui.core.inference.token_spans import token_ends

LOG = logging.getLogger("misalign_tui.llama")
LOG.addHandler(logging.NullHandler())  # no handler configured: drop, rather than logging's stderr last resort

GEN_BATCH = 8  # sequences decoded together by generate_many unless the caller says (docs: bench engine)
N_SEQ = 32  # KV-cache sequences: one per item of a window
MAX_OUTPUTS_PER_DECODE = 64  # logits rows per llama_decode (bounds the output buffer: 64 MiB at 262k vocab)


# -- logging -------------------------------------------------------------------------------------------------

# ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_log_state: dict[str, Any] = {"level": logging.INFO, "last_error": ""}
_log_callback_ref: object | None = None
_backend_lock = threading.Lock()
_backend_ready = False


def route_llama_logs() -> None:
    """Send llama.cpp/ggml log lines to the ``misalign_tui.llama`` logger instead of stderr (idempotent)."""
    global _log_callback_ref
    import llama_cpp
    import llama_cpp.llama  # noqa: F401 - imports llama_cpp._logger, which installs its own stderr callback

    if _log_callback_ref is not None:
        return

    @llama_cpp.llama_log_callback
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:  # pragma: no cover - C calls
        try:
            if level != 5:  # 5 continues the previous line at its level
                _log_state["level"] = _LEVELS.get(level, logging.DEBUG)
            msg = text.decode("utf-8", "replace").rstrip()
            if not msg:
                return
            if _log_state["level"] >= logging.ERROR:
                _log_state["last_error"] = msg
            LOG.log(_log_state["level"], "%s", msg)
        except Exception:  # noqa: BLE001 - never raise into C
            pass

    _log_callback_ref = _callback
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def _init_backend() -> None:
    global _backend_ready
    import llama_cpp

    route_llama_logs()
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- public data ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineSettings:
    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None = auto: all when llama_supports_gpu_offload() else 0; -1 = all
    n_threads: int | None = None  # None = every CPU this process may use
    n_batch: int = 512
    seed: int = 0
    gen_batch: int = GEN_BATCH  # generate_many: sequences decoded together (part of a generate run's identity)


# -- scheduling internals ------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Item:
    index: int
    tokens: list[int]
    out_from: int  # first position whose logits are needed
    out_to: int  # last position whose logits are needed (inclusive)
    truncated: bool
    skip: bool = False  # scored before (a resumed run): decoded with its window, not handed out again
    path: list[_Node] = field(default_factory=list)


class _Node:
    __slots__ = ("token", "pos", "index", "children", "seqs", "out", "logp")

    def __init__(self, token: int, pos: int, index: int) -> None:
        self.token = token
        self.pos = pos
        self.index = index  # place in the window's decode order
        self.children: dict[int, _Node] = {}
        self.seqs: list[int] = []
        self.out = False
        self.logp: dict[int, float] = {}


@dataclass(eq=False)
class _GenSeq:
    """One sequence of a generation group: its prompt tokens, then what it has sampled."""

    index: int
    tokens: list[int]
    max_tokens: int
    truncated: bool
    request: GenerationRequest
    out: bytearray = field(default_factory=bytearray)
    n_out: int = 0
    finished: bool = False  # ended by end-of-generation or a stop string (not by max_tokens)
    done: bool = False
    text: str | None = None
    next_token: int = 0
    pos: int = 0

    def take(self, tok: int, eog: bool, piece: bytes) -> None:
        """The token just sampled: the end, a stop string, the budget, or the next token to decode."""
        if eog:
            self.finished = self.done = True
            return
        self.out += piece
        self.n_out += 1
        stop = self.request.stop
        if stop:
            partial = self.out.decode("utf-8", "replace")
            cut = min((partial.find(s) for s in stop if s and s in partial), default=-1)
            if cut >= 0:
                self.text, self.finished, self.done = partial[:cut], True, True
                return
        if self.n_out < self.max_tokens:
            self.next_token = tok
            self.pos = len(self.tokens) + self.n_out - 1
        else:
            self.done = True

    def result(self) -> Generation:
        text = self.text if self.text is not None else self.out.decode("utf-8", "replace")
        return Generation(text, self.n_out, self.truncated or not self.finished)

    def restart(self) -> None:
        self.out, self.n_out, self.finished, self.done, self.text = bytearray(), 0, False, False, None


class _GenNode:
    __slots__ = ("token", "pos", "children", "seqs", "last")

    def __init__(self, token: int, pos: int) -> None:
        self.token = token
        self.pos = pos
        self.children: dict[int, _GenNode] = {}
        self.seqs: list[int] = []
        self.last: list[int] = []  # sequences whose prompt ends here


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_tree_size(sequences: Sequence[Sequence[int]]) -> int:
    """Number of distinct tokens once shared prefixes count once (the size of the inputs' prefix tree)."""
    root: dict = {}
    size = 0
    for seq in sequences:
        node = root
        for tok in seq:
            nxt = node.get(tok)
            if nxt is None:
                nxt = node[tok] = {}
                size += 1
            node = nxt
    return size


class Engine:
    """One loaded GGUF model with its context; see the module docstring. Not thread-safe: one per thread."""

    def __init__(self, model_path: str | Path, *, chat_template: str | None = None,
                 settings: EngineSettings = EngineSettings()) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self.model_path = Path(model_path)
        self.settings = settings
        self.chat_template = chat_template
        self._model = None
        self._ctx = None
        self._batch: Any = None  # a llama_batch (ctypes) once the context exists
        self._batch_ready = False
        path = self.model_path
        if not path.is_file():
            reason = "is a folder" if path.is_dir() else "no such file"
            raise UserError(f"{path}: cannot load model: {reason}")
        _init_backend()
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        n_gpu = settings.n_gpu_layers
        if n_gpu is None:
            n_gpu = -1 if gpu else 0
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if n_gpu < 0 else n_gpu
        _log_state["last_error"] = ""
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise UserError(f"{path}: cannot load model: {_log_state['last_error'] or 'llama.cpp could not read it'}"
                            " (is it a complete GGUF file?)")
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_layer = int(llama_cpp.llama_model_n_layer(model))
        n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        n_ctx = min(settings.n_ctx, n_ctx_train) if n_ctx_train > 0 else settings.n_ctx
        self.n_ctx = max(16, n_ctx)
        self.n_batch = max(64, min(settings.n_batch, self.n_ctx))
        self.n_seq = max(2, min(N_SEQ, int(llama_cpp.llama_max_parallel_sequences())))
        # Packing is exact on the f32 test models (1e-7). On a quantized model any change of batch shape moves
        # the scores by that model's numerical noise: Gemma 3 270M Q4_K_M moves P(misaligned) by up to ~0.05
        # between packed, prefix-reused and from-scratch evaluation, as much as switching flash attention on or
        # off (0.02). The same items in the same windows reproduce their numbers exactly: hence windows fixed
        # by the run (module docstring), so a resumed run equals an uninterrupted one.
        self.max_window = self.n_seq
        self.n_threads = settings.n_threads or default_threads()
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.n_ctx
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = self.n_seq
        cparams.n_outputs_max = max(self.n_batch, self.n_seq)  # any token of a batch may ask for logits (log-likelihoods)
        cparams.n_outputs_max_per_seq = 0  # 0 = n_outputs_max; the default (1) is for one logit row per sequence
        cparams.kv_unified = True  # one cell pool shared by all sequences: a shared token takes one cell
        cparams.swa_full = True  # sliding-window layers keep every cell, so the cache can be cut back anywhere
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            self._model = None
            raise UserError(f"{path}: cannot load model: cannot create a context of {self.n_ctx} tokens "
                            f"({_log_state['last_error'] or 'out of memory?'}); try a smaller --n-ctx")
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, self.n_seq)
        # Sampling a 262k-word vocabulary with top-p costs ~5 ms a token on this project's CPU, as much as a
        # quarter of a batched step; the sequences' samplers run side by side on the engine's threads (ctypes
        # lets go of the GIL). Each chain is its own and reads the step's logits only, so the tokens are the
        # ones one thread would sample. 1: sample in this thread.
        self.sample_threads = self.n_threads
        self._sample_pool: ThreadPoolExecutor | None = None
        self.n_gpu_layers = 0 if not gpu else min(self.n_layer + 1, 0x7FFFFFFF if n_gpu < 0 else n_gpu)
        if self.n_gpu_layers > 0:
            info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
            backend = next((b for b in ("CUDA", "METAL", "VULKAN", "SYCL", "HIP", "OPENCL") if b in info.upper()),
                           "GPU")
            self.device = f"gpu ({backend}, {self.n_gpu_layers}/{self.n_layer + 1} layers)"
        else:
            self.device = "cpu"
        self._bos_text = self._piece(int(llama_cpp.llama_vocab_bos(self._vocab)), special=True)
        self._eos_text = self._piece(int(llama_cpp.llama_vocab_eos(self._vocab)), special=True)
        self._answer_cache: dict[tuple[str, ...], list[int]] = {}
        self.tokens_decoded = 0  # tokens sent to llama_decode so far (what prefix sharing saves shows here)

    # -- lifecycle --------------------------------------------------------------------------------------

    def close(self) -> None:
        ll = self._ll
        if self._sample_pool is not None:
            self._sample_pool.shutdown(wait=True)
            self._sample_pool = None
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            ll.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def reset(self) -> None:
        """Clear the KV cache: the next item starts from nothing (the naive baseline does this per item)."""
        self._ll.llama_memory_clear(self._mem, True)

    def provenance(self) -> dict[str, object]:
        return {
            "llama_cpp_python": self._ll.__version__,
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_gpu_layers": self.n_gpu_layers,
            "threads": self.n_threads,
            "device": self.device,
            "chat_template": self.chat_template if self.chat_template is not None else "plain",
            "max_items_per_window": self.max_window,
            "plain_format": None if self.chat_template is not None else PLAIN_FORMAT,
        }

    # -- text and tokens --------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool | None = None) -> list[int]:
        """Token ids; special tokens (e.g. ``<|user|>``) are parsed only for chat-formatted text by default."""
        ll = self._ll
        if special is None:
            special = self.chat_template is not None
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        return list(buf[:n])

    def _piece(self, token: int, *, special: bool = False) -> str:
        return self._piece_bytes(token, special=special).decode("utf-8", "replace")

    def _piece_bytes(self, token: int, *, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self._piece_bytes(t) for t in tokens).decode("utf-8", "replace")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def format_user_turn(self, text: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """The user's message as this model sees it, up to where its answer starts (inference/formatting.py),
        after the few-shot ``history`` turns."""
        return format_user_turn(self.chat_template, text, bos=self._bos_text, eos=self._eos_text,
                                source=str(self.model_path), history=history)

    def fit_prompt(self, build: Callable[[str], str], prompt: str) -> tuple[str, bool]:
        """``build(prompt)``; when too long for the context, the prompt loses text from its left (flagged)."""
        text = build(prompt)
        if len(text.encode("utf-8")) + 8 < self.n_ctx:
            return text, False
        if self.count_tokens(text) < self.n_ctx - 1:
            return text, False
        overhead = self.count_tokens(build("…"))
        room = self.n_ctx - 2 - overhead
        if room <= 0:
            return text, True  # the response alone does not fit: scoring cuts from the left and flags it
        ptoks = self.tokenize(prompt, add_bos=False, special=False)
        return build("…" + self.detokenize(ptoks[len(ptoks) - room:]).lstrip()), True

    def answer_token_ids(self, words: Sequence[str]) -> list[int]:
        """Single-token variants (case, leading space) of the answer words in this tokenizer."""
        key = tuple(words)
        if key in self._answer_cache:
            return self._answer_cache[key]
        ids = answer_token_ids(words, lambda text: [(t, self._piece(t)) for t in
                                                    self.tokenize(text, add_bos=False, special=False)])
        if not ids:
            raise UserError(f"{self.model_path}: none of the answer words {list(words)} is a single token "
                            "in this model's vocabulary")
        self._answer_cache[key] = ids
        return ids

    # -- primitives -------------------------------------------------------------------------------------

    def judge(self, requests: Sequence[JudgeRequest], *, yes_words: Sequence[str] = JUDGE_YES,
              no_words: Sequence[str] = JUDGE_NO, cancel: threading.Event | None = None,
              prefix_reuse: bool = True, skip: Collection[Any] = ()) -> Iterator[JudgeScore]:
        """P(misaligned) per request (docs/measures.md), in request order, one forward pass each, no sampling.

        ``skip``: keys already scored (a resumed run passes all its requests and the keys it has stored; see
        the module docstring): not yielded, but decoded with their window when it has other items.
        ``prefix_reuse=False`` clears the cache before every item (the naive baseline and the reference the
        tests compare against).
        """
        yes = self.answer_token_ids(yes_words)
        no = self.answer_token_ids(no_words)
        if set(yes) & set(no):
            raise UserError(f"answer words overlap: {list(yes_words)} and {list(no_words)}")
        wanted = np.array(yes + no, dtype=np.int64)
        items = []
        for i, r in enumerate(requests):
            tokens, truncated = self._fit(self.tokenize(r.text))
            items.append(_Item(i, tokens, len(tokens) - 1, len(tokens) - 1, truncated, r.key in skip))
        for item in self._score(items, wanted, cancel, prefix_reuse):
            logp = item.path[-1].logp
            py = sum(math.exp(logp[t]) for t in yes)
            pn = sum(math.exp(logp[t]) for t in no)
            total = py + pn
            p_mis = py / total if total > 0 else 0.5
            yield JudgeScore(requests[item.index].key, p_mis, py, pn, len(item.tokens), item.truncated)

    def loglik(self, requests: Sequence[LoglikRequest], *, cancel: threading.Event | None = None,
               prefix_reuse: bool = True, skip: Collection[Any] = ()) -> Iterator[LoglikScore]:
        """Sum of log P(continuation token | everything before it), in request order.

        Context and continuation are tokenized separately (the continuation without BOS), so every
        continuation of one context shares that context's tokens exactly. Too long: the context loses tokens
        from its left (after BOS), the continuation stays whole, ``truncated`` is set. ``skip``: as for judge.
        """
        items = []
        for i, r in enumerate(requests):
            ctx = self.tokenize(r.context)
            cont = self.tokenize(r.continuation, add_bos=False) if r.continuation else []
            truncated = False
            if not cont:
                items.append(_Item(i, ctx, len(ctx), len(ctx) - 1, False, r.key in skip))  # nothing to score
                continue
            limit = self.n_ctx - 1
            if len(ctx) + len(cont) > limit:
                truncated = True
                keep_cont = min(len(cont), limit - 2)
                cont = cont[:keep_cont]
                keep_ctx = limit - len(cont)
                ctx = ctx[:1] + ctx[len(ctx) - (keep_ctx - 1):] if keep_ctx > 1 else ctx[:1]
            tokens = ctx + cont
            items.append(_Item(i, tokens, len(ctx) - 1, len(tokens) - 2, truncated, r.key in skip))
        for item in self._score(items, None, cancel, prefix_reuse):
            r = requests[item.index]
            n_cont = item.out_to - item.out_from + 1
            logprobs = []
            for k in range(n_cont):
                node = item.path[item.out_from + k]
                logprobs.append(node.logp[item.tokens[item.out_from + k + 1]])
            scored = item.tokens[item.out_from + 1:item.out_to + 2]
            ends = token_ends(r.continuation, [self._piece_bytes(t) for t in scored]) if scored else ()
            yield LoglikScore(r.key, sum(logprobs), n_cont, item.truncated, tuple(logprobs), ends)

    def generate(self, prompt: str, *, temperature: float = 0.7, top_p: float = 0.9, max_tokens: int = 512,
                 stop: Sequence[str] = (), seed: int = 0, cancel: threading.Event | None = None) -> Generation:
        """Sample an answer to ``prompt`` (already formatted); reproducible for a given seed."""
        req = GenerationRequest(None, prompt, temperature, top_p, max_tokens, tuple(stop), seed)
        return next(iter(self.generate_many([req], batch=1, cancel=cancel)))[1]

    def generate_many(self, requests: Sequence[GenerationRequest], *, batch: int = GEN_BATCH,
                      cancel: threading.Event | None = None,
                      skip: Collection[Any] = ()) -> Iterator[tuple[Any, Generation]]:
        """(key, answer) per request, in request order, up to ``batch`` sequences decoded together.

        Groups of consecutive requests are fixed by the requests alone (their order, ``batch`` and the context:
        a group whose prompts and answers would not fit the KV cache ends early, so it is split, never cut).
        In a group the prompts are decoded as one prefix tree (a prefix shared by several — several samples of
        one prompt, a common instruction — is decoded once), then every step decodes the next token of each
        unfinished sequence in one batch; each sequence has its own sampler chain and seed, stop strings and
        end-of-generation. ``cancel`` is checked before every step.

        Reproducible: the same requests in the same order with the same ``batch`` and context give identical
        text; ``skip`` (keys stored before, as for judge) leaves the groups as they were, so a resumed run
        equals an uninterrupted one. ``batch=1`` is the one-sequence decode of earlier versions. A different
        batch size changes the batch shapes, and on a quantized model that moves the logits (as packing moves
        judge scores), so sampled text can differ.
        """
        batch = max(1, min(batch, self.n_seq))
        seqs = [self._gen_seq(i, r) for i, r in enumerate(requests)]
        for group in self._plan_gen_groups(seqs, batch):
            if all(requests[g.index].key in skip for g in group):
                continue
            self._check_cancel(cancel)
            for g, gen in self._generate_group(group, cancel):
                key = requests[g.index].key
                if key not in skip:
                    yield key, gen

    def prompt_processing_rate(self, n_tokens: int = 512, repeats: int = 2) -> float:
        """llama.cpp's raw prompt-processing rate on one ``n_tokens`` prompt (tokens/s, best of ``repeats``)."""
        n_tokens = min(n_tokens, self.n_ctx - 1)
        rng = np.random.default_rng(0)
        tokens = [int(self._ll.llama_vocab_bos(self._vocab))]
        tokens += [int(t) for t in rng.integers(min(300, self.n_vocab - 1), self.n_vocab, n_tokens - 1)]
        best = 0.0
        for _ in range(repeats):
            self.reset()
            t0 = time.perf_counter()
            self._decode_plain(tokens, 0, None)
            best = max(best, n_tokens / (time.perf_counter() - t0))
        self.reset()
        return best

    # -- internals --------------------------------------------------------------------------------------

    def _fit(self, tokens: list[int]) -> tuple[list[int], bool]:
        """Cut from the left (after BOS) so the item fits the context."""
        limit = self.n_ctx - 1
        if len(tokens) <= limit:
            return tokens, False
        return tokens[:1] + tokens[len(tokens) - (limit - 1):], True

    def _gen_seq(self, index: int, r: GenerationRequest) -> _GenSeq:
        """A request's prompt tokens and answer budget; a prompt too long for the context loses tokens from its
        left (after BOS), flagged ``truncated``, as for one sequence alone."""
        max_tokens = max(1, min(r.max_tokens, self.n_ctx // 2))
        tokens = self.tokenize(r.prompt)
        truncated = False
        room = self.n_ctx - max_tokens
        if len(tokens) > room:
            tokens = tokens[:1] + tokens[len(tokens) - (room - 1):]
            truncated = True
        return _GenSeq(index, tokens, max_tokens, truncated, r)

    def _plan_gen_groups(self, seqs: list[_GenSeq], batch: int) -> Iterator[list[_GenSeq]]:
        """Consecutive groups of at most ``batch``: as many as fit the KV cache (their prompts' prefix tree and
        every answer's budget); a function of the requests alone."""
        start = 0
        while start < len(seqs):
            root: dict = {}
            used = 0
            group: list[_GenSeq] = []
            for g in seqs[start:]:
                if len(group) >= batch:
                    break
                node = root
                new = 0
                for tok in g.tokens:
                    nxt = node.get(tok)
                    if nxt is None:
                        nxt = {}
                        new += 1
                    node = nxt
                if group and used + new + g.max_tokens > self.n_ctx - 4:
                    break
                node = root
                for tok in g.tokens:
                    node = node.setdefault(tok, {})
                used += new + g.max_tokens
                group.append(g)
            start += len(group)
            yield group

    def _generate_group(self, group: list[_GenSeq], cancel: threading.Event | None
                        ) -> Iterator[tuple[_GenSeq, Generation]]:
        """Decode one group (``generate_many``); yields its sequences in group order once all have finished."""
        try:
            results = self._decode_group(group, cancel)
        except _DecodeError as exc:
            if len(group) == 1:
                raise UserError(f"{self.model_path}: generation failed ({exc}); try a larger --n-ctx") from exc
            LOG.warning("decode failed (%s); generating %d sequence(s) one at a time", exc, len(group))
            results = []
            for g in group:
                g.restart()
                results += self._generate_group([g], cancel)
        yield from results

    def _decode_group(self, group: list[_GenSeq], cancel: threading.Event | None
                      ) -> list[tuple[_GenSeq, Generation]]:
        """The whole group, then the cache cleared: a caller may use the engine (judge) between groups."""
        ll = self._ll
        self.reset()
        chains = []
        try:
            for g in group:
                r = g.request
                chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
                chains.append(chain)
                if r.temperature <= 0:
                    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
                else:
                    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(r.top_p, 1))
                    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(r.temperature))
                    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(r.seed & 0xFFFFFFFF))
            # the prompts as one prefix tree; each prompt's last token asks for logits and is sampled from at once
            roots: dict[int, _GenNode] = {}
            order: list[_GenNode] = []
            for k, g in enumerate(group):
                children = roots
                node: _GenNode | None = None
                for pos, tok in enumerate(g.tokens):
                    node = children.get(tok)
                    if node is None:
                        node = children[tok] = _GenNode(tok, pos)
                        order.append(node)
                    node.seqs.append(k)
                    children = node.children
                assert node is not None  # a prompt has BOS at least
                node.last.append(k)
            n = 0
            pending: list[tuple[int, list[int]]] = []
            for node in order:
                if n == self.n_batch:
                    self._gen_flush(n, pending, group, chains, cancel)
                    n, pending = 0, []
                self._put(n, node.token, node.pos, node.seqs, bool(node.last))
                if node.last:
                    pending.append((n, node.last))
                n += 1
            if n:
                self._gen_flush(n, pending, group, chains, cancel)
            while True:
                active = [k for k, g in enumerate(group) if not g.done]
                if not active:
                    break
                for j, k in enumerate(active):
                    g = group[k]
                    self._put(j, g.next_token, g.pos, (k,), True)
                self._gen_flush(len(active), [(j, [k]) for j, k in enumerate(active)], group, chains, cancel)
        finally:
            for chain in chains:
                ll.llama_sampler_free(chain)
            self.reset()
        return [(g, g.result()) for g in group]

    def _gen_flush(self, n: int, pending: list[tuple[int, list[int]]], group: list[_GenSeq], chains: list[Any],
                   cancel: threading.Event | None) -> None:
        """Decode the batch's ``n`` tokens, then sample the next token of each sequence listed in ``pending``."""
        ll = self._ll
        self._check_cancel(cancel)
        self._decode(n)
        jobs = [(idx, k) for idx, ks in pending for k in ks]
        ctx = self._ctx

        def sample(job: tuple[int, int]) -> int:
            return int(ll.llama_sampler_sample(chains[job[1]], ctx, job[0]))

        if len(jobs) > 1 and self.sample_threads > 1:
            if self._sample_pool is None:
                self._sample_pool = ThreadPoolExecutor(self.sample_threads, thread_name_prefix="misalign-sample")
            # the first read of the step's logits synchronises the context and puts its outputs in order (it
            # writes); after it every reader only reads
            ll.llama_get_logits_ith(ctx, jobs[0][0])
            tokens = list(self._sample_pool.map(sample, jobs))
        else:
            tokens = [sample(job) for job in jobs]
        for (_idx, k), tok in zip(jobs, tokens, strict=True):
            g = group[k]
            g.take(tok, bool(ll.llama_vocab_is_eog(self._vocab, tok)), self._piece_bytes(tok))
            if g.done:
                ll.llama_memory_seq_rm(self._mem, k, -1, -1)

    def _check_cancel(self, cancel: threading.Event | None) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()

    def _put(self, i: int, token: int, pos: int, seqs: Sequence[int], logits: bool) -> None:
        """Slot ``i`` of the batch: ``token`` at ``pos`` in each of ``seqs``, with or without its logits row."""
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = len(seqs)
        for j, s in enumerate(seqs):
            b.seq_id[i][j] = s
        b.logits[i] = 1 if logits else 0

    def _decode(self, n: int) -> None:
        self.tokens_decoded += n
        self._batch.n_tokens = n
        rc = self._ll.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise _DecodeError(rc)

    def _decode_plain(self, tokens: Sequence[int], start: int, cancel: threading.Event | None) -> None:
        """Decode ``tokens`` at positions ``start``… into sequence 0, with logits on the last token only."""
        for c0 in range(0, len(tokens), self.n_batch):
            self._check_cancel(cancel)
            chunk = tokens[c0:c0 + self.n_batch]
            for i, tok in enumerate(chunk):
                pos = start + c0 + i
                self._put(i, tok, pos, (0,), c0 + i == len(tokens) - 1)
            self._decode(len(chunk))

    def _logprobs(self, batch_index: int, wanted: np.ndarray) -> dict[int, float]:
        ptr = self._ll.llama_get_logits_ith(self._ctx, batch_index)
        row = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        m = float(row.max())
        lse = m + math.log(float(np.exp(row - m, dtype=np.float32).sum(dtype=np.float64)))
        return {int(t): float(row[t]) - lse for t in wanted}

    def _score(self, items: list[_Item], answer_ids: np.ndarray | None, cancel: threading.Event | None,
               prefix_reuse: bool) -> Iterator[_Item]:
        """Fill each item's ``path`` with nodes whose ``logp`` holds what its score needs; yields the items not
        marked ``skip``, in order, each as soon as the decode step that completes it returns.

        The windows are fixed by the item order alone (``_plan_windows``) and each starts from a cleared cache,
        so an item's numbers are a function of the run's items, never of which are left: a window holding a
        skipped item (stored before an interruption) is decoded whole again, and a window of skipped items only
        is not decoded at all. Quantized kernels are not batch-invariant, so nothing weaker would make a resumed
        run equal an uninterrupted one bit for bit.
        """
        try:
            if not prefix_reuse:
                for item in items:
                    if item.skip:
                        continue
                    self.reset()
                    yield from self._run_window([item], answer_ids, cancel)
                self.reset()
                return
            for window in self._plan_windows(items):
                if all(item.skip for item in window):
                    continue
                self._check_cancel(cancel)
                self.reset()
                finished = 0
                try:
                    for item in self._run_window(window, answer_ids, cancel):
                        finished += 1
                        if not item.skip:
                            yield item
                except _DecodeError as exc:
                    # No room in the cache: the rest of the window one item at a time, each from a cleared
                    # cache (deterministic too: the same window fails at the same step).
                    LOG.warning("decode failed (%s); retrying %d item(s) one at a time", exc,
                                len(window) - finished)
                    for item in window[finished:]:
                        self.reset()
                        for done in self._run_window([item], answer_ids, cancel):
                            if not done.skip:
                                yield done
            self.reset()
        except BaseException:
            self.reset()  # a half-decoded window leaves the cache in an unknown state
            raise

    def _plan_windows(self, items: list[_Item]) -> Iterator[list[_Item]]:
        """Consecutive windows, greedy from the first item: as many items as fit in the KV cache (their prefix
        tree) and the sequence slots. A function of the items alone, so a resumed run packs as a fresh one."""
        budget = self.n_ctx - 4
        start = 0
        while start < len(items):
            root: dict = {}
            used = 0
            window: list[_Item] = []
            for item in items[start:]:
                if len(window) >= self.max_window:
                    break
                node = root
                depth = 0
                while depth < len(item.tokens) and item.tokens[depth] in node:
                    node = node[item.tokens[depth]]
                    depth += 1
                new = len(item.tokens) - depth
                if window and used + new > budget:
                    break
                for pos in range(depth, len(item.tokens)):
                    node = node.setdefault(item.tokens[pos], {})
                used += new
                window.append(item)
            start += len(window)
            yield window

    def _run_window(self, window: list[_Item], answer_ids: np.ndarray | None,
                    cancel: threading.Event | None) -> Iterator[_Item]:
        """Decode the window's prefix tree (the cache is empty: ``reset()`` came first), one sequence per item;
        yields each item, in window order, once the decode step holding its last token has returned."""
        roots: dict[int, _Node] = {}
        order: list[_Node] = []
        for seq, item in enumerate(window):
            children = roots
            path: list[_Node] = []
            for pos in range(len(item.tokens)):
                tok = item.tokens[pos]
                node = children.get(tok)
                if node is None:
                    node = children[tok] = _Node(tok, pos, len(order))
                    order.append(node)
                node.seqs.append(seq)
                path.append(node)
                children = node.children
            item.path = path
            for pos in range(item.out_from, item.out_to + 1):
                path[pos].out = True
        n = 0
        n_out = 0
        pending: list[tuple[_Node, int]] = []
        ready = 0  # items of the window handed out so far
        for node in order:
            if n == self.n_batch or (node.out and n_out == MAX_OUTPUTS_PER_DECODE):
                self._flush(n, pending, answer_ids, cancel)
                n, n_out, pending = 0, 0, []
                while ready < len(window) and window[ready].path[-1].index < node.index:
                    yield window[ready]
                    ready += 1
            self._put(n, node.token, node.pos, node.seqs, bool(node.out))
            if node.out:
                pending.append((node, n))
                n_out += 1
            n += 1
        if n:
            self._flush(n, pending, answer_ids, cancel)
        yield from window[ready:]

    def _flush(self, n: int, pending: list[tuple[_Node, int]], answer_ids: np.ndarray | None,
               cancel: threading.Event | None) -> None:
        self._check_cancel(cancel)
        self._decode(n)
        for node, idx in pending:
            wanted = np.fromiter(node.children.keys(), dtype=np.int64, count=len(node.children))
            if answer_ids is not None:
                wanted = np.concatenate([wanted, answer_ids])
            node.logp = self._logprobs(idx, wanted)


class _DecodeError(RuntimeError):
    def __init__(self, rc: int) -> None:
        super().__init__(f"llama_decode returned {rc}")
        self.rc = rc
