#!/usr/bin/env bash
# GPU check for `bench engine`: a random-weight GGUF of Llama-3.2-1B's shape, measured with GPU offload and with
# --gpu-layers 0, on a machine that has no network and only the CUDA build of llama-cpp-python.
#
#   scripts/gpu_bench.sh prepare   # here (with network-free local venv): fills gpu_site/ (git-excluded) with the
#                                  # CUDA llama_cpp tarball and a tarball of the pure-Python dependencies
#   scripts/gpu_bench.sh run       # there, from the repository root, carrying gpu_site/: writes the model, runs
#                                  # the bench twice, writes bench_gpu.json, bench_cpu.json and gpu_bench.log to $OUT
#
# Environment: PY (python to use; default python3), DTYPE (q8_0|f16|f32, default q8_0: 1.3 GB), ITEMS (judge items
# on the GPU, default 200), CPU_ITEMS (default 100), LLAMA_CUDA_TARBALL (prepare: where the tarball is),
# VENV_PY (prepare: the python whose site-packages provides the dependencies), SHAPE=tiny (a quick dry run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE=${GPU_SITE:-$ROOT/gpu_site}
MODE=${1:-run}

if [ "$MODE" = prepare ]; then
    VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
    [ -x "$VENV_PY" ] || { echo "no python at $VENV_PY: create the project's venv (README) or set VENV_PY" >&2; exit 2; }
    TARBALL=${LLAMA_CUDA_TARBALL:-}
    for t in "$ROOT/shared/wheels/llama_cpp_cuda_sm90.tar.xz" "$ROOT/../shared/wheels/llama_cpp_cuda_sm90.tar.xz"; do
        [ -z "$TARBALL" ] && [ -f "$t" ] && TARBALL=$t
    done
    rm -rf "$SITE" && mkdir -p "$SITE"
    if [ -n "$TARBALL" ]; then cp "$TARBALL" "$SITE/llama_cpp_cuda.tar.xz"; else echo "no CUDA tarball found: the run uses whatever llama_cpp it finds" >&2; fi
    SP=$("$VENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    STAGE=$(mktemp -d)
    # Pure-Python packages the CLI imports (numpy comes from the GPU image's PyTorch environment).
    for name in click rich pygments markdown_it mdurl platformdirs gguf yaml diskcache jinja2 markupsafe simhash \
                sqlite_utils sqlite_fts4 tabulate dateutil six pluggy click_default_group plotext typing_extensions \
                tqdm; do
        if [ -d "$SP/$name" ]; then cp -r "$SP/$name" "$STAGE/"; elif [ -f "$SP/$name.py" ]; then cp "$SP/$name.py" "$STAGE/"; fi
    done
    find "$STAGE" \( -name __pycache__ -o -name tests \) -prune -exec rm -rf {} +
    find "$STAGE" -name '*.so' -delete   # built for this Python; each of these packages falls back to pure Python
    tar -C "$STAGE" -cJf "$SITE/pydeps.tar.xz" .
    rm -rf "$STAGE"
    EXCLUDE=$(git -C "$ROOT" rev-parse --git-path info/exclude)
    case "$EXCLUDE" in /*) ;; *) EXCLUDE="$ROOT/$EXCLUDE" ;; esac
    mkdir -p "$(dirname "$EXCLUDE")"
    grep -qx '/gpu_site/' "$EXCLUDE" 2>/dev/null || echo '/gpu_site/' >> "$EXCLUDE"
    du -sh "$SITE"/*
    echo "carry gpu_site and run: scripts/gpu_bench.sh run"
    exit 0
fi

[ "$MODE" = run ] || { echo "usage: $0 prepare|run" >&2; exit 2; }
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_bench.log") 2>&1
PY=${PY:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[ -f "$SITE/llama_cpp_cuda.tar.xz" ] && tar -C "$WORK" -xJf "$SITE/llama_cpp_cuda.tar.xz"
[ -f "$SITE/pydeps.tar.xz" ] && mkdir -p "$WORK/deps" && tar -C "$WORK/deps" -xJf "$SITE/pydeps.tar.xz"
# CUDA llama_cpp first, then the project, then the dependencies (the image's own packages win over ours).
export PYTHONPATH="$WORK:$ROOT:${PYTHONPATH:-}"
EXTRA="$WORK/deps"
NV=$("$PY" -c 'import sys; print(sys.prefix)')
L=$(find "$NV" / -maxdepth 8 -name 'libcublas.so.13' 2>/dev/null | head -1 || true)
[ -n "$L" ] && export LD_LIBRARY_PATH="$(dirname "$L"):${LD_LIBRARY_PATH:-}"
run_py() { PYTHONPATH="$PYTHONPATH:$EXTRA" "$PY" "$@"; }
run_py -c 'import llama_cpp, sys; print("llama_cpp", llama_cpp.__version__, "from", llama_cpp.__file__, "gpu offload:", llama_cpp.llama_supports_gpu_offload())'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

MODEL="$WORK/random-llama-3.2-1b-shape.gguf"
START=$(date +%s.%N)
run_py -c "
from misalign_tui.devtools.synthetic_model import LLAMA_3_2_1B_SHAPE, write_random_gguf
shape = LLAMA_3_2_1B_SHAPE if '${SHAPE:-1b}' == '1b' else dict(n_embd=128, n_ff=256, n_layer=2)  # SHAPE=tiny: a dry run
write_random_gguf('$MODEL', dtype='${DTYPE:-q8_0}', name='random-llama-3.2-1b-shape', **shape)"
echo "wrote $(du -h "$MODEL" | cut -f1) in $(echo "$(date +%s.%N) - $START" | bc 2>/dev/null || echo '?') s"

HOME_WS="$WORK/home"
run_py -m misalign_tui --home "$HOME_WS" init --no-model
run_py -m misalign_tui --home "$HOME_WS" bench engine --model "$MODEL" --items "${ITEMS:-200}" --format json \
    > "$OUT/bench_gpu.json"
run_py -m misalign_tui --home "$HOME_WS" bench engine --model "$MODEL" --items "${CPU_ITEMS:-100}" --gpu-layers 0 \
    --naive-items 20 --preference-pairs 10 --format json > "$OUT/bench_cpu.json"
run_py - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
for name in ("bench_gpu", "bench_cpu"):
    d = json.load(open(f"{out}/{name}.json"))
    print(f"{name}: {d['device']}, items from {d['items_source']}: raw {d['raw_tokens_per_s']:.0f} tok/s, "
          f"judge {d['judge_items_per_s']:.1f} items/s ({d['judge_tokens_per_s']:.0f} unique tok/s), "
          f"naive {d['naive_items_per_s']:.1f} items/s, preference {d.get('preference_items_per_s') or 0:.1f} pairs/s, "
          f"peak RSS {d['peak_rss_mb']:.0f} MB")
PYEOF
