"""Which model a run belongs to (issue 13 §3): a run is never resumed — or shown as complete — for another
registration, even one with the same served name or the same file, and a remote model's identity includes what
its servers report about the weights. Real llama-cpp-python servers on loopback; a proxy only picks the moment
a server starts failing."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="needs llama-cpp-python's [server] extra (see pyproject's test extra)")

from misalign_tui.core.errors import Cancelled, UserError  # noqa: E402
from misalign_tui.core.inference.remote import RemoteSettings, remote_identity, weights_report  # noqa: E402
from misalign_tui.core.io.native import SEED_BENCHMARK, load_seed_benchmark  # noqa: E402
from misalign_tui.core.models.registry import register_file, register_remote  # noqa: E402
from misalign_tui.core.runs.evaluate import run_evaluation  # noqa: E402
from misalign_tui.core.runs.identity import resume_request  # noqa: E402
from misalign_tui.core.runs.request import RunRequest  # noqa: E402
from misalign_tui.core.store import Store  # noqa: E402
from misalign_tui.core.taxonomy import published_taxonomy  # noqa: E402
from tests.remote_servers import FaultProxy, LlamaServer, free_port  # noqa: E402

ONCE = RemoteSettings(concurrency=1, timeout_s=30, retries=0)


def _store(home: Path) -> Store:
    (home / "db").mkdir(exist_ok=True)
    store = Store(home / "db" / "misalign.sqlite")
    store.sync_taxonomy(published_taxonomy())
    load_seed_benchmark(store)
    return store


def _judge(store: Store, model, **kw) -> RunRequest:
    return RunRequest(model, store.benchmark(SEED_BENCHMARK), "judge", templates=1, remote=ONCE,
                      **{"limit": 1, **kw})


def _runs(store: Store) -> list[tuple]:
    return [tuple(r) for r in store.conn.execute(
        "SELECT r.id, m.name, r.status, (SELECT count(*) FROM judge_results j WHERE j.run_id = r.id) "
        "FROM runs r JOIN models m ON m.id = r.model_id ORDER BY r.id")]


def test_another_registration_with_the_same_served_name_does_not_resume_a_completed_run(
        tiny_model: Path, home: Path, tmp_path: Path) -> None:
    """The issue's case: ``other`` is registered at a URL where nothing listens, with the served name of a
    completed remote run. Its run must contact its server (and fail, saying so), not report that run."""
    store = _store(home)
    s = LlamaServer(tiny_model, alias="m", log=tmp_path / "server.log")
    try:
        srv = register_remote(store, "srv", [s.url], "m")
        done = run_evaluation(store, _judge(store, srv))
        assert done.status == "complete" and not done.resumed
    finally:
        s.stop()
    nowhere = f"http://127.0.0.1:{free_port()}"
    other = register_remote(store, "other", [nowhere], "m")
    with pytest.raises(UserError, match=nowhere.removeprefix("http://")):
        run_evaluation(store, _judge(store, other))
    assert _runs(store) == [(done.run_id, "srv", "complete", done.items_total)]  # nothing of other's was made
    # the first registration's own run is still found as complete once its server answers again
    s = LlamaServer(tiny_model, port=int(srv.url.rsplit(":", 1)[1]), alias="m", log=tmp_path / "server.log")
    try:
        again = run_evaluation(store, _judge(store, srv))
        assert (again.run_id, again.status, again.resumed) == (done.run_id, "complete", True)
    finally:
        s.stop()
    store.close()


def test_a_failed_remote_run_is_not_taken_over_by_another_registration(tiny_model: Path, home: Path,
                                                                        tmp_path: Path) -> None:
    """``a`` fails mid-run (its server starts answering 503); ``b`` serves the same name from the same server:
    its run is its own, and the row names ``b``. ``a``'s failed run keeps its rows and resumes as ``a``'s."""
    store = _store(home)
    s = LlamaServer(tiny_model, alias="m", log=tmp_path / "server.log")
    proxy: FaultProxy | None = None
    try:
        def fail_from_20th(n: int) -> None:  # 4 GETs at the start, then 13 requests per item
            if n == 20 and proxy is not None:
                proxy.fail_always = True
        proxy = FaultProxy(s.url, on_request=fail_from_20th)
        a = register_remote(store, "a", [proxy.url], "m")
        b = register_remote(store, "b", [s.url], "m")
        with pytest.raises(UserError, match="HTTP 503"):
            run_evaluation(store, _judge(store, a))
        (run_a, name, status, kept), = _runs(store)
        assert (name, status) == ("a", "failed") and kept >= 1
        res_b = run_evaluation(store, _judge(store, b))
        assert res_b.run_id != run_a and res_b.status == "complete" and not res_b.resumed
        assert _runs(store) == [(run_a, "a", "failed", kept), (res_b.run_id, "b", "complete", res_b.items_total)]
        proxy.fail_always = False
        res_a = run_evaluation(store, resume_request(store, run_a, remote=ONCE))
        assert (res_a.run_id, res_a.status, res_a.resumed) == (run_a, "complete", True)
        prov = json.loads(store.conn.execute("SELECT provenance_json FROM runs WHERE id = ?",
                                             (run_a,)).fetchone()[0])
        stored = store.conn.execute("SELECT model_sha256 FROM runs WHERE id = ?", (run_a,)).fetchone()[0]
        assert stored == prov["engine"]["identity"] == remote_identity("m", prov["engine"]["servers"][0]["weights"])
        assert prov["engine"]["servers"][0]["weights"] == {"id": "m", "owned_by": "me"}
    finally:
        if proxy is not None:
            proxy.stop()
        s.stop()
        store.close()


def test_an_interrupted_local_run_is_not_taken_over_by_a_second_registration_of_the_same_file(
        tiny_chat_model: Path, home: Path) -> None:
    store = _store(home)
    (home / "models").mkdir()
    copy = home / "models" / "copy.gguf"
    shutil.copyfile(tiny_chat_model, copy)
    first, second = register_file(store, tiny_chat_model, name="first"), register_file(store, copy, name="second")
    assert first.sha256 == second.sha256 and first.id != second.id
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        run_evaluation(store, _judge(store, first, limit=30), progress=lambda ev: cancel.set()
                       if ev.items_done else None, cancel=cancel)
    (run_first, _, status, kept), = _runs(store)
    assert status == "interrupted" and kept >= 1
    res = run_evaluation(store, _judge(store, second, limit=30))
    assert res.run_id != run_first and not res.resumed
    assert [r[1:3] for r in _runs(store)] == [("first", "interrupted"), ("second", "complete")]
    store.close()


def test_what_servers_report_about_the_weights_is_part_of_the_identity() -> None:
    """llama.cpp's server describes the weights in /v1/models ("meta") and /props ("model_path"); vLLM in "root";
    volatile fields ("created") are left out. Other weights behind the same name: another identity."""
    entry = {"id": "m", "object": "model", "created": 1767225600, "owned_by": "llamacpp",
             "meta": {"vocab_type": 2, "n_vocab": 262144, "n_ctx_train": 32768, "n_embd": 640,
                      "n_params": 268098176, "size": 253114368}}
    report = weights_report(entry, {"model_path": "/srv/models/gemma-3-270m-q4_k_m.gguf", "build_info": "b1"})
    assert set(report) == {"id", "owned_by", "meta", "model_path"}
    same = weights_report({**entry, "created": 1767225999}, {"model_path": "/srv/models/gemma-3-270m-q4_k_m.gguf"})
    assert remote_identity("m", report) == remote_identity("m", same)
    other = weights_report({**entry, "meta": {**entry["meta"], "n_params": 999}},
                           {"model_path": "/srv/models/gemma-3-270m-q4_k_m.gguf"})
    assert remote_identity("m", report) != remote_identity("m", other)
    assert weights_report({"id": "org/model", "root": "/data/org/model", "max_model_len": 4096,
                           "permission": [{"created": 1}]}) == {"id": "org/model", "root": "/data/org/model",
                                                               "max_model_len": 4096}
