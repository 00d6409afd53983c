"""Why a model gave its verdict on one item (docs/measures.md, "Explanations"): what the Item screen, ``misalign-tui
explain`` and the audit report show.

- A **preference** pair: each response's tokens with their log-probabilities (stored with the run since migration
  m009; recomputed through the run's model for older runs) and each token's contribution to the margin between the
  two mean log-likelihoods.
- A **judge** verdict: P(misaligned) with each sentence of the response left out, in one batched pass through the
  run's model (core/inference/attribution.py), on demand.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.attribution import leave_one_out, sentence_spans
from misalign_tui.core.inference.backend import Backend, open_backend
from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.inference.formatting import continuation_separator
from misalign_tui.core.inference.judge_templates import (
    TEMPLATE_VERSIONS,
    demonstration_turns,
    judge_template_set,
)
from misalign_tui.core.inference.requests import JudgeScore, LoglikRequest
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.models.registry import get_model_by_id
from misalign_tui.core.runs.calibration import calibration_split
from misalign_tui.core.runs.evaluate import judge_text, stored_p
from misalign_tui.core.runs.identity import protocol_of
from misalign_tui.core.store import RunInfo, Store, run_info, token_logprobs

TOP = 5  # sentences / tokens listed in each direction


# -- what an explanation holds ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenScore:
    start: int                  # characters of the response text
    end: int
    text: str                   # "" for a token that holds only the separator before the response
    logprob: float              # log P(token | everything before it), nats
    contribution: float         # to the margin (aligned − misaligned mean log-likelihood); > 0: toward aligned

    @property
    def label(self) -> str:
        """How a list names the token: its text, or what it is when it has none of the response's."""
        return self.text if self.text else "(separator)"


@dataclass(frozen=True)
class ResponseTokens:
    label: str                  # aligned | misaligned
    response_id: int
    text: str
    tokens: tuple[TokenScore, ...]

    @property
    def mean(self) -> float:
        return sum(t.logprob for t in self.tokens) / len(self.tokens) if self.tokens else float("nan")


@dataclass(frozen=True)
class PreferenceExplanation:
    run_id: int
    model: str
    pair_id: int
    prompt_key: str
    dimension: str | None
    aligned: ResponseTokens
    misaligned: ResponseTokens
    source: str                 # "stored" (with the run) or "recomputed" (through the run's model, now)
    kind: str = field(default="preference", init=False)

    @property
    def margin(self) -> float:
        """Aligned minus misaligned mean per-token log-likelihood (> 0: prefers aligned)."""
        return self.aligned.mean - self.misaligned.mean

    def toward(self, direction: str, n: int = TOP) -> list[tuple[str, TokenScore]]:
        """The ``n`` tokens that pushed the verdict most toward ``direction`` ("aligned" or "misaligned"), each
        with the label of the response it is in."""
        both = [(r.label, t) for r in (self.aligned, self.misaligned) for t in r.tokens]
        sign = 1.0 if direction == "aligned" else -1.0
        picked = [x for x in both if sign * x[1].contribution > 0]
        return sorted(picked, key=lambda x: -sign * x[1].contribution)[:n]


@dataclass(frozen=True)
class SentenceEffect:
    index: int
    start: int
    end: int
    text: str
    p_without: float            # mean P(misaligned) over the run's templates with this sentence left out
    effect: float               # P(full) − P(without): > 0, the sentence raises P(misaligned)


@dataclass(frozen=True)
class JudgeExplanation:
    run_id: int
    model: str
    response_id: int
    prompt_key: str
    label: str
    dimension: str | None
    text: str
    p_stored: float             # the run's mean P(misaligned)
    p_full: float               # the same recomputed in this pass (differs within the noise band)
    templates: int
    sentences: tuple[SentenceEffect, ...]
    requests: int
    seconds: float              # the batched pass (the model load excluded)
    kind: str = field(default="judge", init=False)

    def raising(self, n: int = TOP) -> list[SentenceEffect]:
        return sorted((s for s in self.sentences if s.effect > 0), key=lambda s: -s.effect)[:n]

    def lowering(self, n: int = TOP) -> list[SentenceEffect]:
        return sorted((s for s in self.sentences if s.effect < 0), key=lambda s: s.effect)[:n]


Explanation = JudgeExplanation | PreferenceExplanation


# -- preference ------------------------------------------------------------------------------------------------

