"""``models quantize``: llama.cpp's own quantizer on the tiny f32 model, lineage in the registry and in the file,
and every refusal as one line with exit code 2 (nothing half-written left behind)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from misalign_tui.core.errors import Cancelled
from misalign_tui.core.models import quantize
from misalign_tui.core.models.gguf_header import read_gguf_header
from misalign_tui.core.models.registry import LINEAGE_KEYS, register_file
from misalign_tui.core.store import Store

# f32 → q8_0 moves a response's mean per-token log-likelihood by at most this much (measured on the tiny model:
# 0.0014 nats); llama.cpp's own run-to-run noise is "a few hundredths of a nat per token" (docs/measures.md).
LOGLIK_TOLERANCE = 0.01


@pytest.fixture
def tiny_home(home: Path, tiny_model: Path) -> Path:
    (home / "models").mkdir()
    shutil.copy(tiny_model, home / "models" / "tiny-base.gguf")
    return home


def _error_lines(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def _one_line_refusal(res, *fragments: str) -> str:
    assert res.exit_code == 2, res.output
    lines = _error_lines(res)
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def _no_partial_files(models: Path) -> None:
    assert not list(models.glob("*.part")), list(models.iterdir())


def test_f32_to_q8_0_keeps_scores_within_tolerance_and_records_lineage(cli_run, tiny_home: Path) -> None:
    res = cli_run("models", "quantize", "tiny-base", "--to", "q8_0", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    source, (made,) = doc["source"], doc["variants"]
    variant = made["model"]
    assert made["target"] == "Q8_0" and not made["skipped"]
    assert variant["name"] == "tiny-base-q8_0" and variant["quantization"] == "Q8_0"
    assert variant["parent_sha256"] == source["sha256"] and variant["quantized_to"] == "Q8_0"
    assert variant["requantized"] is False and "llama_model_quantize" in variant["quantizer"]
    assert "llama-cpp-python 0.3.36" in variant["quantizer"]
    assert 8.4 < variant["bits_per_weight"] < 8.6 and source["bits_per_weight"] == 32.0
    out = Path(variant["path"])
    assert out == tiny_home / "models" / "tiny-base-q8_0.gguf" and out.stat().st_size == variant["size"]
    # the lineage travels in the file itself: a fresh registry reads it back
    md = read_gguf_header(out).metadata
    assert md[LINEAGE_KEYS["parent_sha256"]] == source["sha256"] and md[LINEAGE_KEYS["requantized"]] is False
    with Store(tiny_home / "fresh.sqlite") as fresh:
        again = register_file(fresh, out)
    assert (again.parent_sha256, again.quantized_to, again.quantizer) == (source["sha256"], "Q8_0",
                                                                         variant["quantizer"])
    conn = sqlite3.connect(tiny_home / "db" / "misalign.sqlite")
    report = json.loads(conn.execute("SELECT quantization_json FROM models WHERE name = 'tiny-base-q8_0'").fetchone()[0])
    assert report["source_sha256"] == source["sha256"] and report["type"] == "Q8_0" and report["ftype"] == 7
    assert conn.execute("SELECT parent, quantized_to FROM model_lineage").fetchall() == [("tiny-base", "Q8_0")]

    # the variant scores the same pairs within the tolerance of its parent
    for name in ("tiny-base", "tiny-base-q8_0"):
        assert cli_run("run", "--model", name, "--limit", "8").exit_code == 0
    scores: dict[int, list[tuple[float, float]]] = {}
    for pair, al, at, ml, mt in conn.execute(
            "SELECT pair_id, aligned_logprob, aligned_tokens, misaligned_logprob, misaligned_tokens "
            "FROM preference_results ORDER BY run_id"):
        scores.setdefault(pair, []).append((al / at, ml / mt))
    assert len(scores) >= 8 and all(len(v) == 2 for v in scores.values())
    worst = max(abs(a[k] - b[k]) for a, b in scores.values() for k in (0, 1))
    assert worst < LOGLIK_TOLERANCE, worst
    conn.close()

    # a second request skips what exists with this lineage
    again_res = cli_run("models", "quantize", "tiny-base", "--to", "Q8_0")
    assert again_res.exit_code == 0 and "already made tiny-base-q8_0" in again_res.stderr


def test_quantize_progress_and_requantize_flag(tiny_home: Path) -> None:
    """Progress comes per tensor with weights done; an already quantized source needs allow_requantize and the
    variant says it was requantized (and its name shows the chain)."""
    with Store(tiny_home / "db.sqlite") as store:
        src = register_file(store, tiny_home / "models" / "tiny-base.gguf")
        events: list[quantize.QuantizeProgress] = []
        (q8,) = quantize.quantize_model(store, src, ["Q8_0"], tiny_home / "models", progress=events.append)
        phases = [e.phase for e in events]
        assert phases[0] == "sizing" and phases[-1] == "done" and "verifying" in phases
        steps = [e for e in events if e.phase == "quantizing"]
        assert len(steps) >= 10 and steps[-1].tensors_done == steps[-1].tensors_total - 1
        assert [e.weights_done for e in steps] == sorted(e.weights_done for e in steps)
        assert steps[-1].weights_per_s > 0 and steps[-1].eta_s is not None
        with pytest.raises(quantize.UserError, match="already quantized \\(Q8_0\\).*--allow-requantize"):
            quantize.quantize_model(store, q8.model, ["Q4_0"], tiny_home / "models")
        (q4,) = quantize.quantize_model(store, q8.model, ["Q4_0"], tiny_home / "models", allow_requantize=True)
        assert q4.model.name == "tiny-base-q8_0-q4_0" and q4.model.requantized
        assert q4.model.parent_sha256 == q8.model.sha256 and q4.report["requantized"] is True


def test_cancel_stops_the_quantizer_and_leaves_no_file(tiny_home: Path) -> None:
    with Store(tiny_home / "db.sqlite") as store:
        src = register_file(store, tiny_home / "models" / "tiny-base.gguf")
        cancel = threading.Event()

        def on_progress(ev: quantize.QuantizeProgress) -> None:
            if ev.phase == "quantizing" and ev.tensors_done >= 2:
                cancel.set()

        with pytest.raises(Cancelled):
            quantize.quantize_model(store, src, ["Q8_0"], tiny_home / "models", progress=on_progress, cancel=cancel)
        assert sorted(p.name for p in (tiny_home / "models").iterdir()) == ["tiny-base.gguf"]
        assert store.conn.execute("SELECT count(*) FROM models").fetchone()[0] == 1
    children = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "child_main"], capture_output=True, text=True)
    assert children.stdout.strip() == "", "the quantizer process was left running"


def test_ctrl_c_stops_the_quantizer_and_leaves_no_file(tiny_home: Path) -> None:
    """Ctrl+C arrives as KeyboardInterrupt in the waiting thread (here raised from the progress callback)."""
    with Store(tiny_home / "db.sqlite") as store:
        src = register_file(store, tiny_home / "models" / "tiny-base.gguf")

        def on_progress(ev: quantize.QuantizeProgress) -> None:
            if ev.phase == "quantizing" and ev.tensors_done >= 1:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            quantize.quantize_model(store, src, ["Q8_0"], tiny_home / "models", progress=on_progress)
        assert sorted(p.name for p in (tiny_home / "models").iterdir()) == ["tiny-base.gguf"]
    children = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "child_main"], capture_output=True, text=True)
    assert children.stdout.strip() == ""


def test_unknown_type_lists_the_valid_ones(cli_run, tiny_home: Path) -> None:
    line = _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "Q8_0,Q9_Z"),
                             "--to Q9_Z: unknown quantization type; valid:")
    for name in ("Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_XS", "F16", "BF16"):
        assert name in line
    assert sorted(p.name for p in (tiny_home / "models").iterdir()) == ["tiny-base.gguf"]


def test_target_equal_to_source_is_refused(cli_run, tiny_home: Path) -> None:
    _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "q8_0,F32"),
                      "--to F32: tiny-base is already F32")
    assert sorted(p.name for p in (tiny_home / "models").iterdir()) == ["tiny-base.gguf"]


def test_a_file_that_is_not_a_gguf_is_refused(cli_run, home: Path) -> None:
    bad = home / "notes.gguf"
    bad.write_text("these are my notes, not a model\n")
    _one_line_refusal(cli_run("models", "quantize", str(bad), "--to", "Q8_0"), str(bad), "not a usable GGUF file",
                      "bad magic")


def test_a_remote_model_is_refused(cli_run, home: Path) -> None:
    assert cli_run("models", "add-remote", "served", "--url", "http://127.0.0.1:9", "--model", "m").exit_code == 0
    _one_line_refusal(cli_run("models", "quantize", "served", "--to", "Q8_0"),
                      "model served is served by http://127.0.0.1:9; quantize needs a local GGUF file")


def test_types_that_need_an_imatrix_are_refused_without_one(cli_run, tiny_home: Path) -> None:
    _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "IQ2_XXS"),
                      "--to IQ2_XXS:", "importance matrix", "--imatrix")


def test_an_existing_file_that_is_not_the_variant_is_kept(cli_run, tiny_home: Path, tiny_chat_model: Path) -> None:
    squatter = tiny_home / "models" / "tiny-base-q8_0.gguf"
    shutil.copy(tiny_chat_model, squatter)
    _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "Q8_0"), str(squatter),
                      "is not the Q8_0 variant of tiny-base")
    assert squatter.read_bytes() == tiny_chat_model.read_bytes()


def _legacy_imatrix(path: Path, entries: dict[str, int]) -> Path:
    """An importance matrix in llama-imatrix's binary format: per tensor, one value per input column."""
    blob = struct.pack("<i", len(entries))
    for name, n in entries.items():
        raw = name.encode()
        blob += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", 1, n) + struct.pack(f"<{n}f", *([1.0] * n))
    path.write_bytes(blob)
    return path


