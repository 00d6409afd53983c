"""A run's identity, its lease, and resuming it.

A run is identified by (model registration, model identity, benchmark, method, params hash): the same request
again resumes the unfinished run instead of starting another. The model identity is the GGUF file's sha256, or
for a remote model the served name with what its servers report about the weights (contacted before the run is
matched: inference/remote.py ``remote_identity``). The registration (``runs.model_id``, and for generate the
judge model's) is part of it too: a run of one registered model is never resumed, or shown as complete, for
another, even one with the same file or served name — the run row names the model that did the work. The parameters that make a run itself — filters, limit, templates
and their version, context size, chat templates, and for generate the sampling, seed and judge model — are
stored in ``runs.params_json``; ``resume_request`` rebuilds the exact request from them, so a run started on
the CLI with ``--n-ctx 2048 --seed 7`` resumes from the app (or ``runs resume``) as the same run.

A run holds a lease (pid, host, heartbeat): a second live process is refused; a dead holder's run is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import asdict, replace
from typing import Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.engine import EngineSettings
from misalign_tui.core.inference.judge_templates import TWIN_VERSION
from misalign_tui.core.inference.remote import RemoteSettings
from misalign_tui.core.inference.requests import Sampling
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.models.registry import ModelInfo, get_model_by_id
from misalign_tui.core.runs.calibration import CONTENT_FREE, SPLIT_SEED, SPLIT_SHARE, SPLIT_VERSION
from misalign_tui.core.runs.request import NEUTRAL_PROMPT, Protocol, RunRequest
from misalign_tui.core.store import Store, last_id

LEASE_STALE_S = 120.0  # another host's lease without a heartbeat for this long is taken over

_active_runs: set[int] = set()  # run ids this process is working on (its own leases are live)
_active_lock = threading.Lock()


# -- identity ----------------------------------------------------------------------------------------------------

def _template_digest(template: str | None) -> str:
    return hashlib.sha256(template.encode()).hexdigest() if template else "plain"


def run_params(req: RunRequest, method: str, judge_identity: str | None = None) -> dict[str, Any]:
    """The parameters that make the run itself (stored as ``params_json``; their hash is part of its identity).
    ``judge_identity``: the judge model's full identity (a remote one's comes from its servers)."""
    params: dict[str, Any] = {
        "filters": req.filters.identity(),
        "limit": req.limit,
        "templates": req.templates if method != "preference" else 1,
        "template_version": req.template_version,
        "n_ctx": req.settings.n_ctx,
        "chat_template_sha256": _template_digest(req.model.effective_chat_template),
    }
    if method == "generate":
        judge = req.judge_model or req.model
        params["sampling"] = asdict(req.sampling)
        params["judge_model_sha256"] = judge_identity or judge.identity
        params["judge_chat_template_sha256"] = _template_digest(judge.effective_chat_template)
        if req.settings.gen_batch != 1:  # runs from before batched generation decoded one at a time
            params["generate_batch"] = req.settings.gen_batch
    params.update(protocol_params(req.protocol, method))
    return params


def protocol_params(p: Protocol, method: str) -> dict[str, Any]:
    """The protocol's part of a run's parameters: only what differs from the zero-shot default, so runs made
    before protocols existed keep their parameters and hash."""
    out: dict[str, Any] = {}
    if method == "judge":
        if p.shots:
            out["shots"] = p.shots
        if p.calibrate:
            out["calibrate"] = {"content_free": CONTENT_FREE}
        if p.polarity != "harm":
            out["polarity"] = p.polarity
            out["twin_version"] = TWIN_VERSION
    if method == "preference" and p.normalize != "none":
        out["normalize"] = p.normalize
        out["neutral_prompt"] = NEUTRAL_PROMPT
    if p.uses_split:
        out["calibration_split"] = {"version": SPLIT_VERSION, "share": SPLIT_SHARE, "seed": SPLIT_SEED}
    if p.split != "scored":
        out["split"] = p.split
    return out


def protocol_of(params: dict[str, Any]) -> Protocol:
    """The protocol a run's stored parameters describe (the zero-shot default for runs that record none)."""
    return Protocol(shots=int(params.get("shots", 0)), calibrate=bool(params.get("calibrate")),
                    polarity=str(params.get("polarity", "harm")), normalize=str(params.get("normalize", "none")),
                    split=str(params.get("split", "scored")))


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def resume_request(store: Store, run_id: int, *, settings: EngineSettings | None = None,
                   remote: RemoteSettings | None = None) -> RunRequest:
    """The request that continues run ``run_id`` exactly: every parameter of its identity comes from the run's
    row. ``settings`` and ``remote`` may carry what is not part of the identity (GPU layers, threads, remote
    concurrency); their context size is replaced by the run's.

    Refused with one line when the run is complete, or when what it ran on has changed since (the model file's
    sha256, its chat template, the benchmark)."""
    row = store.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UserError(f"run {run_id} not found; misalign-tui runs list shows the runs")
    if row["status"] == "complete":
        raise UserError(f"run {run_id} is complete; nothing to resume (misalign-tui report --run {run_id})")
    params = json.loads(row["params_json"])
    model = get_model_by_id(store, int(row["model_id"]))
    if not model.identity_matches(row["model_sha256"]):
        raise UserError(f"run {run_id}: model {model.name} is no longer the file the run started on "
                        f"(sha256 {str(row['model_sha256'])[:12]}…, now {str(model.identity)[:12]}…); "
                        "start a new run instead")
    judge = get_model_by_id(store, int(row["judge_model_id"])) if row["judge_model_id"] is not None else None
    settings = settings or EngineSettings()
    sampling = Sampling(**params["sampling"]) if "sampling" in params else Sampling()
    req = RunRequest(
        model=model, benchmark=store.benchmark_by_id(int(row["benchmark_id"])), method=row["method"],
        judge_model=judge, filters=Filters.parse(params.get("filters") or {}), limit=params.get("limit"),
        templates=int(params.get("templates", row["templates"])),
        settings=replace(settings, n_ctx=int(params.get("n_ctx", settings.n_ctx)),
                         gen_batch=int(params.get("generate_batch", 1))), sampling=sampling,
        remote=remote,
        template_version=params.get("template_version", "judge-v1"), run_id=run_id, protocol=protocol_of(params))
    if judge is not None and not judge.identity_matches(params.get("judge_model_sha256")):
        raise UserError(f"run {run_id}: judge model {judge.name} is no longer the one the run started with; "
                        "start a new run instead")
    if params_hash(run_params(req, row["method"], params.get("judge_model_sha256"))) != row["params_hash"]:
        raise UserError(f"run {run_id}: its parameters cannot be rebuilt exactly (a model's chat template changed "
                        "since it started?); start a new run instead")
    return req