def _response_tokens(label: str, response_id: int, text: str, logprobs: list[float], ends: list[int],
                     mu: float, n: int, sign: float) -> ResponseTokens:
    out = []
    start = 0
    for lp, end in zip(logprobs, ends, strict=True):
        end = min(end, len(text))
        out.append(TokenScore(start, end, text[start:end], lp, sign * (lp - mu) / n))
        start = end
    return ResponseTokens(label, response_id, text, tuple(out))


def _preference(run: RunInfo, pair: dict, a: tuple[list[float], list[int]], m: tuple[list[float], list[int]],
                source: str) -> PreferenceExplanation:
    """Contributions that add up to the margin: with μ the midpoint of the two means, an aligned token gives
    (lp − μ)/n_aligned and a misaligned one −(lp − μ)/n_misaligned (docs/measures.md)."""
    mean_a = sum(a[0]) / len(a[0]) if a[0] else 0.0
    mean_m = sum(m[0]) / len(m[0]) if m[0] else 0.0
    mu = (mean_a + mean_m) / 2
    aligned = _response_tokens("aligned", pair["aligned_id"], pair["aligned"], *a, mu, max(len(a[0]), 1), 1.0)
    misaligned = _response_tokens("misaligned", pair["misaligned_id"], pair["misaligned"], *m, mu,
                                  max(len(m[0]), 1), -1.0)
    return PreferenceExplanation(run.id, run.model, pair["id"], pair["key"], pair["dimension"], aligned, misaligned,
                                 source)


_PAIR_SQL = ("SELECT pr.id, pr.dimension, pr.aligned_id, pr.misaligned_id, ra.text AS aligned, rm.text AS misaligned, "
             "p.key, p.text AS prompt FROM pairs pr JOIN responses ra ON ra.id = pr.aligned_id "
             "JOIN responses rm ON rm.id = pr.misaligned_id JOIN prompts p ON p.id = pr.prompt_id WHERE pr.id = ?")


def stored_preference(store: Store, run: RunInfo, pair_id: int) -> PreferenceExplanation | None:
    """The explanation from the token log-probabilities stored with the run; None when it has none (a run from
    before migration m009, or a backend that gave none)."""
    row = store.conn.execute(
        "SELECT aligned_logprobs, aligned_lengths, misaligned_logprobs, misaligned_lengths "
        "FROM preference_token_logprobs WHERE run_id = ? AND pair_id = ? AND template = 0", (run.id, pair_id)
    ).fetchone()
    if row is None:
        return None
    pair = dict(store.conn.execute(_PAIR_SQL, (pair_id,)).fetchone())
    return _preference(run, pair, token_logprobs.unpack(row[0], row[1]), token_logprobs.unpack(row[2], row[3]),
                       "stored")


def recompute_preference(store: Store, run: RunInfo, pair_id: int, backend: Backend,
                         cancel: threading.Event | None = None) -> PreferenceExplanation:
    """The same explanation scored now through the run's model (for runs stored without token log-probabilities)."""
    pair = dict(store.conn.execute(_PAIR_SQL, (pair_id,)).fetchone())
    sep = continuation_separator(backend.chat_template)
    context = backend.format_user_turn(pair["prompt"])
    halves = []
    for score in backend.loglik([LoglikRequest("a", context, sep + pair["aligned"]),
                                 LoglikRequest("m", context, sep + pair["misaligned"])], cancel=cancel):
        if not score.token_logprobs:
            raise UserError(f"run {run.id}: model {run.model} gives no per-token log-probabilities here")
        shifted = [max(e - len(sep), 0) for e in score.token_ends]
        halves.append((list(score.token_logprobs), shifted))
    return _preference(run, pair, halves[0], halves[1], "recomputed")


def stored_preferences(store: Store, prompt_id: int) -> dict[tuple[int, int], PreferenceExplanation]:
    """Every stored preference explanation of a prompt's pairs, by (run id, pair id): the Item screen's shading."""
    out: dict[tuple[int, int], PreferenceExplanation] = {}
    runs: dict[int, RunInfo] = {}
    for run_id, pair_id in store.conn.execute(
            "SELECT t.run_id, t.pair_id FROM preference_token_logprobs t JOIN pairs pr ON pr.id = t.pair_id "
            "WHERE pr.prompt_id = ? AND t.template = 0 ORDER BY t.run_id, t.pair_id", (prompt_id,)).fetchall():
        run = runs.setdefault(run_id, run_info(store, run_id))
        found = stored_preference(store, run, pair_id)
        if found is not None:
            out[(run_id, pair_id)] = found
    return out


# -- judge -------------------------------------------------------------------------------------------------------

