"""Quantization variants of a local GGUF model, made by llama.cpp's own quantizer (``llama_model_quantize``).

Why a child process: ``llama_model_quantize`` takes no progress callback and no cancel flag (its parameters are
threads, type, tensor types, requantize, imatrix, KV overrides, dry run). Its only sign of life is a log line per
tensor (``[  12/ 236] blk.1.attn_q.weight - ...``). So each variant is made in a spawned child process: the child
routes llama.cpp's log through ``llama_log_set`` and sends each tensor's start up a pipe (progress by weights
done, with rate and ETA), and cancel terminates the child — the only way to stop a C call mid-way. The output is
written to ``NAME.gguf.part`` and renamed when its header reads back whole, so a cancel, a crash or a full disk
leaves no partial file behind, and ``models/`` never lists a half-written model.

Before anything is written: the type names are checked (the valid ones are listed), a target equal to the source
type is refused, an already quantized source needs ``allow_requantize`` (the variant is flagged), types that need
an importance matrix need one, and a dry run by llama.cpp itself sizes each output against the free disk space.

Lineage travels in the variant's own header (``registry.LINEAGE_KEYS``, written as llama.cpp KV overrides), so the
registry reads it back whenever the file is registered; the quantizer's report is kept in
``models.quantization_json``.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.models.gguf_header import GGUFError, GGUFHeader, read_gguf_header
from misalign_tui.core.models.registry import (
    LINEAGE_KEYS,
    ModelInfo,
    file_sha256,
    register_file,
)
from misalign_tui.core.store import Store

# Types that are the weights as trained (a normal source); quantizing anything else is requantizing.
FULL_PRECISION = ("F32", "F16", "BF16")
# llama.cpp refuses these without an importance matrix ("this quantization requires an imatrix!").
NEEDS_IMATRIX = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "Q2_K_S")
DISK_MARGIN_BYTES = 16 << 20   # beyond llama.cpp's own size estimate and the copied header
POLL_S = 0.1


def quantization_types() -> dict[str, int]:
    """Every type the linked llama.cpp can write, name → ``llama_ftype`` (from llama-cpp-python's constants, so the
    list follows the installed quantizer)."""
    import llama_cpp

    types: dict[str, int] = {}
    for attr in dir(llama_cpp):
        for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_"):
            if attr.startswith(prefix):
                types[attr.removeprefix(prefix)] = int(getattr(llama_cpp, attr))
    return dict(sorted(types.items(), key=lambda kv: kv[1]))


def quantizer_version() -> str:
    """What made a variant: the function, the binding's version and the library file it called."""
    import llama_cpp

    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libllama.so*"), key=lambda p: len(p.name))
    lib = libs[-1].name if libs else "libllama"  # the versioned name, e.g. libllama.so.0.5.0
    return f"llama.cpp llama_model_quantize (llama-cpp-python {llama_cpp.__version__}, {lib})"


# -- what is asked --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantizePlan:
    """One variant to make: checked, named and sized before anything is written."""

    target: str
    ftype: int
    output: Path
    requantized: bool
    estimated_bytes: int = 0
    existing: ModelInfo | None = None  # already made (same parent, same type): skipped


@dataclass(frozen=True)
class QuantizeProgress:
    """One progress event (immutable, safe to hand to another thread)."""

    target: str
    output: str
    phase: str              # "sizing", "quantizing", "verifying", "done", "skipped"
    tensors_done: int
    tensors_total: int
    weights_done: int
    weights_total: int
    weights_per_s: float
    eta_s: float | None
    variant: int = 1        # this variant's place in the request, 1-based
    variants: int = 1

    @property
    def fraction(self) -> float:
        return self.weights_done / self.weights_total if self.weights_total else 0.0


ProgressCallback = Callable[[QuantizeProgress], None]


@dataclass(frozen=True)
class QuantizeResult:
    model: ModelInfo
    target: str
    skipped: bool                       # it existed already with this lineage
    seconds: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "model": self.model.as_dict(), "report": self.report}


