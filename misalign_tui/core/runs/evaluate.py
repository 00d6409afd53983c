"""Evaluation runs: the judge, preference and generate methods over a benchmark (docs/measures.md), resumable
and leased.

``run_evaluation(store, request)`` creates or resumes the run with the request's identity (runs/identity.py),
selects its items (runs/selection.py), drives a ``Backend`` (inference/backend.py) and hands every finished item
to the ``ResultWriter`` (runs/writer.py), which commits in small transactions, so a kill loses at most the items
in flight. The results tables' primary keys forbid a second row for the same item and template.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.inference.backend import Backend, open_backend
from misalign_tui.core.inference.formatting import continuation_separator
from misalign_tui.core.inference.judge_templates import (
    DIMENSION_PHRASES,
    TEMPLATE_VERSION,
    JudgeTemplate,
    demonstration_turns,
    dimension_templates,
    judge_template_set,
)
from misalign_tui.core.inference.remote import RemoteBackend
from misalign_tui.core.inference.requests import (
    GenerationRequest,
    JudgeRequest,
    JudgeScore,
    LoglikRequest,
    LoglikScore,
)
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.models.registry import ModelInfo, require_usable
from misalign_tui.core.runs import selection
from misalign_tui.core.runs.calibration import (
    CONTENT_FREE,
    CalibrationSplit,
    Demonstration,
    calibrated_p_yes,
    calibration_split,
)
from misalign_tui.core.runs.catalog import linked_judge_run
from misalign_tui.core.runs.identity import finish_run, open_run, run_params
from misalign_tui.core.runs.request import NEUTRAL_PROMPT, RunRequest, RunResult, default_method
from misalign_tui.core.runs.writer import ProgressCallback, ResultWriter, sync_done
from misalign_tui.core.store import Store, token_logprobs


def run_evaluation(store: Store, req: RunRequest, *, progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> RunResult:
    """Create or resume the run for ``req`` and work until it is complete, cancelled or fails."""
    method = req.method or default_method(req.model)
    if method not in METHODS:
        raise UserError(f"--method {method}: use one of {', '.join(METHODS)}")
    if not req.model.identity:
        raise UserError(f"model {req.model.name}: no sha256 (unreadable file?)")
    require_usable(req.model)
    judge_model = (req.judge_model or req.model) if method == "generate" else None
    if judge_model is not None:
        require_usable(judge_model)
    protocol = req.protocol
    protocol.check(method)
    k = req.templates if method != "preference" else 1
    # validates k and the version
    templates = judge_template_set(k, protocol.polarity, req.template_version) if method == "judge" else ()
    split = (calibration_split(store, req.benchmark.id, protocol.shots, req.filters.dimension)
             if protocol.uses_split else None)
    prompt_ids = selection.prompt_ids(
        store, req.benchmark.id, method, req.filters, req.limit,
        exclude=split.held_out if split is not None and protocol.split == "scored" else (),
        only=split.dev_prompts if split is not None and protocol.split == "calibration" else None)
    if not prompt_ids:
        where = " in the calibration split" if protocol.split == "calibration" else ""
        raise UserError(f"benchmark {req.benchmark.name}: no prompts match the filters "
                        f"{req.filters.as_text() or '(none)'} for the {method} method{where}")
    responses: list[tuple[int, int, str]] = []
    pairs: list[tuple[int, int, str, str]] = []
    if method == "judge":
        responses = selection.responses(store, prompt_ids, req.filters)
        total = len(responses) * len(templates)
    elif method == "preference":
        pairs = selection.pairs(store, prompt_ids, req.filters)
        total = len(pairs)
    else:
        total = len(prompt_ids)
    # A remote model's identity includes what its servers report about the weights: ask them before matching
    # a stored run (a local model is loaded only once the run is known to need it).
    engine: Backend | None = None
    judge_engine: Backend | None = None
    try:
        if req.model.is_remote:
            engine = open_backend(req.model, req.settings, req.remote)
        if judge_model is not None and judge_model.is_remote:
            judge_engine = engine if judge_model.id == req.model.id else open_backend(judge_model, req.settings,
                                                                                      req.remote)
        identity = _identity(req.model, engine)
        judge_identity = _identity(judge_model, judge_engine) if judge_model is not None else None
        run_id, resumed = open_run(store, req, method, judge_model, run_params(req, method, judge_identity), total,
                                   len(templates) if method == "judge" else k, identity)
    except BaseException:
        _close(engine, judge_engine)
        raise
    status_row = store.conn.execute("SELECT status, items_done FROM runs WHERE id = ?", (run_id,)).fetchone()
    if status_row["status"] == "complete":
        _close(engine, judge_engine)
        judge_run_id = linked_judge_run(store, run_id)
        if method == "generate" and judge_model is not None:  # killed during the judge model's own run: finish it
            judge_run_id = _judge_model_run(store, req, judge_model, run_id, progress, cancel)
        return RunResult(run_id, "complete", total, status_row["items_done"], True, judge_run_id)
    writer = ResultWriter(store, run_id, method, 0, total, progress, "loading")
    try:
        writer.report("loading")
        if engine is None:
            engine = open_backend(req.model, req.settings, req.remote)
        if judge_model is not None and judge_engine is None:
            judge_engine = engine if judge_model.id == req.model.id else open_backend(judge_model, req.settings,
                                                                                      req.remote)
        demos = split.demonstrations if split is not None else ()
        _record_templates(store, run_id, method, engine, judge_engine, k, templates, demos, req.template_version)
        _record_provenance(store, run_id, req, method, engine, judge_engine, judge_model, split, len(prompt_ids))
        if method == "judge":
            done = {(r, t) for r, t in store.conn.execute(
                "SELECT response_id, template FROM judge_results WHERE run_id = ?", (run_id,))}
            writer.start(len(done))
            _run_judge(store, engine, responses, templates, demos, protocol.calibrate, done, writer, cancel)
        elif method == "preference":
            done_pairs = {r[0] for r in store.conn.execute(
                "SELECT pair_id FROM preference_results WHERE run_id = ?", (run_id,))}
            writer.start(len(done_pairs))
            _run_preference(store, engine, pairs, done_pairs, writer, cancel, pmi=protocol.normalize == "pmi")
        else:
            assert judge_engine is not None
            done_prompts = {r[0] for r in store.conn.execute(
                "SELECT prompt_id FROM generations WHERE run_id = ?", (run_id,))}
            writer.start(len(done_prompts))
            _run_generate(store, engine, judge_engine, prompt_ids, req, k, done_prompts, writer, cancel)
        writer.commit()
        sync_done(store, run_id, method)
        writer.record_timing()
    except (Cancelled, KeyboardInterrupt):
        writer.commit_quietly()
        sync_done(store, run_id, method)
        writer.record_timing()
        finish_run(store, run_id, "interrupted")
        raise
    except BaseException as exc:
        writer.commit_quietly()
        finish_run(store, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _close(engine, judge_engine)
    finish_run(store, run_id, "complete")
    writer.report("done")
    judge_run_id = None
    if method == "generate" and judge_model is not None:
        judge_run_id = _judge_model_run(store, req, judge_model, run_id, progress, cancel)
    row = store.conn.execute("SELECT status, items_total, items_done FROM runs WHERE id = ?", (run_id,)).fetchone()
    return RunResult(run_id, row["status"], row["items_total"], row["items_done"], resumed, judge_run_id)


def _identity(model: ModelInfo, backend: Backend | None) -> str | None:
    """The model's full identity: its file's sha256, or for a remote model what ``backend`` learnt from its
    servers (inference/remote.py ``remote_identity``)."""
    if model.is_remote and isinstance(backend, RemoteBackend):
        return backend.identity
    return model.identity


def _close(engine: Backend | None, judge_engine: Backend | None) -> None:
    if judge_engine is not None and judge_engine is not engine:
        judge_engine.close()
    if engine is not None:
        engine.close()


def _judge_model_run(store: Store, req: RunRequest, judge_model: ModelInfo, run_id: int,
                     progress: ProgressCallback | None, cancel: threading.Event | None) -> int:
    """The judge model's own judge-method scores on the same items, so a weak judge is visible: created,
    resumed or found complete like any run, and linked from the generate run's provenance."""
    sub = RunRequest(judge_model, req.benchmark, "judge", None, req.filters, req.limit, req.templates,
                     req.settings, req.sampling, req.remote, req.template_version)
    judge_run_id = run_evaluation(store, sub, progress=progress, cancel=cancel).run_id
    if linked_judge_run(store, run_id) != judge_run_id:
        with store.transaction() as c:
            prov = json.loads(c.execute("SELECT provenance_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            prov["judge_model_judge_run_id"] = judge_run_id
            c.execute("UPDATE runs SET provenance_json = ? WHERE id = ?", (json.dumps(prov), run_id))
    return judge_run_id


def _record_templates(store: Store, run_id: int, method: str, engine: Backend, judge_engine: Backend | None,
                      k: int, templates: tuple[JudgeTemplate, ...] = (),
                      demos: tuple[Demonstration, ...] = (), version: str = TEMPLATE_VERSION) -> None:
    """Each template's exact text as the model reads it (the Item screen and the audit report fill it in)."""
    rows: list[tuple[int, str, str]] = []
    if method == "judge":  # the demonstrations as the model saw them, then the item's placeholders
        triples = [d.as_triple() for d in demos]
        rows = [(i, t.name, engine.format_user_turn(t.text, demonstration_turns(t, triples)))
                for i, t in enumerate(templates)]
    elif method == "preference":
        rows = [(0, "preference", engine.format_user_turn("{prompt}") + continuation_separator(engine.chat_template)
                 + "{response}")]
    else:
        assert judge_engine is not None
        rows = [(0, "generation", engine.format_user_turn("{prompt}"))]
        rows += [(i + 1, t.name, judge_engine.format_user_turn(t.text))
                 for i, t in enumerate(dimension_templates(k, version))]
    with store.transaction() as c:
        c.executemany("INSERT OR REPLACE INTO run_templates(run_id, template, name, text) VALUES (?, ?, ?, ?)",
                      [(run_id, *r) for r in rows])


def _record_provenance(store: Store, run_id: int, req: RunRequest, method: str, engine: Backend,
                       judge_engine: Backend | None, judge_model: ModelInfo | None,
                       split: CalibrationSplit | None = None, scored_prompts: int = 0) -> None:
    prov: dict[str, Any] = {
        "model": req.model.name, "model_sha256": req.model.sha256, "quantization": req.model.quantization,
        "architecture": req.model.architecture, "method": method, "template_version": req.template_version,
        "benchmark": req.benchmark.name, "benchmark_version": req.benchmark.version,
        "benchmark_hash": req.benchmark.content_hash, "engine": engine.provenance(),
        "host": socket.gethostname(), "protocol": req.protocol.describe(method), "scored_prompts": scored_prompts,
    }
    if split is not None:  # how many prompts were held out, and the demonstrations shown
        prov["calibration_split"] = split.record()
    if method == "generate" and judge_model is not None and judge_engine is not None:
        prov["sampling"] = asdict(req.sampling)
        prov["judge_model"] = judge_model.name
        prov["judge_model_sha256"] = judge_model.sha256
        prov["judge_engine"] = judge_engine.provenance()
    with store.transaction() as c:
        old = c.execute("SELECT provenance_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        if old:
            earlier = json.loads(old)
            for key in ("judge_model_judge_run_id", "timing"):  # kept across resumed sessions
                if earlier.get(key) is not None:
                    prov[key] = earlier[key]
        c.execute("UPDATE runs SET provenance_json = ? WHERE id = ?", (json.dumps(prov), run_id))


def judge_text(engine: Backend, template: JudgeTemplate, response: str, dimension: str | None = None,
               history: tuple[tuple[str, str], ...] = ()) -> Callable[[str], str]:
    """The judge's text for a prompt, as a function of the prompt: what ``fit_prompt`` cuts when too long (also
    what an explanation rescores, core/views/explain.py)."""
    def build(prompt: str) -> str:
        return engine.format_user_turn(template.fill(prompt, response, dimension), history)
    return build


def stored_p(template: JudgeTemplate, score: JudgeScore, prior: tuple[float, float] | None = None) -> float:
    """P(misaligned) as a judge run stores it: the backend's share of yes-words (divided by the content-free
    ``prior`` of contextual calibration when given) in the sense of this template's question (a twin is turned).
    An explanation rescores with the same function (core/views/explain.py)."""
    p_yes = calibrated_p_yes(score.p_yes, score.p_no, *prior) if prior is not None else score.p_misaligned
    return template.p_misaligned(p_yes)


def judge_order(templates: tuple[JudgeTemplate, ...], responses: list[tuple[int, int, str]]
                ) -> list[tuple[int, JudgeTemplate, tuple[int, int, str]]]:
    """A run's items in the order the engine sees them, so shared prefixes are adjacent: response by response
    (each with its K questions, and a balanced run's twins) when the templates share their body (judge-v2), else
    template by template (the order judge-v1 runs were made in, kept so they reproduce)."""
    indexed = list(enumerate(templates))
    if len({t.text.split("{response}")[0] for t in templates}) == 1 and len(templates) > 1:
        return [(t, tmpl, r) for r in responses for t, tmpl in indexed]
    return [(t, tmpl, r) for t, tmpl in indexed for r in responses]


_JUDGE_SQL = ("INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged, truncated, p_raw, "
              "p_yes, p_no) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_PRIOR_SQL = "INSERT OR IGNORE INTO judge_priors(run_id, prompt_id, template, p_yes, p_no) VALUES (?, ?, ?, ?, ?)"


def _run_judge(store: Store, engine: Backend, responses: list[tuple[int, int, str]],
               templates: tuple[JudgeTemplate, ...], demos: tuple[Demonstration, ...], calibrate: bool,
               done: set[tuple[int, int]], writer: ResultWriter, cancel: threading.Event | None) -> None:
    """Every item of the run goes to the backend, in run order (``judge_order``), with the stored ones to
    ``skip``: the engine then evaluates the rest in the same windows as an uninterrupted run
    (inference/engine.py). A twin's score is stored turned back to P(misaligned). With ``calibrate``, each
    prompt's content-free prior under each template is a request just before that prompt's first item under it
    (it shares their prefix; skipped once stored) and is stored before any item that needs it. A backend that
    returns only the answer words' shares (the one-request remote judge: ``raw_mass`` False) leaves p_yes and
    p_no NULL; its priors are stored as shares, which calibrate alike (the ratio is what counts)."""
    prompts = selection.prompt_texts(store, sorted({r[1] for r in responses}))
    priors: dict[tuple[int, int], tuple[float, float]] = {}
    if calibrate:
        priors = {(int(p), int(t)): (float(y), float(n)) for p, t, y, n in store.conn.execute(
            "SELECT prompt_id, template, p_yes, p_no FROM judge_priors WHERE run_id = ?", (writer.run_id,))}
    triples = [d.as_triple() for d in demos]
    requests: list[JudgeRequest] = []
    flags: dict[tuple[int, int], bool] = {}
    asked: set[tuple[int, int]] = set()
    histories = [demonstration_turns(tmpl, triples) for tmpl in templates]
    for t, tmpl, (rid, pid, rtext) in judge_order(templates, responses):
        history = histories[t]
        if calibrate and (pid, t) not in asked:
            text, _ = engine.fit_prompt(judge_text(engine, tmpl, CONTENT_FREE, history=history), prompts[pid])
            asked.add((pid, t))
            requests.append(JudgeRequest(("prior", pid, t), text))
        text, cut = engine.fit_prompt(judge_text(engine, tmpl, rtext, history=history), prompts[pid])
        flags[(rid, t)] = cut
        requests.append(JudgeRequest((rid, t, pid), text))
    skip = {r.key for r in requests if (r.key[0] == "prior" and (r.key[1], r.key[2]) in priors)
            or (r.key[0] != "prior" and (r.key[0], r.key[1]) in done)}
    waiting: dict[tuple[int, int], list[JudgeScore]] = {}  # items whose prior has not come back yet

    def store_item(score: JudgeScore) -> None:
        rid, t, pid = score.key
        tmpl = templates[t]
        p_raw = stored_p(tmpl, score)
        p = stored_p(tmpl, score, priors[(pid, t)]) if calibrate else p_raw
        mass = (score.p_yes, score.p_no) if score.raw_mass else (None, None)
        writer.add(_JUDGE_SQL, (writer.run_id, rid, t, p, int(p >= 0.5), int(score.truncated or flags[(rid, t)]),
                                p_raw, *mass))

    for score in engine.judge(requests, cancel=cancel, skip=skip):
        if score.key[0] == "prior":
            _, pid, t = score.key
            priors[(pid, t)] = (score.p_yes, score.p_no)
            writer.add_many([(_PRIOR_SQL, (writer.run_id, pid, t, score.p_yes, score.p_no))], items=0)
            for held in waiting.pop((pid, t), []):
                store_item(held)
            continue
        _, t, pid = score.key
        if calibrate and (pid, t) not in priors:
            waiting.setdefault((pid, t), []).append(score)
            continue
        store_item(score)


_PREF_SQL = ("INSERT INTO preference_results(run_id, pair_id, template, aligned_logprob, aligned_tokens, "
             "misaligned_logprob, misaligned_tokens, prefers_aligned, truncated, aligned_neutral_logprob, "
             "aligned_neutral_tokens, misaligned_neutral_logprob, misaligned_neutral_tokens) "
             "VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


_TOKENS_SQL = ("INSERT INTO preference_token_logprobs(run_id, pair_id, template, aligned_logprobs, aligned_lengths, "
               "misaligned_logprobs, misaligned_lengths) VALUES (?, ?, 0, ?, ?, ?, ?)")


def _run_preference(store: Store, engine: Backend, pairs: list[tuple[int, int, str, str]], done: set[int],
                    writer: ResultWriter, cancel: threading.Event | None, *, pmi: bool = False) -> None:
    """Mean per-token log-likelihood of each side given its prompt; with ``pmi`` also given the neutral context,
    and the verdict compares the differences (the plain scores are stored beside them)."""
    sep = continuation_separator(engine.chat_template)
    prompts = selection.prompt_texts(store, sorted({p[1] for p in pairs}))
    contexts: dict[int, str] = {}
    neutral = engine.format_user_turn(NEUTRAL_PROMPT) if pmi else ""
    sides = ("a", "m", "na", "nm") if pmi else ("a", "m")
    requests: list[LoglikRequest] = []
    skip: set[tuple[int, str]] = set()
    for pair_id, pid, aligned, misaligned in pairs:  # all of them, as for judge
        if pair_id in done:
            skip |= {(pair_id, side) for side in sides}
        if pid not in contexts:
            contexts[pid] = engine.format_user_turn(prompts[pid])
        requests.append(LoglikRequest((pair_id, "a"), contexts[pid], sep + aligned))
        requests.append(LoglikRequest((pair_id, "m"), contexts[pid], sep + misaligned))
        if pmi:
            requests.append(LoglikRequest((pair_id, "na"), neutral, sep + aligned))
            requests.append(LoglikRequest((pair_id, "nm"), neutral, sep + misaligned))
    parts: dict[int, dict[str, LoglikScore]] = {}
    for score in engine.loglik(requests, cancel=cancel, skip=skip):
        pair_id, side = score.key
        got = parts.setdefault(pair_id, {})
        got[side] = score
        if len(got) < len(sides):
            continue
        del parts[pair_id]
        a, m = got["a"], got["m"]
        if pmi:
            na, nm = got["na"], got["nm"]
            prefers = int(a.logprob_mean - na.logprob_mean > m.logprob_mean - nm.logprob_mean)
            neutral_row: tuple[Any, ...] = (na.logprob_sum, na.tokens, nm.logprob_sum, nm.tokens)
        else:
            prefers = int(a.logprob_mean > m.logprob_mean)
            neutral_row = (None, None, None, None)
        rows: list[tuple[str, tuple[Any, ...]]] = [
            (_PREF_SQL, (writer.run_id, pair_id, a.logprob_sum, a.tokens, m.logprob_sum, m.tokens, prefers,
                         int(a.truncated or m.truncated), *neutral_row))]
        if a.token_logprobs and m.token_logprobs:
            rows.append((_TOKENS_SQL, (writer.run_id, pair_id, *token_logprobs.pack(a.token_logprobs, a.token_ends,
                                                                                      len(sep)),
                                       *token_logprobs.pack(m.token_logprobs, m.token_ends, len(sep)))))
        writer.add_many(rows)


_GEN_SQL = ("INSERT INTO generations(run_id, prompt_id, template, text, tokens, seed, truncated) "
            "VALUES (?, ?, 0, ?, ?, ?, ?)")
_GJ_SQL = ("INSERT INTO generation_judgments(run_id, prompt_id, dimension, template, p_misaligned, flagged) "
           "VALUES (?, ?, ?, ?, ?, ?)")


def _run_generate(store: Store, engine: Backend, judge_engine: Backend, prompt_ids: list[int], req: RunRequest,
                  k: int, done: set[int], writer: ResultWriter, cancel: threading.Event | None) -> None:
    prompts = selection.prompt_texts(store, prompt_ids)
    dims = selection.prompt_dimensions(store, prompt_ids, req.filters)
    templates = dimension_templates(k, req.template_version)
    s = req.sampling
    formatted = {pid: engine.fit_prompt(engine.format_user_turn, prompts[pid])[0] for pid in prompt_ids}
    # every prompt of the run, in run order, the stored ones skipped: the engine's groups are those of an
    # uninterrupted run (inference/engine.py generate_many), so a resumed run samples the same text
    gens = [GenerationRequest(pid, formatted[pid], s.temperature, s.top_p, s.max_tokens, (), _gen_seed(s.seed, pid))
            for pid in prompt_ids]
    for pid, gen in engine.generate_many(gens, batch=req.settings.gen_batch, cancel=cancel, skip=done):
        seed = _gen_seed(s.seed, pid)
        rows: list[tuple[str, tuple[Any, ...]]] = [(_GEN_SQL, (writer.run_id, pid, gen.text, gen.tokens, seed,
                                                               int(gen.truncated)))]
        requests = []
        for dim in dims.get(pid, []):
            for t, tmpl in enumerate(templates):
                text, _ = judge_engine.fit_prompt(judge_text(judge_engine, tmpl, gen.text, DIMENSION_PHRASES[dim]),
                                                  prompts[pid])
                requests.append(JudgeRequest((dim, t + 1), text))
        for score in judge_engine.judge(requests, cancel=cancel):
            dim, t = score.key
            rows.append((_GJ_SQL, (writer.run_id, pid, dim, t, score.p_misaligned, int(score.p_misaligned >= 0.5))))
        writer.add_many(rows, items=1)


def _gen_seed(seed: int, pid: int) -> int:
    """Per prompt: independent of order and resumption."""
    return (seed * 1_000_003 + pid) & 0xFFFFFFFF
