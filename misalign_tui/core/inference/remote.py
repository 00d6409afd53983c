"""A backend over an OpenAI-compatible inference server (llama.cpp's or llama-cpp-python's server, vLLM).

Scores come from prompt log-probabilities, never from ``top_logprobs`` (capped at 5 or 20 entries, so it can
miss the answer words): ``/v1/completions`` with ``echo: true, logprobs: 1, max_tokens: 1`` returns the
log-probability of every prompt token. Judge: the server scores ``text`` alone and ``text + word`` for each
answer-word variant; a variant counts when it adds exactly one token after an unchanged prefix — the
probability of that token at the next position, as the in-process engine measures it. Loglik: the server
scores ``context`` and ``context + continuation``; the continuation's tokens are those after the common token
prefix. A server that cannot return prompt log-probabilities makes judge and loglik fail with a UserError that
names the method: there is no silent fallback to a different measure.

Standard library only (http.client, concurrent.futures). Requests for one item go to one server in sequence,
so its prefix cache is reused; items spread over the servers of a model. Timeouts, connection errors, 429 and
5xx are retried with exponential backoff, moving to the next server; the last failure is a UserError. The API
key is read from the environment variable the model names, and is never stored or logged.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.formatting import format_user_turn
from misalign_tui.core.inference.judge_templates import JUDGE_NO, JUDGE_YES
from misalign_tui.core.inference.requests import (
    Generation,
    JudgeRequest,
    JudgeScore,
    LoglikRequest,
    LoglikScore,
)
from misalign_tui.core.inference.token_spans import token_ends
from misalign_tui.core.models.endpoints import Endpoint, parse_urls

T = TypeVar("T")
R = TypeVar("R")

ECHO_UNAVAILABLE = ("the server does not return prompt log-probabilities (/v1/completions with echo and "
                    "logprobs), so {method} is unavailable with it; use llama-cpp-python's server started with "
                    "--logits_all true, or vLLM")


@dataclass(frozen=True)
class RemoteSettings:
    concurrency: int = 4          # items in flight at once, over all servers
    timeout_s: float = 300.0      # per HTTP request
    retries: int = 5              # further tries after the first, on timeouts, connection errors, 429, 5xx
    backoff_s: float = 1.0        # first wait; doubles each retry
    backoff_max_s: float = 30.0


class ServerFault(Exception):
    """A failure worth retrying (timeout, refused or dropped connection, 429, 5xx)."""


class HttpClient:
    """JSON over HTTP with one keep-alive connection per thread and server, retries and clear errors."""

    def __init__(self, endpoints: Sequence[Endpoint], *, api_key: str | None, settings: RemoteSettings,
                 api_key_env: str | None = None) -> None:
        self.endpoints = list(endpoints)
        self.settings = settings
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._local = threading.local()
        self._next = itertools.count()
        self._all_conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()

    def pick(self) -> int:
        """Round-robin start server for a new item."""
        return next(self._next) % len(self.endpoints)

    def _conn(self, ep: Endpoint) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(ep.url)
        if c is None:
            cls = http.client.HTTPSConnection if ep.scheme == "https" else http.client.HTTPConnection
            c = cls(ep.host, ep.port, timeout=self.settings.timeout_s)
            conns[ep.url] = c
            with self._conns_lock:
                self._all_conns.append(c)
        return c

    def _drop(self, ep: Endpoint) -> None:
        c = getattr(self._local, "conns", {}).pop(ep.url, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        with self._conns_lock:
            for c in self._all_conns:
                c.close()
            self._all_conns.clear()

    def _once(self, ep: Endpoint, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        conn = self._conn(ep)
        try:
            conn.request(method, ep.base_path + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(ep)
            what = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else (
                str(exc) or type(exc).__name__)
            raise ServerFault(f"{ep.url}: {what}") from exc
        if resp.getheader("Connection", "").lower() == "close":
            self._drop(ep)
        status = resp.status
        message = _error_message(raw)
        if status == 429 or status >= 500:
            raise ServerFault(f"{ep.url}{path}: HTTP {status}: {message}")
        if status in (401, 403):
            hint = (f"check the key in ${self._api_key_env}" if self._api_key_env
                    else "the server wants an API key: models add-remote ... --api-key-env VAR")
            raise UserError(f"{ep.url}{path}: HTTP {status} (not authorised): {message}; {hint}")
        if status >= 400:
            raise _ClientError(ep, path, status, message)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise UserError(f"{ep.url}{path}: the server answered HTTP {status} with something that is not "
                            f"JSON ({raw[:80]!r}); is this an OpenAI-compatible server?") from exc

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, start: int = 0,
                cancel: threading.Event | None = None) -> tuple[Any, int]:
        """Send to server ``start``; on a retryable fault wait (doubling) and try the next server.

        Returns the decoded JSON and the index of the server that answered (keep using it for this item).
        """
        s = self.settings
        last: ServerFault | None = None
        for attempt in range(s.retries + 1):
            index = (start + attempt) % len(self.endpoints)
            if attempt:
                delay = min(s.backoff_max_s, s.backoff_s * 2 ** (attempt - 1))
                if cancel is not None:
                    if cancel.wait(delay):
                        raise Cancelled()
                else:
                    time.sleep(delay)
            try:
                return self._once(self.endpoints[index], method, path, body), index
            except ServerFault as exc:
                if _feature_missing(str(exc)):
                    raise _ClientError(self.endpoints[index], path, 500, str(exc)) from exc
                last = exc
        assert last is not None
        raise UserError(f"{last} — still failing after {s.retries + 1} tries over "
                        f"{len(self.endpoints)} server(s); check the server is running, then rerun the same "
                        "command (finished items are kept)")


class _ClientError(UserError):
    """A 4xx answer: not retried. ``feature`` says whether it reads as an unsupported request."""

    def __init__(self, ep: Endpoint, path: str, status: int, message: str) -> None:
        super().__init__(f"{ep.url}{path}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.feature = status in (404, 405, 501) or _feature_missing(message)


def _feature_missing(message: str) -> bool:
    m = message.lower()
    return any(s in m for s in ("logits_all", "not supported", "unsupported", "not implemented",
                                "extra inputs are not permitted", "echo"))


def _error_message(raw: bytes) -> str:
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail", obj.get("message", obj)))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(obj)[:300]


@dataclass(frozen=True)
class EchoedPrompt:
    """The server's tokens for a prompt and each token's log-probability given the tokens before it."""

    tokens: list[str]
    logprobs: list[float | None]
    prompt_tokens: int              # as the server counts them (with BOS where it adds one)
    server: int                     # index of the server that answered


def answer_word_variants(words: Iterable[str]) -> list[str]:
    """Each word as written, lower, Capitalised and UPPER, each with and without a leading space."""
    out: list[str] = []
    for w in words:
        w = w.strip()
        for form in (w, w.lower(), w.capitalize(), w.upper()):
            for v in (form, " " + form):
                if v not in out:
                    out.append(v)
    return out


class RemoteBackend:
    """The Backend protocol (core/backend.py) over one or more OpenAI-compatible servers for one model."""

    device = "remote"
    n_ctx: int | None = None  # unknown: the server refuses prompts too long for its context (no local cutting)

    def __init__(self, urls: str | Sequence[str], remote_model: str | None = None, *,
                 api_key_env: str | None = None, chat_template: str | None = None,
                 settings: RemoteSettings = RemoteSettings(), name: str | None = None) -> None:
        if settings.concurrency < 1:
            raise UserError(f"--concurrency {settings.concurrency}: must be at least 1")
        self.endpoints = parse_urls(urls)
        self.remote_model = remote_model
        self.api_key_env = api_key_env
        self.chat_template = chat_template
        self.settings = settings
        self.name = name or remote_model or self.endpoints[0].url
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise UserError(f"model {self.name}: the API key variable ${api_key_env} is not set; export it "
                                "and rerun")
        self.http = HttpClient(self.endpoints, api_key=api_key, settings=settings, api_key_env=api_key_env)
        self._context_cache: dict[str, EchoedPrompt] = {}
        self._unlisted: dict[int, int] = {}  # per server: prompt tokens it counts but does not list (BOS)
        self._cache_lock = threading.Lock()
        self._provenance: dict[str, Any] | None = None

    # -- provenance -------------------------------------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        """Server URLs, the models each reports on /v1/models and its version where it tells one.

        Contacting every server here also checks, before a run starts, that each is up and serves the model.
        """
        if self._provenance is not None:
            return self._provenance
        servers = []
        for i, ep in enumerate(self.endpoints):
            listing, _ = self.http.request("GET", "/v1/models", start=i)
            ids = [str(m.get("id")) for m in (listing.get("data") or []) if isinstance(m, dict)]
            if self.remote_model and ids and self.remote_model not in ids:
                raise UserError(f"{ep.url}: serves {', '.join(ids)}, not {self.remote_model!r}; fix the model "
                                f"name (models add-remote {self.name} --url ... --model NAME)")
            servers.append({"url": ep.url, "models": ids, "version": self._server_version(i)})
        self._provenance = {
            "backend": "remote",
            "api": "openai-completions",
            "scoring": "prompt log-probabilities (echo + logprobs)",
            "remote_model": self.remote_model,
            "servers": servers,
            "api_key_env": self.api_key_env,      # the variable's name only, never the key
            "chat_template": self.chat_template,
            "concurrency": self.settings.concurrency,
        }
        return self._provenance

    def _server_version(self, index: int) -> str | None:
        """vLLM answers /version; llama.cpp's server /props (build_info); others report nothing."""
        for path, key in (("/version", "version"), ("/props", "build_info")):
            try:
                obj = self.http._once(self.endpoints[index], "GET", path, None)
            except (UserError, ServerFault):
                continue
            if isinstance(obj, dict) and obj.get(key):
                return str(obj[key])
        return None

    # -- formatting -------------------------------------------------------------------------------------

    def format_user_turn(self, text: str) -> str:
        """The engine's formatting (inference/formatting.py), done here so the server receives plain text; the
        template gets empty BOS/EOS texts, as the server adds BOS when it tokenizes."""
        return format_user_turn(self.chat_template, text, source=f"model {self.name}")

    def fit_prompt(self, build: Callable[[str], str], prompt: str) -> tuple[str, bool]:
        """No local tokenizer: the text goes as it is, and the server refuses what its context cannot hold."""
        return build(prompt), False

    # -- scoring ----------------------------------------------------------------------------------------

    def _echo(self, prompt: str, *, start: int, cancel: threading.Event | None, method: str,
              probing: bool = False) -> EchoedPrompt | None:
        """The prompt's tokens and log-probabilities; the one generated token is cut off.

        Where the generated token sits in the list is not always visible: llama-cpp-python leaves BOS out of
        the list (in the prompt and when generated) yet counts it in ``usage``. When the generated text is
        empty, the count of prompt entries comes from ``usage.prompt_tokens`` less the entries this server
        leaves out, learnt from an unambiguous answer (``probing`` asks for one; None when this is not).
        """
        body: dict[str, Any] = {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1,
                                "temperature": 0.0}
        if self.remote_model:
            body["model"] = self.remote_model
        try:
            obj, server = self.http.request("POST", "/v1/completions", body, start=start, cancel=cancel)
        except _ClientError as exc:
            if exc.feature:
                raise UserError(f"{self.endpoints[start].url}: " + ECHO_UNAVAILABLE.format(method=method)
                                + f" (server said: {exc.message})") from exc
            raise
        url = self.endpoints[server].url
        try:
            choice = obj["choices"][0]
            lp = choice.get("logprobs") or {}
            tokens = lp.get("tokens")
            token_logprobs = lp.get("token_logprobs")
            usage = obj.get("usage") or {}
            generated = int(usage.get("completion_tokens", 1))
            prompt_tokens = int(usage["prompt_tokens"]) if "prompt_tokens" in usage else None
            text = choice.get("text")
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{url}/v1/completions: unexpected answer shape ({str(obj)[:120]}); "
                            + ECHO_UNAVAILABLE.format(method=method)) from exc
        echoed = isinstance(text, str) and text.startswith(prompt)
        if not tokens or token_logprobs is None or len(tokens) != len(token_logprobs) or not echoed:
            raise UserError(f"{url}: " + ECHO_UNAVAILABLE.format(method=method))
        if generated == 0 or text[len(prompt):]:
            n = len(tokens) - generated          # the generated token, if any, is listed last
            if prompt_tokens is not None:
                self._unlisted[server] = prompt_tokens - n
        elif probing:
            return None
        else:
            unlisted = self._unlisted.get(server)
            if unlisted is None:
                unlisted = self._learn_unlisted(server, cancel, method)
            if prompt_tokens is None:
                raise UserError(f"{url}: the server reports no usage.prompt_tokens; cannot tell prompt tokens "
                                f"from generated ones, so {method} is unavailable with it")
            n = prompt_tokens - unlisted
        if not 0 < n <= len(tokens):
            raise UserError(f"{url}: the echoed prompt has {len(tokens)} tokens but the server counts "
                            f"{prompt_tokens}; " + ECHO_UNAVAILABLE.format(method=method))
        return EchoedPrompt([str(t) for t in tokens[:n]], list(token_logprobs[:n]), prompt_tokens or n, server)

    def _learn_unlisted(self, server: int, cancel: threading.Event | None, method: str) -> int:
        for probe in ("The", "Hello, world.", "1 2 3", "A short test sentence:"):
            self._echo(probe, start=server, cancel=cancel, method=method, probing=True)
            if server in self._unlisted:
                return self._unlisted[server]
        raise UserError(f"{self.endpoints[server].url}: cannot tell the prompt's tokens from the generated one "
                        f"in the server's answers, so {method} is unavailable with it")

    def _judge_one(self, req: JudgeRequest, variants: list[tuple[str, bool]],
                   cancel: threading.Event | None) -> JudgeScore:
        base = self._echo(req.text, start=self.http.pick(), cancel=cancel, method="judge")
        assert base is not None
        server = base.server
        n = len(base.tokens)
        p_yes = p_no = 0.0
        seen: set[str] = set()
        for word, is_yes in variants:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            got = self._echo(req.text + word, start=server, cancel=cancel, method="judge")
            assert got is not None
            server = got.server
            # a variant counts only when it is one more token after the unchanged prompt tokens
            if len(got.tokens) != n + 1 or got.tokens[:n] != base.tokens:
                continue
            token, lp = got.tokens[n], got.logprobs[n]
            if token in seen:
                continue
            if lp is None:
                raise UserError(f"item {req.key}: the server gives no log-probability for the first token; "
                                "the judge text must not be empty")
            seen.add(token)
            if is_yes:
                p_yes += math.exp(lp)
            else:
                p_no += math.exp(lp)
        if not seen:
            raise UserError(f"item {req.key}: no answer word is a single token after the judge text on this "
                            "server's model; choose other answer words")
        total = p_yes + p_no
        p_mis = p_yes / total if total > 0 else 0.5
        return JudgeScore(req.key, p_mis, p_yes, p_no, base.prompt_tokens, False)

    def judge(self, requests: Sequence[JudgeRequest], *, yes_words: Sequence[str] = JUDGE_YES,
              no_words: Sequence[str] = JUDGE_NO, cancel: threading.Event | None = None) -> Iterator[JudgeScore]:
        """P(misaligned) per request, in request order."""
        variants = [(w, True) for w in answer_word_variants(yes_words)]
        variants += [(w, False) for w in answer_word_variants(no_words) if w not in dict(variants)]
        return self._map(lambda r: self._judge_one(r, variants, cancel), requests, cancel)

    def _context(self, context: str, *, start: int, cancel: threading.Event | None) -> EchoedPrompt:
        with self._cache_lock:
            hit = self._context_cache.get(context)
        if hit is not None:
            return hit
        got = self._echo(context, start=start, cancel=cancel, method="loglik (preference)")
        assert got is not None
        with self._cache_lock:
            if len(self._context_cache) > 256:
                self._context_cache.clear()
            self._context_cache[context] = got
        return got

    def _loglik_one(self, req: LoglikRequest, cancel: threading.Event | None) -> LoglikScore:
        start = self.http.pick()
        ctx = self._context(req.context, start=start, cancel=cancel)
        full = self._echo(req.context + req.continuation, start=ctx.server, cancel=cancel,
                          method="loglik (preference)")
        assert full is not None
        # the continuation starts after the longest common token prefix (a merged boundary token counts)
        k = 0
        for a, b in zip(ctx.tokens, full.tokens, strict=False):
            if a != b:
                break
            k += 1
        k = min(k, len(full.tokens) - 1) if req.continuation else k
        picked = full.logprobs[k:]
        values = [lp for lp in picked if lp is not None]
        if len(values) != len(picked):
            raise UserError(f"item {req.key}: the server gives no log-probability for the first token; "
                            "give a non-empty context")
        ends = token_ends(req.continuation, [t.encode("utf-8") for t in full.tokens[k:]])
        return LoglikScore(req.key, float(sum(values)), len(values), False, tuple(float(v) for v in values), ends)

    def loglik(self, requests: Sequence[LoglikRequest], *,
               cancel: threading.Event | None = None) -> Iterator[LoglikScore]:
        """Sum of the continuation tokens' log-probabilities given the context, in request order."""
        return self._map(lambda r: self._loglik_one(r, cancel), requests, cancel)

    # -- generation -------------------------------------------------------------------------------------

    def generate(self, prompt: str, *, temperature: float = 0.7, top_p: float = 0.9, max_tokens: int = 512,
                 stop: Sequence[str] = (), seed: int = 0, cancel: threading.Event | None = None) -> Generation:
        body: dict[str, Any] = {"prompt": prompt, "temperature": temperature, "top_p": top_p,
                                "max_tokens": max_tokens, "seed": seed}
        if stop:
            body["stop"] = list(stop)
        if self.remote_model:
            body["model"] = self.remote_model
        try:
            obj, _ = self.http.request("POST", "/v1/completions", body, start=self.http.pick(), cancel=cancel)
        except _ClientError as exc:
            if exc.feature:
                raise UserError(f"{exc}; generate (text completion with a seed) is unavailable on this server"
                                ) from exc
            raise
        try:
            choice = obj["choices"][0]
            text = str(choice["text"])
            tokens = int((obj.get("usage") or {}).get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UserError(f"/v1/completions: unexpected answer shape ({str(obj)[:120]})") from exc
        return Generation(text, tokens, choice.get("finish_reason") == "length")

    # -- concurrency ------------------------------------------------------------------------------------

    def _map(self, fn: Callable[[T], R], items: Sequence[T], cancel: threading.Event | None) -> Iterator[R]:
        """Run ``fn`` over items with at most ``concurrency`` in flight; yield results in request order.

        Request order, as the engine does (evaluate pairs a preference item's two halves by arrival). On an
        error or a cancel, nothing new starts; what finished before it in order is yielded (so the caller
        commits it), then the error (or Cancelled) is raised.
        """
        limit = self.settings.concurrency
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="remote")
        queue: deque[Future[R]] = deque()
        it = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(queue) < 2 * limit:
                    if cancel is not None and cancel.is_set():
                        exhausted = True
                        break
                    try:
                        queue.append(pool.submit(fn, next(it)))
                    except StopIteration:
                        exhausted = True
                if not queue:
                    break
                head = queue.popleft()
                try:
                    result = head.result()
                except BaseException:
                    for f in queue:
                        f.cancel()
                    raise
                yield result
            if cancel is not None and cancel.is_set():
                raise Cancelled()
        finally:
            for f in queue:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.http.close()