def open_run_backend(store: Store, run: RunInfo) -> Backend:
    """The run's own model with the run's context size: its registration, or another registration of the same
    file (same sha256) when that one's file is gone; refused when the file changed since the run."""
    row = store.conn.execute("SELECT model_sha256, params_json FROM runs WHERE id = ?", (run.id,)).fetchone()
    model = get_model_by_id(store, run.model_id)
    if model.path and not Path(model.path).is_file():
        for (other_id,) in store.conn.execute("SELECT id FROM models WHERE sha256 = ? AND id != ? ORDER BY id",
                                              (row["model_sha256"], run.model_id)).fetchall():
            other = get_model_by_id(store, int(other_id))
            if other.path and Path(other.path).is_file() and other.identity == row["model_sha256"]:
                model = other
                break
    if model.identity != row["model_sha256"]:
        raise UserError(f"run {run.id}: model {model.name} is no longer the file the run scored with "
                        f"(sha256 {str(row['model_sha256'])[:12]}…, now {str(model.identity)[:12]}…)")
    params = json.loads(row["params_json"])
    return open_backend(model, EngineSettings(n_ctx=int(params.get("n_ctx", EngineSettings.n_ctx))))


def explain_judge(store: Store, run: RunInfo, response_id: int, backend: Backend,
                  cancel: threading.Event | None = None) -> JudgeExplanation:
    """Leave-one-sentence-out attribution of the run's verdict on one response, with the run's templates."""
    row = store.conn.execute(
        "SELECT r.text, r.label, r.dimension, p.key, p.text AS prompt, avg(jr.p_misaligned) AS p, count(*) AS k "
        "FROM judge_results jr JOIN responses r ON r.id = jr.response_id JOIN prompts p ON p.id = r.prompt_id "
        "WHERE jr.run_id = ? AND jr.response_id = ? GROUP BY jr.response_id", (run.id, response_id)).fetchone()
    if row is None:
        raise UserError(f"response {response_id}: run {run.id} has no verdict on it (misalign-tui export results "
                        f"--run {run.id} lists its response ids)")
    params = json.loads(store.conn.execute("SELECT params_json FROM runs WHERE id = ?", (run.id,)).fetchone()[0])
    version = params.get("template_version", "judge-v1")  # runs from before versions were recorded
    if version not in TEMPLATE_VERSIONS:
        raise UserError(f"run {run.id}: scored with judge templates {version}; this misalign-tui has "
                        f"{', '.join(TEMPLATE_VERSIONS)}, so its verdicts cannot be re-scored exactly")
    # the run's protocol, exactly: its questions (a balanced run's twins too), its demonstrations, its priors
    protocol = protocol_of(params)
    templates = judge_template_set(int(params.get("templates", run.templates)), protocol.polarity, version)
    demos = calibration_split(store, run.benchmark_id, protocol.shots,
                              Filters.parse(params.get("filters") or {}).dimension).demonstrations \
        if protocol.shots else ()
    histories = [demonstration_turns(t, [d.as_triple() for d in demos]) for t in templates]
    prompt = row["prompt"]
    priors: dict[int, tuple[float, float]] = {}
    if protocol.calibrate:
        priors = {int(t): (float(y), float(n)) for t, y, n in store.conn.execute(
            "SELECT jp.template, jp.p_yes, jp.p_no FROM judge_priors jp JOIN responses r ON r.prompt_id = jp.prompt_id "
            "WHERE jp.run_id = ? AND r.id = ?", (run.id, response_id))}
        if len(priors) < len(templates):
            raise UserError(f"run {run.id}: the content-free priors of response {response_id}'s prompt are not all "
                            f"stored, so its calibrated verdict cannot be re-scored (misalign-tui runs resume {run.id})")

    def texts_for(response: str) -> list[str]:
        return [backend.fit_prompt(judge_text(backend, t, response, history=h), prompt)[0]
                for t, h in zip(templates, histories, strict=True)]

    def p_of(t: int, score: JudgeScore) -> float:
        return stored_p(templates[t], score, priors.get(t) if protocol.calibrate else None)

    text = row["text"]
    spans = sentence_spans(text)
    t0 = time.perf_counter()
    effects = leave_one_out(backend, texts_for, text, spans, cancel, p_of)
    seconds = time.perf_counter() - t0
    sentences = tuple(SentenceEffect(i, s, e, text[s:e], p, effects.p_full - p)
                      for i, ((s, e), p) in enumerate(zip(spans, effects.p_without, strict=True)))
    return JudgeExplanation(run.id, run.model, response_id, row["key"], row["label"], row["dimension"], text,
                            float(row["p"]), effects.p_full, len(templates), sentences, effects.requests, seconds)


# -- one entry point for the CLI and the screens ---------------------------------------------------------------

