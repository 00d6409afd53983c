"""Model registry: header metadata without loading weights, and unusable files that never crash a listing."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from misalign_tui.core.models.gguf_header import read_gguf_header


def write_small_gguf(path: Path, template: str | None = None) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if template:
        w.add_chat_template(template)
    w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(300)])
    w.add_tensor("a.weight", np.ones((4, 8), dtype=np.float32))
    w.add_tensor("b.weight", np.ones((16,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_header_reads_metadata(tmp_path: Path) -> None:
    h = read_gguf_header(write_small_gguf(tmp_path / "m.gguf", "{{ messages }}"))
    assert h.metadata["general.architecture"] == "llama"
    assert h.metadata["llama.context_length"] == 256
    assert h.metadata["tokenizer.chat_template"] == "{{ messages }}"
    assert h.array_lengths["tokenizer.ggml.tokens"] == 300
    assert h.parameters == 4 * 8 + 16


def test_models_listing_survives_bad_files(tmp_path: Path, home: Path, cli_run) -> None:
    models = home / "models"
    models.mkdir()
    good = write_small_gguf(models / "good.gguf")
    (models / "empty.gguf").write_bytes(b"")
    (models / "text.gguf").write_text("hello, I am not a model")
    data = good.read_bytes()
    (models / "cut.gguf").write_bytes(data[: len(data) - 40])
    (models / "cuthead.gguf").write_bytes(data[:100])
    res = cli_run("models", "list", "--format", "json")
    assert res.exit_code == 0, res.output
    by_name = {m["name"]: m for m in json.loads(res.stdout)}
    assert by_name["good"]["usable"] and by_name["good"]["parameters"] == 48
    assert by_name["good"]["quantization"] == "F32" and by_name["good"]["context_length"] == 256
    assert not by_name["empty"]["usable"] and "empty file" in by_name["empty"]["error"]
    assert not by_name["text"]["usable"] and "not a GGUF" in by_name["text"]["error"]
    assert not by_name["cut"]["usable"] and "truncated" in by_name["cut"]["error"]
    assert not by_name["cuthead"]["usable"] and "truncated" in by_name["cuthead"]["error"]
    table = cli_run("models", "list")
    assert table.exit_code == 0 and "unusable" in table.stdout


def test_model_specs_resolve(tmp_path: Path, cli_run) -> None:
    f = write_small_gguf(tmp_path / "x.gguf")
    added = json.loads(cli_run("models", "add", str(f), "--name", "tiny", "--format", "json").stdout)
    by_name = json.loads(cli_run("models", "show", "tiny", "--format", "json").stdout)
    by_sha = json.loads(cli_run("models", "show", added["sha256"][:8], "--format", "json").stdout)
    by_path = json.loads(cli_run("models", "show", str(f), "--format", "json").stdout)
    assert added["id"] == by_name["id"] == by_sha["id"] == by_path["id"]


def test_model_path_that_is_a_folder(tmp_path: Path, cli_run) -> None:
    d = tmp_path / "dir.gguf"
    d.mkdir()
    res = cli_run("models", "add", str(d))
    assert res.exit_code == 2 and f"{d}: is a folder" in res.stderr and "Traceback" not in res.output


def test_unknown_model_names_choices(cli_run) -> None:
    res = cli_run("models", "show", "nonesuch")
    assert res.exit_code == 2 and "model 'nonesuch' not found" in res.stderr


def test_two_threads_registering_the_same_file_agree(tmp_path: Path, home: Path) -> None:
    """The app's screens discover models/ in their own workers: a race must not fail either of them."""
    import threading

    from misalign_tui.core.models.registry import register_file
    from misalign_tui.core.store import Store

    f = write_small_gguf(tmp_path / "same.gguf")
    db = home / "db.sqlite"
    Store(db).close()
    barrier = threading.Barrier(4)
    results: list[object] = []

    def register() -> None:
        with Store(db) as store:
            barrier.wait()
            try:
                results.append(register_file(store, f).id)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                results.append(exc)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1 and isinstance(results[0], int), results


def test_a_gguf_with_a_bad_alignment_marks_only_itself_unusable(tmp_path: Path, home: Path, cli_run) -> None:
    """general.alignment = 0 (or not an integer) in one file in models/ once made ``models list`` and ``init``
    exit 1 with ``internal error: ZeroDivisionError``: the whole workspace broke on one file (issue 13 §4)."""
    models = home / "models"
    models.mkdir()
    write_small_gguf(models / "good.gguf")
    for name, add in (("zero", lambda w: w.add_uint32("general.alignment", 0)),
                      ("float", lambda w: w.add_float32("general.alignment", 32.5)),
                      ("text", lambda w: w.add_string("general.alignment", "32"))):
        w = gguf.GGUFWriter(str(models / f"{name}.gguf"), "llama")
        add(w)
        w.add_tensor("a.weight", np.ones((4, 8), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    init = cli_run("init", "--no-model")
    assert init.exit_code == 0, init.output
    listed = cli_run("models", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    by_name = {m["name"]: m for m in json.loads(listed.stdout)}
    assert by_name["good"]["usable"]
    for name, shown in (("zero", "0"), ("float", "32.5"), ("text", "'32'")):
        assert not by_name[name]["usable"]
        assert by_name[name]["error"] == f"general.alignment = {shown}: must be a positive integer"
    table = cli_run("models", "list")
    assert table.exit_code == 0 and "general.alignment = 0: must be a positive integer" in table.output
