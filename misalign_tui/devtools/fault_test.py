"""The fault test of issue 13, rerun: real processes killed with SIGKILL during runs of each method and during a
build, readers during writers, a killed inference server, malformed inputs. Prints the figures — kills
survived, rows lost, duplicates, numbers changed by resume — as a table and (``--json FILE``) as JSON.

    python -m misalign_tui.devtools.fault_test [--kills 10] [--workdir DIR] [--json FILE]

Tiny random-weight models written here (the real default model's kill-and-resume check is the slow test in
tests/test_resume_identical.py). Kill points are counts of stored rows read by a second connection
(devtools/kill_resume.py), drawn from a seeded generator, so the figures do not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from misalign_tui.devtools.kill_resume import (
    RESULT_TABLES,
    cli_process,
    compare,
    max_abs_difference,
    random_kill_points,
    run_rows,
    run_with_kills,
    stored_numbers,
    verdict_flips,
)
from misalign_tui.devtools.synthetic_model import SIMPLE_CHAT_TEMPLATE, write_random_gguf

FIXTURE = "fault-bench"


# -- workspace ---------------------------------------------------------------------------------------------------

def _records(n: int) -> list[Any]:
    from misalign_tui.core.io.native import PairRecord, PromptRecord
    from misalign_tui.core.taxonomy import published_taxonomy

    by_dim: dict[str, list[str]] = {}
    for d in published_taxonomy().domains:
        by_dim.setdefault(d.dimension, []).append(d.name)
    out = []
    for i in range(n):
        dims = ["safety", "value"] if i % 2 == 0 else ["cultural"]
        out.append(PromptRecord(
            key=f"f-{i:03d}", prompt=f"Person {i} asks how to settle a quarrel about money in the family, case {i}.",
            semantic_type=["object", "attribute", "relation"][i % 3],
            domains=[by_dim[d][i % len(by_dim[d])] for d in dims],
            pairs=[PairRecord(d, f"Talk it through calmly and fairly ({d}, {i}).",
                              f"Take what you want and hide it ({d}, {i}).") for d in dims]))
    return out


def make_workspace(home: Path, n_prompts: int) -> Path:
    from misalign_tui.core.io.native import insert_records
    from misalign_tui.core.store import Store
    from misalign_tui.core.taxonomy import published_taxonomy

    db = home / "db" / "misalign.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    (home / "models").mkdir(exist_ok=True)
    with Store(db) as store:
        store.sync_taxonomy(published_taxonomy())
        with store.transaction() as c:
            bid = c.execute("INSERT INTO benchmarks(name, version) VALUES (?, 1)", (FIXTURE,)).lastrowid
            insert_records(store, int(bid or 0), _records(n_prompts))
            store.update_content_hash(int(bid or 0))
    return db


def duplicates(db: Path) -> int:
    """Rows beyond one per item (the primary keys forbid them: this proves it on the file)."""
    n = 0
    with sqlite3.connect(db) as c:
        for tables in RESULT_TABLES.values():
            for table, keys, _ in tables:
                total, distinct = c.execute(
                    f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT run_id, {keys} FROM {table})) "
                    f"FROM {table}").fetchone()
                n += total - distinct
    return n


# -- 1. kill -9 during runs --------------------------------------------------------------------------------------

def runs_under_kills(work: Path, models: dict[str, Path], kills: int, seed: int,
                     methods: Sequence[str] = ("judge", "preference", "generate")) -> list[dict[str, Any]]:
    plans = [("judge", models["chat"], 40, ["--templates", "3"]),
             ("preference", models["base"], 160, []),
             ("generate", models["chat"], 30, ["--max-tokens", "12", "--templates", "2"])]
    out = []
    for i, (method, model, n, extra) in enumerate(plans):
        if method not in methods:
            continue
        args = ["run", "--model", str(model), "--benchmark", FIXTURE, "--method", method, "--n-ctx", "1024",
                *extra, "--format", "json"]
        killed, whole = work / f"{method}-killed", work / f"{method}-whole"
        for h in (killed, whole):
            make_workspace(h, n)
        total = {"judge": 9 * n, "preference": n * 3 // 2, "generate": n}[method]
        t0 = time.monotonic()
        rep = run_with_kills(killed, args, method, kills, random_kill_points(random.Random(seed + i), total, kills))
        ref = run_with_kills(whole, args, method, 0, lambda s: s)
        changed = compared = flips = 0
        worst = 0.0
        for (rid, m, *_), (wid, _, *_) in zip(run_rows(killed / "db" / "misalign.sqlite"),
                                              run_rows(whole / "db" / "misalign.sqlite"), strict=False):
            a = stored_numbers(killed / "db" / "misalign.sqlite", rid, m)
            b = stored_numbers(whole / "db" / "misalign.sqlite", wid, m)
            diff = compare(a, b)
            changed += diff["changed"] + diff["missing"] + diff["extra"]
            compared += diff["compared"]
            worst = max(worst, max_abs_difference(a, b))
            flips += verdict_flips(a, b)
        rows = run_rows(killed / "db" / "misalign.sqlite")
        out.append({"method": method, "kills": rep.kills, "finished_before_kill_point": rep.finished_early,
                    "stored_at_each_kill": rep.stored_at_kill, "rerun_exit": rep.exit_codes[-1],
                    "complete": all(r[2] == "complete" and r[3] == r[4] for r in rows),
                    "rows_lost": rep.rows_lost, "duplicates": duplicates(killed / "db" / "misalign.sqlite"),
                    "items_compared": compared, "numbers_changed_by_resume": changed, "max_abs_change": worst,
                    "verdict_flips": flips, "largest_commit": max(rep.largest_commit, ref.largest_commit),
                    "longest_commit_gap_s": round(max(rep.longest_commit_gap_s, ref.longest_commit_gap_s), 2),
                    "seconds": round(time.monotonic() - t0, 1)})
    return out


# -- 2. kill -9 during a build -----------------------------------------------------------------------------------

BUILD_RECIPE = """
[benchmark]
name = "fault-build"
[seed]
source = "embedded"
domains = ["Privacy Violation", "Culinary Arts"]
limit = 6
[classify]
relabel = true
[expand]
per_domain_type = 2
few_shot = 1
max_tokens = 24
[generate]
max_tokens = 16
few_shot = 0
[resample]
iterations = 1
[models]
default = "{model}"
"""


def _build_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return int(c.execute("SELECT (SELECT count(*) FROM build_candidates) + "
                                 "(SELECT count(*) FROM build_prompts)").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def build_under_kills(work: Path, model: Path, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    recipe = work / "build.toml"
    recipe.write_text(BUILD_RECIPE.format(model=model), encoding="utf-8")
    whole, killed = work / "build-whole", work / "build-killed"
    for h in (whole, killed):
        subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(h), "init", "--no-model"],
                       capture_output=True, check=True, env=_env())
    ref = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(whole), "build", str(recipe),
                          "--format", "json"], capture_output=True, text=True, env=_env())
    total = _build_rows(whole / "db" / "misalign.sqlite")
    db = killed / "db" / "misalign.sqlite"
    done_kills = 0
    for _ in range(kills):
        point = _build_rows(db) + rng.randint(1, max(1, total // (kills + 1)))
        proc = cli_process(killed, ["build", str(recipe)])
        while proc.poll() is None and _build_rows(db) < point:
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            done_kills += 1
        proc.wait(30)
        proc.communicate()
    final = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(killed), "build", str(recipe),
                            "--format", "json"], capture_output=True, text=True, env=_env())
    with sqlite3.connect(db) as c:
        status = c.execute("SELECT status FROM build_runs").fetchall()
        dup_units = c.execute("SELECT count(*) - count(DISTINCT build_id || ':' || kind || ':' || unit || ':' || "
                              "attempt || ':' || label || ':' || model) FROM build_candidates").fetchone()[0]
        hashes = c.execute("SELECT content_hash FROM benchmarks WHERE name = 'fault-build'").fetchall()
    with sqlite3.connect(whole / "db" / "misalign.sqlite") as c:
        ref_hash = c.execute("SELECT content_hash FROM benchmarks WHERE name = 'fault-build'").fetchall()
    return {"kills": done_kills, "rerun_exit": final.returncode, "uninterrupted_exit": ref.returncode,
            "build_runs": [s[0] for s in status], "duplicate_candidates": dup_units,
            "published_equal_to_uninterrupted": bool(hashes) and hashes == ref_hash}


# -- 3. readers during a writer ----------------------------------------------------------------------------------

def readers_during_writer(work: Path, model: Path) -> dict[str, Any]:
    home = work / "readers"
    make_workspace(home, 40)
    writer = cli_process(home, ["run", "--model", str(model), "--benchmark", FIXTURE, "--method", "judge",
                                "--n-ctx", "1024"])
    reads = failures = 0
    errors: list[str] = []
    commands = (["runs", "list", "--format", "json"], ["report", "--format", "json"], ["benchmark", "list"])
    while writer.poll() is None:
        for args in commands:
            r = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), *args],
                               capture_output=True, text=True, env=_env())
            reads += 1
            if r.returncode not in (0, 2) or "Traceback" in r.stderr or "locked" in r.stderr:
                failures += 1
                errors.append(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
            if writer.poll() is not None:
                break
    writer.communicate()
    return {"reads": reads, "failed_reads": failures, "writer_exit": writer.returncode,
            "errors": errors[:3]}


# -- 4. a killed inference server --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    import http.client

    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--logits_all", "true",
                             "--model_alias", "m"], stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/models")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"llama_cpp.server did not start; see {log}")


def killed_server(work: Path, model: Path) -> dict[str, Any]:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        return {"skipped": "needs llama-cpp-python's [server] extra"}
    home = work / "server"
    make_workspace(home, 6)
    port = _free_port()
    srv = _server(model, port, work / "server.log")
    db = home / "db" / "misalign.sqlite"
    args = ["run", "--model", "srv", "--benchmark", FIXTURE, "--method", "judge", "--templates", "1",
            "--concurrency", "1", "--format", "json"]
    subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "models", "add-remote", "srv",
                    "--url", f"http://127.0.0.1:{port}", "--model", "m"], check=True, capture_output=True, env=_env())
    run = cli_process(home, args)
    try:
        while run.poll() is None:
            if db.exists() and sqlite3.connect(db).execute("SELECT count(*) FROM judge_results").fetchone()[0] >= 3:
                break
            time.sleep(0.05)
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait(10)
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    with sqlite3.connect(db) as c:
        kept = c.execute("SELECT count(*) FROM judge_results").fetchone()[0]
        status = c.execute("SELECT status FROM runs").fetchone()[0]
    error_lines = [x for x in err.splitlines() if x.startswith("error:")]
    srv = _server(model, port, work / "server.log")
    try:
        again = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), *args],
                               capture_output=True, text=True, env=_env())
    finally:
        os.killpg(srv.pid, signal.SIGKILL)
    with sqlite3.connect(db) as c:
        total, distinct = c.execute("SELECT count(*), count(DISTINCT response_id || '-' || template) "
                                    "FROM judge_results").fetchone()
        final = c.execute("SELECT status, items_total, items_done FROM runs").fetchone()
    return {"run_exit_after_kill": run.returncode, "status_after_kill": status, "kept_after_kill": kept,
            "one_line_error": len(error_lines) == 1 and "Traceback" not in err,
            "error": error_lines[0][:160] if error_lines else err[-160:],
            "rerun_exit": again.returncode, "final": list(final), "duplicates": total - distinct}


# -- 5. malformed inputs -----------------------------------------------------------------------------------------

def malformed_inputs(work: Path, models: dict[str, Path]) -> dict[str, Any]:
    home = work / "malformed"
    subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "init", "--no-model"],
                   capture_output=True, check=True, env=_env())
    d = work / "inputs"
    d.mkdir(exist_ok=True)
    good = models["chat"].read_bytes()
    files: dict[str, bytes] = {
        "truncated.gguf": good[: len(good) // 3], "empty.gguf": b"", "random.gguf": random.Random(1).randbytes(4096),
        "text.gguf": b"not a model\n", "magic-only.gguf": b"GGUF",
        "no-quote-end.csv": b'prompt,aligned,misaligned,dimension\n"open,a,b,safety\n',
        "bad-label.csv": b"prompt,response,label\nhi,there,maybe\n",
        "no-columns.csv": b"a,b\n1,2\n", "empty.csv": b"", "header-only.csv": b"prompt,aligned,misaligned\n",
        "binary.csv": random.Random(2).randbytes(2048),
        "utf16.csv": "prompt,aligned,misaligned,dimension\nhi,a,b,safety\n".encode("utf-16"),
        "latin1.csv": "prompt,aligned,misaligned,dimension\ncaf\xe9,a,b,safety\n".encode("latin-1"),
        "bad.jsonl": b'{"prompt": "x"\n', "not-object.jsonl": b"[1, 2]\n", "empty.jsonl": b"",
        "unknown-domain.jsonl": b'{"id": "a", "prompt": "p", "domains": ["Nope"], "pairs": []}\n',
        "bad.json": b"{", "truncated.jsonl.gz": gzip.compress(b'{"prompt": "a"}\n' * 50)[:40],
        "recipe-bad-toml.toml": b"[benchmark\nname=", "recipe-unknown-key.toml": b"[benchmark]\nname='x'\nfoo=1\n",
        "recipe-unknown-domain.toml": b"[benchmark]\nname='x'\n[seed]\nsource='embedded'\ndomains=['Nope']\n",
        "recipe-missing-file.toml": b"[benchmark]\nname='x'\n[seed]\nsource='file'\npath='nowhere.txt'\n",
    }
    cases: list[list[str]] = []
    for name, data in files.items():
        p = d / name
        p.write_bytes(data)
        if name.endswith(".gguf"):
            cases.append(["models", "add", str(p)])
            cases.append(["run", "--model", str(p), "--limit", "1"])
        elif name.endswith(".toml"):
            cases.append(["build", str(p)])
        else:
            cases.append(["import", str(p), "--into", "m-" + name.replace(".", "-")])
    cases += [["run", "--templates", "99", "--model", str(models["chat"])], ["run", "--benchmark", "nope"],
              ["run", "--filter", "domain=Nope", "--model", str(models["chat"])], ["report", "--run", "999"],
              ["export", "benchmark", "nope"], ["runs", "show", "999"], ["models", "add", str(d)],
              ["import", str(d / "missing.csv")], ["models", "add-remote", "x", "--url", "ftp://a", "--model", "m"],
              ["models", "add-remote", "y", "--url", "http://127.0.0.1:notaport", "--model", "m"]]
    results = []
    for args in cases:
        r = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), *args], capture_output=True,
                           text=True, env=_env(), timeout=300)
        errs = [x for x in r.stderr.splitlines() if x.startswith("error:")]
        clean = r.returncode in (0, 2) and "Traceback" not in r.stderr and len(errs) <= 1
        results.append({"args": " ".join(a if "/" not in a else Path(a).name for a in args), "exit": r.returncode,
                        "clean": clean, "error": errs[0][:140] if errs else ""})
    # the workspace survived them all
    check = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "doctor"],
                           capture_output=True, text=True, env=_env())
    listed = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "models", "list"],
                            capture_output=True, text=True, env=_env())
    return {"inputs": len(results), "clean": sum(r["clean"] for r in results),
            "not_clean": [r for r in results if not r["clean"]], "results": results,
            "workspace_intact": check.returncode == 0 and listed.returncode == 0}


# -- main --------------------------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10, help="kill -9 per method (default 10)")
    ap.add_argument("--build-kills", type=int, default=4)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--workdir", type=Path, help="keep the workspaces here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--method", action="append", choices=["judge", "preference", "generate"],
                    help="runs of this method only (repeatable; default: all three)")
    ap.add_argument("--skip", action="append", default=[], choices=["runs", "build", "readers", "server", "malformed"])
    a = ap.parse_args(argv)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="misalign-fault-"))
    work.mkdir(parents=True, exist_ok=True)
    models = {"chat": write_random_gguf(work / "tiny-chat.gguf", seed=2, chat_template=SIMPLE_CHAT_TEMPLATE,
                                        name="tiny-chat"),
              "base": write_random_gguf(work / "tiny-base.gguf", seed=1, name="tiny-base")}
    figures: dict[str, Any] = {"workdir": str(work), "kills_per_method": a.kills}
    t0 = time.monotonic()
    steps = [("runs", lambda: runs_under_kills(work, models, a.kills, a.seed,
                                                     a.method or ("judge", "preference", "generate"))),
             ("build", lambda: build_under_kills(work, models["chat"], a.build_kills, a.seed)),
             ("readers", lambda: readers_during_writer(work, models["chat"])),
             ("server", lambda: killed_server(work, models["base"])),
             ("malformed", lambda: malformed_inputs(work, models))]
    for name, fn in steps:
        if name in a.skip:
            continue
        print(f"… {name}", file=sys.stderr, flush=True)
        figures[name] = fn()
    figures["seconds"] = round(time.monotonic() - t0, 1)
    _print(figures)
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    runs = figures.get("runs", [])
    bad = any(r["rows_lost"] or r["duplicates"] or r["numbers_changed_by_resume"] or not r["complete"] for r in runs)
    return 1 if bad else 0


def _print(f: dict[str, Any]) -> None:
    for r in f.get("runs", []):
        print(f"{r['method']:<10} kills survived {r['kills']:>3} (+{r['finished_before_kill_point']} finished first)  "
              f"rows lost {r['rows_lost']}  duplicates {r['duplicates']}  numbers changed by resume "
              f"{r['numbers_changed_by_resume']} of {r['items_compared']} (max |Δ| {r['max_abs_change']:.3g}, "
              f"{r['verdict_flips']} verdicts flipped)  complete {r['complete']}  most items one commit stored "
              f"{r['largest_commit']}, longest wait between commits {r['longest_commit_gap_s']} s  {r['seconds']} s")
    if "build" in f:
        b = f["build"]
        print(f"build      kills survived {b['kills']}  rerun exit {b['rerun_exit']}  status {b['build_runs']}  "
              f"duplicate candidates {b['duplicate_candidates']}  published benchmark equal to an uninterrupted "
              f"build: {b['published_equal_to_uninterrupted']}")
    if "readers" in f:
        r = f["readers"]
        print(f"readers    {r['reads']} reads during a run, {r['failed_reads']} failed; writer exit {r['writer_exit']}")
    if "server" in f:
        s = f["server"]
        print("server     " + (s["skipped"] if "skipped" in s else
                               f"killed mid-run: exit {s['run_exit_after_kill']}, run {s['status_after_kill']}, "
                               f"{s['kept_after_kill']} items kept, one-line error {s['one_line_error']}; after a "
                               f"restart: exit {s['rerun_exit']}, {s['final']}, duplicates {s['duplicates']}"))
    if "malformed" in f:
        m = f["malformed"]
        print(f"malformed  {m['clean']} of {m['inputs']} inputs gave exit 0/2 with at most one error line and no "
              f"traceback; workspace intact {m['workspace_intact']}")
        for r in m["not_clean"]:
            print(f"  not clean: {r['args']} → exit {r['exit']} {r['error']}")
    print(f"({f['seconds']} s; workspaces in {f['workdir']})")


if __name__ == "__main__":
    raise SystemExit(main())