# -- lease -------------------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid that is not a Python process is not our run
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
        if os.path.exists(f"/proc/{pid}/stat"):
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().split(b")")[-1].split()[0:1] == [b"Z"]:
                    return False  # a zombie holds nothing
        return b"python" in cmd or b"misalign" in cmd
    except OSError:
        return True


def lease_is_live(row: sqlite3.Row, host: str) -> bool:
    """Whether the process holding this run's lease is still working on it."""
    pid, lhost, beat = row["lease_pid"], row["lease_host"], row["heartbeat_at"]
    if pid is None:
        return False
    if lhost == host:
        if pid == os.getpid():
            with _active_lock:
                return row["id"] in _active_runs
        return _pid_alive(int(pid))
    return beat is not None and time.time() - float(beat) < LEASE_STALE_S


def open_run(store: Store, req: RunRequest, method: str, judge_model: ModelInfo | None, params: dict[str, Any],
             items_total: int, templates: int, identity: str | None = None) -> tuple[int, bool]:
    """Find the run of this registered model with this identity (taking its lease) or create one; returns
    (id, resumed). ``identity``: the model's full identity (default ``req.model.identity``; a remote model's
    comes from its servers). With ``req.run_id`` set, that run and no other — refused when the model, its
    identity or the parameters are no longer the run's."""
    host = socket.gethostname()
    phash = params_hash(params)
    identity = identity or req.model.identity
    judge_id = judge_model.id if judge_model else None
    with store.transaction() as c:
        if req.run_id is not None:
            row = c.execute("SELECT * FROM runs WHERE id = ?", (req.run_id,)).fetchone()
            if row is None:
                raise UserError(f"run {req.run_id} not found; misalign-tui runs list shows the runs")
            if (row["model_id"], row["judge_model_id"]) != (req.model.id, judge_id):
                raise UserError(f"run {req.run_id} belongs to another registered model; start a new run instead")
            if row["model_sha256"] != identity or row["params_hash"] != phash:
                raise UserError(f"run {req.run_id}: model {req.model.name} is no longer what the run started on "
                                f"({row['model_sha256']}, now {identity}); start a new run instead")
        else:
            row = c.execute(
                "SELECT * FROM runs WHERE model_id = ? AND model_sha256 = ? AND benchmark_id = ? AND method = ? "
                "AND params_hash = ? AND judge_model_id IS ? ORDER BY (status = 'complete'), id DESC LIMIT 1",
                (req.model.id, identity, req.benchmark.id, method, phash, judge_id),
            ).fetchone()
        if row is not None and row["status"] == "complete":
            return int(row["id"]), True
        if row is not None:
            if row["status"] == "running" and lease_is_live(row, host):
                ago = time.time() - float(row["heartbeat_at"] or time.time())
                raise UserError(f"run {row['id']} is already running (pid {row['lease_pid']} on {row['lease_host']}, "
                                f"last heartbeat {ago:.0f} s ago); wait for it to finish or stop it first")
            c.execute("UPDATE runs SET status = 'running', lease_pid = ?, lease_host = ?, heartbeat_at = ?, "
                      "items_total = ?, error = NULL, finished_at = NULL WHERE id = ?",
                      (os.getpid(), host, time.time(), items_total, row["id"]))
            run_id, resumed = int(row["id"]), True
        else:
            run_id = last_id(c.execute(
                "INSERT INTO runs(model_id, model_sha256, benchmark_id, method, judge_model_id, params_json, "
                "params_hash, templates, status, items_total, items_done, lease_pid, lease_host, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, 0, ?, ?, ?)",
                (req.model.id, identity, req.benchmark.id, method,
                 judge_id, json.dumps(params, sort_keys=True), phash, templates,
                 items_total, os.getpid(), host, time.time()),
            ))
            resumed = False
    with _active_lock:
        _active_runs.add(run_id)
    return run_id, resumed


def finish_run(store: Store, run_id: int, status: str, error: str | None = None) -> None:
    """Release the lease with the run's final status (complete, interrupted, failed)."""
    with _active_lock:
        _active_runs.discard(run_id)
    try:
        with store.transaction() as c:
            c.execute(
                "UPDATE runs SET status = ?, error = ?, lease_pid = NULL, lease_host = NULL, "
                "finished_at = CASE WHEN ? = 'complete' THEN strftime('%Y-%m-%dT%H:%M:%fZ','now') END "
                "WHERE id = ?", (status, error, status, run_id))
    except (UserError, sqlite3.DatabaseError):
        pass  # the lease is stale anyway once this process exits