def test_an_imatrix_is_used_and_recorded(cli_run, tiny_home: Path, tmp_path: Path) -> None:
    header = read_gguf_header(tiny_home / "models" / "tiny-base.gguf")
    matrices = [n for n, k in header.tensor_elements.items() if n.endswith(".weight") and "norm" not in n]
    good = _legacy_imatrix(tmp_path / "good.dat", {n: 128 if "ffn_down" in n else 64 for n in matrices})
    res = cli_run("models", "quantize", "tiny-base", "--to", "Q4_0", "--imatrix", str(good), "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["variants"][0]["model"]["imatrix_sha256"] is not None
    # the same type without the matrix is another variant, not "already made"
    _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "Q4_0"), "tiny-base-q4_0.gguf",
                      "made with an importance matrix")
    assert "already made" in cli_run("models", "quantize", "tiny-base", "--to", "Q4_0", "--imatrix", str(good)).stderr
    # llama.cpp reads it: a matrix of the wrong width is its one-line error, and nothing is left behind
    wrong = _legacy_imatrix(tmp_path / "wrong.dat", {n: 7 for n in matrices})
    _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "Q5_0", "--imatrix", str(wrong)),
                      "llama.cpp could not make Q5_0", "imatrix")
    assert not (tiny_home / "models" / "tiny-base-q5_0.gguf").exists()
    _no_partial_files(tiny_home / "models")
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"\x02\x00")
    _one_line_refusal(cli_run("models", "quantize", "tiny-base", "--to", "Q5_0", "--imatrix", str(garbage)),
                      f"--imatrix {garbage}: not an importance matrix")


