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

import hashlib
import http.client
import itertools
import json
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.answer_words import answer_token_ids, answer_word_variants
from misalign_tui.core.inference.formatting import format_user_turn
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
from misalign_tui.core.models.endpoints import Endpoint, parse_urls

T = TypeVar("T")
R = TypeVar("R")

LOGIT_BIAS = 100.0  # added to the logit of every answer-word token (OpenAI's limit): they become the top tokens
JUDGE_SCORINGS = ("auto", "logit-bias", "echo")
# what the detection asks once per server and run: any text will do, the answer words are biased to the top
PROBE_TEXT = "Question: is water wet? Answer Yes or No.\nAnswer:"
ONE_REQUEST = ("one request per item: /v1/completions with max_tokens 1, a logit_bias of +{bias:g} on every "
               "answer-word token and the top log-probabilities after it (post_sampling_probs)")
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
    # judge scoring: "auto" (one request per item where the servers honour logit_bias, else echo), "logit-bias"
    # (that path or an error), "echo" (prompt log-probabilities; 1 + up to 12 requests per item)
    judge_scoring: str = "auto"


# What a server says about the weights behind a served name: the keys of its /v1/models entry that describe the
# model, never volatile ones ("created" is the time of the request on llama.cpp's server). llama.cpp's server
# lists "meta" (n_params, size, n_vocab, n_embd, n_ctx_train, vocab_type) and its /props "model_path"; vLLM
# "root", "parent" and "max_model_len"; llama-cpp-python's server only the id (the file path, or the alias).
WEIGHTS_KEYS = ("id", "root", "parent", "owned_by", "max_model_len", "meta")


def weights_report(entry: dict[str, Any], props: dict[str, Any] | None = None) -> dict[str, Any]:
    """The identifying part of a server's /v1/models entry (and /props), as stored in a run's provenance."""
    out = {k: entry[k] for k in WEIGHTS_KEYS if entry.get(k) is not None}
    if props and isinstance(props.get("model_path"), str):
        out["model_path"] = props["model_path"]
    return out