def explain_target(store: Store, run_id: int, item_id: int) -> tuple[RunInfo, int | None]:
    """The run and, for a preference run, the pair to explain. ``item_id`` is the ``item_id`` of ``export
    results``: a response id for a judge run, a pair id for a preference run. One line when the run or the item
    is unknown, or the run's method has no explanation."""
    run = run_info(store, run_id)
    hint = f"misalign-tui export results --run {run_id} lists its item ids"
    if run.method == "judge":
        if store.conn.execute("SELECT 1 FROM responses WHERE id = ?", (item_id,)).fetchone() is None:
            raise UserError(f"response {item_id} not found ({hint})")
        return run, None
    if run.method == "preference":
        if store.conn.execute("SELECT 1 FROM preference_results WHERE run_id = ? AND pair_id = ?",
                              (run_id, item_id)).fetchone() is None:
            raise UserError(f"pair {item_id}: run {run_id} (preference) has no result for it; a preference run's "
                            f"items are pairs ({hint})")
        return run, item_id
    raise UserError(f"run {run_id} is a {run.method} run; explain works on judge and preference runs")


def explain(store: Store, run_id: int, item_id: int, backend: Backend | None = None,
            cancel: threading.Event | None = None) -> Explanation:
    """The explanation of run ``run_id``'s verdict on ``item_id`` (see ``explain_target``); the run's model is
    loaded when needed (a judge run; a preference run stored without token log-probabilities) unless ``backend``
    is given."""
    run, pair_id = explain_target(store, run_id, item_id)
    if pair_id is not None:
        found = stored_preference(store, run, pair_id)
        if found is not None:
            return found
    own = backend is None
    backend = backend or open_run_backend(store, run)
    try:
        if pair_id is not None:
            return recompute_preference(store, run, pair_id, backend, cancel)
        return explain_judge(store, run, item_id, backend, cancel)
    finally:
        if own:
            backend.close()


# -- shared by every face: shading levels and the machine form --------------------------------------------------

LOGPROB_STEPS = (-1.0, -3.0, -6.0, -10.0)  # level 0: log P ≥ −1 (expected) … level 4: below −10 (very surprising)
EFFECT_STEPS = (0.005, 0.02, 0.05)         # |effect| on P(misaligned): below 0.005 is level 0 (inside the noise)


def logprob_level(logprob: float) -> int:
    """0 (the model expected the token) to 4 (it found it very surprising): how a token is shaded."""
    return sum(1 for step in LOGPROB_STEPS if logprob < step)


def effect_level(effect: float) -> int:
    """−3 … 3: how strongly a sentence lowers (< 0) or raises (> 0) P(misaligned); how it is shaded."""
    level = sum(1 for step in EFFECT_STEPS if abs(effect) >= step)
    return level if effect >= 0 else -level


def explanation_json(e: Explanation) -> dict:
    """The explanation as plain data (``explain --format json``), text exact."""
    if isinstance(e, JudgeExplanation):
        return {"kind": "judge", "run_id": e.run_id, "model": e.model, "response_id": e.response_id,
                "prompt_key": e.prompt_key, "label": e.label, "dimension": e.dimension, "text": e.text,
                "p_misaligned_run": e.p_stored, "p_misaligned_pass": e.p_full, "templates": e.templates,
                "requests": e.requests, "seconds": round(e.seconds, 3),
                "sentences": [{"index": s.index, "start": s.start, "end": s.end, "text": s.text,
                               "p_without": s.p_without, "effect": s.effect} for s in e.sentences],
                "raising": [s.index for s in e.raising()], "lowering": [s.index for s in e.lowering()]}

    def side(r: ResponseTokens) -> dict:
        return {"response_id": r.response_id, "text": r.text, "mean_logprob": r.mean,
                "tokens": [{"start": t.start, "end": t.end, "text": t.text, "logprob": t.logprob,
                            "contribution": t.contribution} for t in r.tokens]}

    def top(direction: str) -> list[dict]:
        return [{"response": label, "start": t.start, "text": t.text, "logprob": t.logprob,
                 "contribution": t.contribution} for label, t in e.toward(direction)]

    return {"kind": "preference", "run_id": e.run_id, "model": e.model, "pair_id": e.pair_id,
            "prompt_key": e.prompt_key, "dimension": e.dimension, "source": e.source, "margin": e.margin,
            "prefers": "aligned" if e.margin > 0 else "misaligned", "aligned": side(e.aligned),
            "misaligned": side(e.misaligned), "toward_aligned": top("aligned"),
            "toward_misaligned": top("misaligned")}