@pytest.fixture
def small_disk(home: Path, tmp_path: Path):
    """``models/`` of the workspace on a 1.4 MB tmpfs (the database stays on the ordinary disk)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1400k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    (home / "models").symlink_to(mnt)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_disk_too_small_is_refused_before_writing(cli_run, small_disk: Path, tiny_model: Path) -> None:
    shutil.copy(tiny_model, small_disk / "tiny-base.gguf")  # 1.2 MB of the 1.4 MB disk
    res = cli_run("models", "quantize", "tiny-base", "--to", "Q8_0")
    _one_line_refusal(res, "not enough free disk space", "llama.cpp's estimate")
    assert sorted(p.name for p in small_disk.iterdir()) == ["tiny-base.gguf"]


def test_a_disk_that_fills_while_writing_leaves_no_partial_file(cli_run, small_disk: Path, tiny_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The check passes but the disk is full by the time llama.cpp writes (another process filled it): the
    partial file is removed and the error says so in one line."""
    shutil.copy(tiny_model, small_disk / "tiny-base.gguf")
    monkeypatch.setattr(quantize, "free_bytes", lambda folder: 1 << 40)  # the only stand-in: the disk's answer
    res = cli_run("models", "quantize", "tiny-base", "--to", "Q8_0")
    _one_line_refusal(res, "tiny-base-q8_0.gguf", "cannot write the variant", "disk full")
    assert sorted(p.name for p in small_disk.iterdir()) == ["tiny-base.gguf"]


def test_a_model_registered_before_m007_gets_its_bits_per_weight(tiny_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows from before the lineage migration have no bits per weight: the next look reads the header only."""
    from misalign_tui.core.models import registry

    path = tiny_home / "models" / "tiny-base.gguf"
    with Store(tiny_home / "db.sqlite") as store:
        first = register_file(store, path)
        store.conn.execute("UPDATE models SET bits_per_weight = NULL WHERE id = ?", (first.id,))
        monkeypatch.setattr(registry, "file_sha256", lambda p: pytest.fail("no rehash of an unchanged file"))
        again = register_file(store, path)
    assert again.bits_per_weight == 32.0 and again.sha256 == first.sha256


def test_the_quantizer_process_dies_with_its_parent(tmp_path: Path) -> None:
    """``kill -9`` of the command must not leave llama.cpp writing on: the child asks the kernel for SIGTERM when
    its parent dies (the mechanism child_main uses, on a child that would otherwise sleep a minute)."""
    import sys
    import time

    pidfile = tmp_path / "child.pid"
    child_py = tmp_path / "child.py"
    child_py.write_text("import os, sys, time\n"
                        "from misalign_tui.core.models.quantize import _die_with_parent\n"
                        "_die_with_parent()\n"
                        "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
                        "time.sleep(60)\n")
    parent_py = tmp_path / "parent.py"
    parent_py.write_text("import subprocess, sys, time\n"
                         "subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]])\n"
                         "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    parent = subprocess.Popen([sys.executable, str(parent_py), str(child_py), str(pidfile)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10

        def alive() -> bool:
            try:
                state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                return False
            return state != "Z"

        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive():
            os.kill(child, 9)
            pytest.fail("the child outlived its killed parent")
    finally:
        if parent.poll() is None:
            parent.kill()