def remote_identity(served_name: str, weights: dict[str, Any]) -> str:
    """``remote:<served name>:<digest of what the servers report about the weights>``: stored as the run's
    model identity. With a registration (the model row, matched separately) it decides which run a request
    resumes: other weights behind the same name are another model."""
    digest = hashlib.sha256(json.dumps(weights, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"remote:{served_name}:{digest[:16]}"


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
        self._sent_lock = threading.Lock()
        self.sent = 0  # HTTP requests sent (retries included): what `bench remote` divides by items

    def _count(self) -> None:
        with self._sent_lock:
            self.sent += 1

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
        self._count()
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


class _BiasUnsupported(Exception):
    """The server does not honour the one-request judge; the message says what it lacks."""


@dataclass(frozen=True)
class AnswerTokens:
    """The token ids of the yes- and no-words on a server's tokenizer, with their pieces (for servers that
    name the top tokens by text only)."""

    yes: frozenset[int]
    no: frozenset[int]
    pieces: dict[int, str]

    @property
    def ids(self) -> list[int]:
        return sorted(self.yes | self.no)

    def shares(self, entries: Sequence[tuple[int | None, str, float]], url: str, *,
               full_list: bool) -> tuple[float, float]:
        """(P(yes-set), P(no-set)) under the bias, from the server's top entries.

        The bias adds one constant to every answer token's logit, so their ratios — and the normalised
        P(misaligned) — are those of the unbiased model; the top entries must be the answer tokens and nothing
        else. ``full_list``: the detection wants every asked entry back; later a shorter list only means the
        server dropped answer tokens whose probability is 0 (llama.cpp does).
        """
        by_piece: dict[str, int | None] = {}
        for t, piece in self.pieces.items():
            by_piece[piece] = None if piece in by_piece else t
        if not entries:
            raise _BiasUnsupported("it returns no top log-probabilities for the generated token")
        p_yes = p_no = 0.0
        seen: set[int] = set()
        for tid, text, lp in entries:
            found = tid if tid is not None else by_piece.get(text)
            if found is None or found not in self.pieces:
                raise _BiasUnsupported(f"it accepts logit_bias but ignores it: the answer words are not the top "
                                       f"tokens (it lists {text!r})")
            if found in seen:
                continue
            seen.add(found)
            if found in self.yes:
                p_yes += math.exp(lp)
            else:
                p_no += math.exp(lp)
        asked = len(self.pieces)
        if full_list and len(entries) < asked:
            raise _BiasUnsupported(f"it answers with {len(entries)} top log-probabilities where {asked} were "
                                   "asked")
        return p_yes, p_no


def _top_entries(lp: Any) -> list[tuple[int | None, str, float]]:
    """The first generated token's top entries as (id or None, text, log-probability), from llama.cpp's
    ``logprobs.content[0].top_probs`` (or ``top_logprobs``) or the legacy ``logprobs.top_logprobs[0]`` map."""
    out: list[tuple[int | None, str, float]] = []
    if not isinstance(lp, dict):
        return out
    content = lp.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        tops = first.get("top_probs") if first.get("top_probs") is not None else first.get("top_logprobs")
        for e in tops or []:
            if not isinstance(e, dict):
                continue
            if "prob" in e:
                p = float(e["prob"])
                if p <= 0:
                    continue
                value = math.log(p)
            else:
                value = float(e.get("logprob", -math.inf))
            tid = e.get("id")
            out.append((int(tid) if isinstance(tid, int) else None, str(e.get("token", "")), value))
        return out
    legacy = lp.get("top_logprobs")
    if isinstance(legacy, list) and legacy and isinstance(legacy[0], dict):
        out = [(None, str(k), float(v)) for k, v in legacy[0].items() if v is not None]
        out.sort(key=lambda e: -e[2])
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
        self._scoring: dict[str, Any] | None = None  # the judge path, decided once (judge_scoring)
        self._answer_tokens: dict[tuple[tuple[str, ...], tuple[str, ...]], AnswerTokens] = {}
        if settings.judge_scoring not in JUDGE_SCORINGS:
            raise UserError(f"judge scoring {settings.judge_scoring!r}: use one of {', '.join(JUDGE_SCORINGS)}")

    # -- provenance -------------------------------------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        """Server URLs, the models each reports on /v1/models, what it says about the weights and its version
        where it tells one, and the model's ``identity``.

        Contacting every server here also checks, before a run starts, that each is up and serves the model,
        and that all of them report the same weights.
        """
        if self._provenance is not None:
            return self._provenance
        servers: list[dict[str, Any]] = []
        for i, ep in enumerate(self.endpoints):
            listing, _ = self.http.request("GET", "/v1/models", start=i)
            entries = [m for m in (listing.get("data") or []) if isinstance(m, dict)]
            ids = [str(m.get("id")) for m in entries]
            if self.remote_model and ids and self.remote_model not in ids:
                raise UserError(f"{ep.url}: serves {', '.join(ids)}, not {self.remote_model!r}; fix the model "
                                f"name (models add-remote {self.name} --url ... --model NAME)")
            served = self.remote_model or (ids[0] if len(ids) == 1 else None)
            entry = next((m for m in entries if str(m.get("id")) == served), {})
            version, props = self._server_props(i)
            servers.append({"url": ep.url, "models": ids, "version": version,
                            "weights": weights_report(entry, props)})
        first = servers[0]
        for other in servers[1:]:
            if other["weights"] != first["weights"]:
                raise UserError(f"{first['url']} and {other['url']} report different weights for "
                                f"{self.remote_model!r} ({first['weights']} / {other['weights']}); register each "
                                "model under its own name (models add-remote)")
        scoring = self.judge_scoring()
        self._provenance = {
            "backend": "remote",
            "api": "openai-completions",
            "scoring": ("prompt log-probabilities (echo + logprobs)" if scoring["judge"] == "echo" else
                        "judge: " + ONE_REQUEST.format(bias=LOGIT_BIAS)
                        + "; loglik: prompt log-probabilities (echo + logprobs)"),
            "judge_scoring": scoring,
            "remote_model": self.remote_model,
            "identity": remote_identity(self.remote_model or "", first["weights"]),
            "servers": servers,
            "api_key_env": self.api_key_env,      # the variable's name only, never the key
            "chat_template": self.chat_template,
            "concurrency": self.settings.concurrency,
        }
        return self._provenance

    @property
    def identity(self) -> str:
        """What makes runs "the same model" here: the served name and what the servers report about the
        weights (``remote_identity``); contacts the servers the first time."""
        return str(self.provenance()["identity"])

    def _server_props(self, index: int) -> tuple[str | None, dict[str, Any]]:
        """(version, properties): vLLM answers /version; llama.cpp's server /props (build_info, model_path);
        others report nothing."""
        version: str | None = None
        props: dict[str, Any] = {}
        for path, key in (("/version", "version"), ("/props", "build_info")):
            try:
                obj = self.http._once(self.endpoints[index], "GET", path, None)
            except (UserError, ServerFault):
                continue
            if isinstance(obj, dict):
                if path == "/props":
                    props = obj
                if obj.get(key) and version is None:
                    version = str(obj[key])
        return version, props

    # -- the judge path ---------------------------------------------------------------------------------

    def judge_scoring(self) -> dict[str, Any]:
        """Which way this backend scores the judge, decided once (its first call, before a run starts) and
        recorded in the run's provenance: ``logit-bias`` when every server honours the one-request path
        (``_probe``), else ``echo`` with each server's reason; never a switch in the middle of a run."""
        if self._scoring is not None:
            return self._scoring
        mode = self.settings.judge_scoring
        if mode == "echo":
            self._scoring = {"judge": "echo", "chosen": True}
            return self._scoring
        reasons: dict[str, str] = {}
        for i, ep in enumerate(self.endpoints):
            try:
                self._probe(i)
            except _BiasUnsupported as exc:
                reasons[ep.url] = str(exc)
        if not reasons:
            self._scoring = {"judge": "logit-bias", "logit_bias": LOGIT_BIAS, "requests_per_item": 1}
        elif mode == "logit-bias":
            url, why = next(iter(reasons.items()))
            raise UserError(f"{url}: the one-request judge (logit_bias) is unavailable: {why}")
        else:
            self._scoring = {"judge": "echo", "logit_bias_unavailable": reasons}
        return self._scoring

    def _tokenize(self, server: int, text: str) -> list[tuple[int, str]]:
        """(id, piece) of ``text`` without BOS, through llama.cpp's ``/tokenize``."""
        body = {"content": text, "add_special": False, "parse_special": False, "with_pieces": True}
        try:
            obj, _ = self.http.request("POST", "/tokenize", body, start=server)
        except _ClientError as exc:
            raise _BiasUnsupported(f"it has no /tokenize endpoint to find the answer words' token ids "
                                   f"(server said: {exc.message})") from exc
        out: list[tuple[int, str]] = []
        try:
            for t in obj["tokens"]:
                piece = t["piece"]
                if isinstance(piece, list):  # bytes that are not UTF-8 on their own
                    piece = bytes(piece).decode("utf-8", "replace")
                out.append((int(t["id"]), str(piece)))
        except (KeyError, TypeError, ValueError) as exc:
            raise _BiasUnsupported(f"its /tokenize answer has no token pieces ({str(obj)[:80]})") from exc
        return out

    def answer_tokens(self, yes_words: Sequence[str] = JUDGE_YES, no_words: Sequence[str] = JUDGE_NO,
                      server: int = 0) -> AnswerTokens:
        """The answer words' token ids as the engine finds them (inference/answer_words.py), on the server's
        tokenizer; the servers of one model share it."""
        key = (tuple(yes_words), tuple(no_words))
        hit = self._answer_tokens.get(key)
        if hit is not None:
            return hit
        pieces: dict[int, str] = {}

        def tokenize(text: str) -> list[tuple[int, str]]:
            got = self._tokenize(server, text)
            pieces.update(got)
            return got

        yes = answer_token_ids(yes_words, tokenize)
        no = answer_token_ids(no_words, tokenize)
        url = self.endpoints[server].url
        if not yes or not no:
            raise UserError(f"{url}: none of the answer words {list(yes_words if not yes else no_words)} is a "
                            "single token in the served model's vocabulary")
        if set(yes) & set(no):
            raise UserError(f"answer words overlap: {list(yes_words)} and {list(no_words)}")
        at = AnswerTokens(frozenset(yes), frozenset(no), {t: pieces[t] for t in yes + no})
        self._answer_tokens[key] = at
        return at

    def _biased_top(self, prompt: str, at: AnswerTokens, *, start: int,
                    cancel: threading.Event | None) -> tuple[list[tuple[int | None, str, float]], int, int]:
        """The top log-probabilities after ``prompt`` with the answer words biased: (id or None, token text,
        log-probability) in the server's order, the server that answered and its prompt-token count."""
        body: dict[str, Any] = {
            "prompt": prompt, "max_tokens": 1, "logprobs": len(at.ids), "post_sampling_probs": True,
            "logit_bias": {str(t): LOGIT_BIAS for t in at.ids},
            # a chain that keeps every token: the bias, then temperature 1 (llama.cpp's sampler names)
            "samplers": ["temperature"], "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": 0}
        if self.remote_model:
            body["model"] = self.remote_model
        try:
            obj, server = self.http.request("POST", "/v1/completions", body, start=start, cancel=cancel)
        except _ClientError as exc:
            if exc.feature or exc.status == 400:
                raise _BiasUnsupported(f"it refuses the request (server said: {exc.message})") from exc
            raise
        try:
            choice = obj["choices"][0]
            lp = choice.get("logprobs") or {}
            prompt_tokens = int((obj.get("usage") or {}).get("prompt_tokens", 0))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise _BiasUnsupported(f"unexpected answer shape ({str(obj)[:120]})") from exc
        return _top_entries(lp), server, prompt_tokens

    def _probe(self, server: int) -> None:
        """Does this server honour the one-request judge? ``_BiasUnsupported`` says why not."""
        at = self.answer_tokens(server=server)
        entries, _, _ = self._biased_top(PROBE_TEXT, at, start=server, cancel=None)
        at.shares(entries, self.endpoints[server].url, full_list=True)

    def _judge_biased(self, req: JudgeRequest, at: AnswerTokens, cancel: threading.Event | None) -> JudgeScore:
        entries, server, prompt_tokens = self._biased_top(req.text, at, start=self.http.pick(), cancel=cancel)
        url = self.endpoints[server].url
        try:
            p_yes, p_no = at.shares(entries, url, full_list=False)
        except _BiasUnsupported as exc:
            raise UserError(f"{url}: item {req.key}: {exc}; the run scores with the one-request judge, detected "
                            "at its start, and does not switch measures midway: fix the server, then rerun "
                            "(finished items are kept)") from exc
        total = p_yes + p_no
        p_mis = p_yes / total if total > 0 else 0.5
        return JudgeScore(req.key, p_mis, p_yes, p_no, prompt_tokens, False, raw_mass=False)

    def _unavailable(self, method: str) -> str:
        """Why ``method`` cannot run here; for the judge also why the one-request path could not either."""
        text = ECHO_UNAVAILABLE.format(method=method)
        reasons = (self._scoring or {}).get("logit_bias_unavailable")
        if method == "judge" and reasons:
            text += "; nor the one-request judge (logit_bias): " + "; ".join(f"{u}: {r}" for u, r in reasons.items())
        return text

    # -- formatting -------------------------------------------------------------------------------------

    def format_user_turn(self, text: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """The engine's formatting (inference/formatting.py), done here so the server receives plain text; the
        template gets empty BOS/EOS texts, as the server adds BOS when it tokenizes."""
        return format_user_turn(self.chat_template, text, source=f"model {self.name}", history=history)

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
                raise UserError(f"{self.endpoints[start].url}: " + self._unavailable(method)
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
                            + self._unavailable(method)) from exc
        echoed = isinstance(text, str) and text.startswith(prompt)
        if not tokens or token_logprobs is None or len(tokens) != len(token_logprobs) or not echoed:
            raise UserError(f"{url}: " + self._unavailable(method))
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
                            f"{prompt_tokens}; " + self._unavailable(method))
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
              no_words: Sequence[str] = JUDGE_NO, cancel: threading.Event | None = None,
              skip: Collection[Any] = ()) -> Iterator[JudgeScore]:
        """P(misaligned) per request, in request order; ``skip``ped keys are not sent. One request per item where
        the servers honour logit_bias, else the echo path (``judge_scoring``). Each item is scored alone here, but
        a server that batches concurrent requests is not batch-invariant either: a resumed remote run reproduces
        an uninterrupted one only as closely as the server does (``--concurrency 1`` is closest)."""
        todo = [r for r in requests if r.key not in skip]
        if self.judge_scoring()["judge"] == "logit-bias":
            at = self.answer_tokens(yes_words, no_words)
            return self._map(lambda r: self._judge_biased(r, at, cancel), todo, cancel)
        variants = [(w, True) for w in answer_word_variants(yes_words)]
        variants += [(w, False) for w in answer_word_variants(no_words) if w not in dict(variants)]
        return self._map(lambda r: self._judge_one(r, variants, cancel), todo, cancel)

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

    def loglik(self, requests: Sequence[LoglikRequest], *, cancel: threading.Event | None = None,
               skip: Collection[Any] = ()) -> Iterator[LoglikScore]:
        """Sum of the continuation tokens' log-probabilities given the context, in request order (``skip``: as
        for judge)."""
        todo = [r for r in requests if r.key not in skip]
        return self._map(lambda r: self._loglik_one(r, cancel), todo, cancel)

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

    def generate_many(self, requests: Sequence[GenerationRequest], *, batch: int = 1,
                      cancel: threading.Event | None = None,
                      skip: Collection[Any] = ()) -> Iterator[tuple[Any, Generation]]:
        """(key, answer) in request order, ``concurrency`` requests in flight (``batch`` is the engine's: a
        server batches concurrent requests itself)."""
        todo = [r for r in requests if r.key not in skip]

        def one(r: GenerationRequest) -> tuple[Any, Generation]:
            return r.key, self.generate(r.prompt, temperature=r.temperature, top_p=r.top_p,
                                        max_tokens=r.max_tokens, stop=r.stop, seed=r.seed, cancel=cancel)
        return self._map(one, todo, cancel)

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