def parse_targets(spec: str | Iterable[str]) -> list[str]:
    """``Q8_0,q5_k_m`` (or several) → canonical names, in order, without repeats; an unknown name is refused
    with the list of valid ones."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    names = [p.strip().upper() for chunk in parts for p in chunk.split(",") if p.strip()]
    if not names:
        raise UserError("--to: give one or more quantization types, e.g. --to Q8_0,Q4_K_M")
    valid = quantization_types()
    for n in names:
        if n not in valid:
            raise UserError(f"--to {n}: unknown quantization type; valid: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def variant_path(source: ModelInfo, target: str, models_dir: Path, requantized: bool) -> Path:
    """``models/<base>-<type>.gguf``: from a full-precision source its type suffix is replaced
    (``tiny-f32`` → ``tiny-q8_0``); a requantized variant keeps the source's name, so the name shows the chain
    (``gemma-3-270m-q4_k_m`` → ``gemma-3-270m-q4_k_m-q3_k_m``)."""
    stem = Path(source.path or source.name).stem
    src = (source.quantization or "").lower()
    base = stem
    if not requantized and src and stem.lower().endswith(src) and len(stem) > len(src):
        base = stem[: -len(src)].rstrip("-_.")
    return models_dir / f"{base}-{target.lower()}.gguf"


def _source_header(source: ModelInfo) -> GGUFHeader:
    if source.is_remote or not source.path:
        raise UserError(f"model {source.name} is served by {source.url}; quantize needs a local GGUF file "
                        "(register one with: misalign-tui models add PATH)")
    path = Path(source.path)
    try:
        return read_gguf_header(path)
    except GGUFError as exc:
        raise UserError(f"{path}: not a usable GGUF file ({exc}); quantize needs a .gguf model file") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def plan_variants(store: Store, source: ModelInfo, targets: list[str], models_dir: Path, *,
                  allow_requantize: bool = False, imatrix: Path | None = None) -> list[QuantizePlan]:
    """Every refusal that needs no quantizer, for all targets at once (nothing is written)."""
    _source_header(source)
    if not source.usable:
        raise UserError(f"{source.path}: unusable model: {source.error}")
    valid = quantization_types()
    src_type = (source.quantization or "").upper()
    requantized = src_type not in FULL_PRECISION
    if requantized and not allow_requantize:
        raise UserError(f"{source.path}: already quantized ({src_type or 'unknown type'}); quantizing it again "
                        "compounds the rounding error — add --allow-requantize to do it anyway (the variants are "
                        "flagged as requantized)")
    if imatrix is None:
        needs = [t for t in targets if t in NEEDS_IMATRIX]
        if needs:
            raise UserError(f"--to {needs[0]}: llama.cpp makes this type only with an importance matrix; add "
                            "--imatrix FILE (from llama.cpp's llama-imatrix)")
    imatrix_sha = file_sha256(imatrix) if imatrix is not None and imatrix.is_file() else None
    plans = []
    for t in targets:
        if t == src_type:
            raise UserError(f"--to {t}: {source.name} is already {t}; choose another type")
        out = variant_path(source, t, models_dir, requantized)
        existing = None
        if out.exists():
            info = register_file(store, out)  # refreshed if the file changed since it was registered
            if info.parent_sha256 != source.sha256 or info.quantized_to != t:
                raise UserError(f"{out}: exists and is not the {t} variant of {source.name}; move it away or "
                                "remove it")
            if info.imatrix_sha256 != imatrix_sha:
                made = ("without an importance matrix" if not info.imatrix_sha256 else
                        "with an importance matrix" if imatrix_sha is None else "with another importance matrix")
                raise UserError(f"{out}: exists, made {made}; move it away to make it again")
            existing = info
        plans.append(QuantizePlan(t, valid[t], out, requantized, existing=existing))
    return plans


# -- importance matrix ----------------------------------------------------------------------------------------

def read_imatrix(path: Path) -> dict[str, list[float]]:
    """An importance matrix as llama.cpp's llama-imatrix writes it: the GGUF format (``<tensor>.in_sum2`` and
    ``<tensor>.counts``) or the older binary ``.dat``; per tensor, the mean squared activation per column."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UserError(f"--imatrix {path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return _read_gguf_imatrix(path) if magic == b"GGUF" else _read_legacy_imatrix(path)
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise UserError(f"--imatrix {path}: not an importance matrix from llama-imatrix ({exc})") from exc


def _read_legacy_imatrix(path: Path) -> dict[str, list[float]]:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ValueError("truncated")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values

    (n,) = take("<i")
    if not 0 < n < 1_000_000:
        raise ValueError(f"implausible entry count {n}")
    out: dict[str, list[float]] = {}
    for _ in range(n):
        (length,) = take("<i")
        if not 0 < length < 4096:
            raise ValueError(f"implausible tensor name length {length}")
        name = bytes(take(f"<{length}s")[0]).decode("utf-8")
        ncall, nval = take("<ii")
        if not 0 < nval < 1 << 28:
            raise ValueError(f"{name}: implausible value count {nval}")
        values = list(take(f"<{nval}f"))
        out[name] = [v / ncall for v in values] if ncall > 0 else values
    return out


def _read_gguf_imatrix(path: Path) -> dict[str, list[float]]:
    import numpy as np
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    out: dict[str, list[float]] = {}
    for name, t in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        counts = tensors.get(base + ".counts")
        if counts is None:
            raise ValueError(f"{base}: in_sum2 without counts")
        sums = np.asarray(t.data, dtype=np.float32).reshape(-1)
        cnt = np.asarray(counts.data, dtype=np.float32).reshape(-1)
        ne0 = sums.size // max(1, cnt.size)
        rows = sums.reshape(cnt.size, ne0)
        means = np.where(cnt[:, None] > 0, rows / np.where(cnt[:, None] > 0, cnt[:, None], 1), 1.0)
        out[base] = means.reshape(-1).astype(np.float32).tolist()
    if not out:
        raise ValueError("no <tensor>.in_sum2 entries")
    return out


# -- the child process ------------------------------------------------------------------------------------------

_TENSOR_LINE = re.compile(r"\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_SIZE_LINE = re.compile(r"(model|quant) size\s*=\s*([\d.]+) MiB(?: \(([\d.]+) BPW\))?")
_FALLBACK = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback quantization")
_FAILED = re.compile(r"failed to quantize: (.*)")


def child_main() -> None:
    """The quantizer process: reads its job as JSON on stdin, writes JSON lines on stdout —
    ``["tensor", i, n, name]`` as each tensor starts, then ``["done", rc, summary]`` or ``["error", text]``."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides: Ctrl+C there terminates this process
    _die_with_parent()
    job = json.loads(sys.stdin.readline())
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nothing from llama.cpp or ggml may reach the terminal (the app's screen)
    os.dup2(devnull, 2)

    def send(*msg: Any) -> None:
        out.write(json.dumps(msg) + "\n")

    try:
        send("done", *_quantize_here(job, send))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        send("error", f"{type(exc).__name__}: {exc}")
    finally:
        out.close()


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (a ``kill -9`` of the command must not leave the
    quantizer writing on)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass  # elsewhere the child finishes its file, which is never renamed and is removed by the next run


def _quantize_here(job: dict[str, Any], send: Callable[..., None]) -> tuple[int, dict[str, Any]]:
    import llama_cpp

    log: list[str] = []

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:  # pragma: no cover - C calls
        try:
            msg = text.decode("utf-8", "replace")
            log.append(msg)
            m = _TENSOR_LINE.match(msg)
            if m:
                send("tensor", int(m.group(1)), int(m.group(2)), m.group(3))
        except Exception:  # noqa: BLE001 - never raise into C
            pass

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(job["ftype"])
    params.nthread = int(job["threads"])
    params.allow_requantize = bool(job["allow_requantize"])
    params.dry_run = bool(job["dry_run"])
    lineage: dict[str, str | bool] = job["lineage"]
    overrides = (llama_cpp.llama_model_kv_override * (len(lineage) + 1))()  # a zeroed last entry ends the list
    for i, (key, value) in enumerate(lineage.items()):
        entry: Any = overrides[i]  # a ctypes struct with a union (the binding's type hints flatten the union)
        entry.key = key.encode()
        if isinstance(value, bool):
            entry.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_BOOL
            entry.value.val_bool = value
        else:
            entry.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            entry.value.val_str = str(value).encode()[:127]
    params.kv_overrides = overrides
    keep: list[Any] = []
    if job.get("imatrix"):
        imatrix = read_imatrix(Path(job["imatrix"]))
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()  # a NULL name ends the list
        for i, (name, values) in enumerate(imatrix.items()):
            arr = (ctypes.c_float * len(values))(*values)
            encoded = name.encode()
            keep += [arr, encoded]
            entries[i].name = encoded
            entries[i].data = ctypes.cast(arr, ctypes.POINTER(ctypes.c_float))
            entries[i].size = len(values)
        params.imatrix = entries
    rc = llama_cpp.llama_model_quantize(job["source"].encode(), job["output"].encode(), ctypes.byref(params))
    text = "".join(log)
    summary: dict[str, Any] = {}
    for kind, mib, bpw in _SIZE_LINE.findall(text):
        summary[f"{kind}_size_mib"] = float(mib)
        if bpw:
            summary[f"{kind}_bits_per_weight"] = float(bpw)
    fb = _FALLBACK.search(text)
    if fb:
        summary["fallback_tensors"] = int(fb.group(1))
    failed = _FAILED.search(text)
    if failed:
        summary["error"] = failed.group(1).strip()
    return int(rc), summary


class _Child:
    """One quantizer process (``child_main``) and its output; ``wait`` relays progress and honours cancel."""

    def __init__(self, job: dict[str, Any]) -> None:
        import subprocess
        import sys

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from misalign_tui.core.models.quantize import child_main; child_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
            encoding="utf-8")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.close()
        self.lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout

        def pump() -> None:
            for line in stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True, name="quantizer-output").start()

    def wait(self, on_tensor: Callable[[int, int, str], None] | None,
             cancel: threading.Event | None) -> tuple[int, dict[str, Any]]:
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                try:
                    line = self.lines.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if line is None:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg[0] == "tensor" and on_tensor is not None:
                    on_tensor(int(msg[1]), int(msg[2]), str(msg[3]))
                elif msg[0] == "done":
                    return int(msg[1]), dict(msg[2])
                elif msg[0] == "error":
                    return -1, {"error": str(msg[1])}
        except BaseException:
            self.stop()
            raise
        code = self.proc.wait()
        return -1, {"error": f"the quantizer process died (exit code {code})"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:  # noqa: BLE001 - then it is killed
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - a child that does not exit is stopped
            self.stop()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _job(source: ModelInfo, output: str, plan: QuantizePlan, allow_requantize: bool, threads: int,
         imatrix: Path | None, lineage: dict[str, str | bool], dry_run: bool) -> dict[str, Any]:
    return {"source": str(source.path), "output": output, "ftype": plan.ftype, "allow_requantize": allow_requantize,
            "threads": threads, "imatrix": str(imatrix) if imatrix else None, "lineage": lineage, "dry_run": dry_run}


# -- making the variants ----------------------------------------------------------------------------------------

def free_bytes(folder: Path) -> int:
    """Free space where the variants are written (one place, so a test can stand in a disk that fills later)."""
    return shutil.disk_usage(folder).free


def _estimate(source: ModelInfo, plan: QuantizePlan, header: GGUFHeader, threads: int,
              allow_requantize: bool) -> int:
    """llama.cpp's own dry run: the tensor bytes it will write, plus the header it copies and a margin."""
    child = _Child(_job(source, os.devnull, plan, allow_requantize, threads, None, {}, True))
    try:
        rc, summary = child.wait(None, None)
    finally:
        child.close()
    if rc != 0 or "quant_size_mib" not in summary:
        raise UserError(f"{source.path}: llama.cpp cannot make {plan.target} from it: "
                        f"{summary.get('error') or 'its dry run failed'}")
    header_bytes = header.data_end - header.tensor_bytes
    return int(summary["quant_size_mib"] * (1 << 20)) + max(0, header_bytes) + DISK_MARGIN_BYTES


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def quantize_model(store: Store, source: ModelInfo, targets: list[str], models_dir: Path, *,
                   allow_requantize: bool = False, imatrix: Path | None = None, threads: int | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> list[QuantizeResult]:
    """Make and register each variant in order (those already made are skipped); see the module docstring.
    Raises ``Cancelled`` (partial file removed, finished variants kept) or ``UserError`` with one line."""
    header = _source_header(source)
    plans = plan_variants(store, source, targets, models_dir, allow_requantize=allow_requantize, imatrix=imatrix)
    if imatrix is not None:
        read_imatrix(imatrix)  # a file that is not an importance matrix is refused before any work
    imatrix_sha = file_sha256(imatrix) if imatrix is not None else None
    n_threads = threads or 0  # 0: llama.cpp's default (every hardware thread)
    models_dir.mkdir(parents=True, exist_ok=True)
    weights_total = sum(header.tensor_elements.values()) or header.parameters
    todo = [p for p in plans if p.existing is None]

    def emit(i: int, plan: QuantizePlan, phase: str, tensors: int = 0, total: int = 0, weights: int = 0,
             rate: float = 0.0) -> None:
        if progress is not None:
            eta = (weights_total - weights) / rate if rate > 0 else None
            progress(QuantizeProgress(plan.target, plan.output.name, phase, tensors, total or header.tensor_count,
                                      weights, weights_total, rate, eta, i, len(plans)))

    sized = []
    for i, plan in enumerate(plans, 1):
        if plan.existing is None:
            emit(i, plan, "sizing")
            plan = QuantizePlan(plan.target, plan.ftype, plan.output, plan.requantized,
                                _estimate(source, plan, header, n_threads, allow_requantize))
        sized.append(plan)
    need = sum(p.estimated_bytes for p in sized)
    free = free_bytes(models_dir)
    if todo and need > free:
        raise UserError(f"{models_dir}: not enough free disk space for {len(todo)} variant(s): they need about "
                        f"{_mb(need)} (llama.cpp's estimate), {_mb(free)} free; free space or choose fewer types")
    results = []
    for i, plan in enumerate(sized, 1):
        if plan.existing is not None:
            emit(i, plan, "skipped", header.tensor_count, header.tensor_count, weights_total)
            results.append(QuantizeResult(plan.existing, plan.target, True))
            continue
        results.append(_make_variant(store, source, header, plan, i, allow_requantize, imatrix, imatrix_sha,
                                     n_threads, weights_total, emit, cancel))
    return results


def _make_variant(store: Store, source: ModelInfo, header: GGUFHeader, plan: QuantizePlan, index: int,
                  allow_requantize: bool, imatrix: Path | None, imatrix_sha: str | None,
                  threads: int, weights_total: int, emit: Callable[..., None],
                  cancel: threading.Event | None) -> QuantizeResult:
    free = free_bytes(plan.output.parent)
    if plan.estimated_bytes > free:  # the disk may have filled since the first check
        raise UserError(f"{plan.output.parent}: not enough free disk space for {plan.output.name}: it needs about "
                        f"{_mb(plan.estimated_bytes)}, {_mb(free)} free; free space and rerun (variants made so far "
                        "are kept)")
    quantizer = quantizer_version()
    lineage: dict[str, str | bool] = {
        LINEAGE_KEYS["parent_sha256"]: source.sha256 or "",
        LINEAGE_KEYS["quantized_to"]: plan.target,
        LINEAGE_KEYS["quantizer"]: quantizer,
        LINEAGE_KEYS["requantized"]: plan.requantized,
    }
    if imatrix_sha:
        lineage[LINEAGE_KEYS["imatrix_sha256"]] = imatrix_sha
    part = plan.output.with_name(plan.output.name + ".part")
    part.unlink(missing_ok=True)  # left by a run that was killed (kill -9) before it could clean up
    t0 = time.monotonic()
    done_weights = [0, 0]  # weights of the tensors finished, and of the tensor in progress

    def on_tensor(i: int, n: int, name: str) -> None:
        done_weights[0] += done_weights[1]
        done_weights[1] = header.tensor_elements.get(name, 0)
        elapsed = time.monotonic() - t0
        rate = done_weights[0] / elapsed if elapsed > 0 else 0.0
        emit(index, plan, "quantizing", i - 1, n, done_weights[0], rate)

    emit(index, plan, "quantizing")
    child = _Child(_job(source, str(part), plan, allow_requantize, threads, imatrix, lineage, False))
    try:
        rc, summary = child.wait(on_tensor, cancel)
        if rc != 0:
            reason = summary.get("error") or f"llama_model_quantize returned {rc}"
            left = free_bytes(plan.output.parent)
            if "iostream" in reason or left < (1 << 20):  # llama.cpp's words for a failed write
                raise UserError(f"{plan.output}: cannot write the variant (disk full or failing: {_mb(left)} free; "
                                f"llama.cpp: {reason}); free space and rerun (variants made so far are kept)")
            raise UserError(f"{source.path}: llama.cpp could not make {plan.target}: {reason}")
        emit(index, plan, "verifying", header.tensor_count, header.tensor_count, weights_total)
        try:
            read_gguf_header(part)
        except (GGUFError, OSError) as exc:  # e.g. the disk filled while llama.cpp wrote
            raise UserError(f"{plan.output}: the quantizer's output is incomplete ({exc}); is the disk full? "
                            "Nothing was kept") from exc
        os.replace(part, plan.output)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        child.close()
    seconds = time.monotonic() - t0
    report: dict[str, Any] = {
        "source": source.name, "source_path": source.path, "source_sha256": source.sha256,
        "source_quantization": source.quantization, "type": plan.target, "ftype": plan.ftype,
        "requantized": plan.requantized, "allow_requantize": allow_requantize, "threads": threads or "llama.cpp default",
        "imatrix_sha256": imatrix_sha, "quantizer": quantizer, "seconds": round(seconds, 3),
        "estimated_bytes": plan.estimated_bytes, **summary,
    }
    info = register_file(store, plan.output)
    with store.transaction() as c:
        c.execute("UPDATE models SET quantization_json = ? WHERE id = ?", (json.dumps(report), info.id))
    emit(index, plan, "done", header.tensor_count, header.tensor_count, weights_total,
         weights_total / seconds if seconds > 0 else 0.0)
    return QuantizeResult(info, plan.target, False, seconds, report)
