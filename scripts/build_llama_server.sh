#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` once, from the llama.cpp source that llama-cpp-python's sdist carries, so that
# the remote judge's logit_bias path (one request per item) can be tested against the server llama.cpp users deploy.
# Nothing is downloaded unless no sdist is given or found: the build itself is offline (no web UI, no HTTPS).
#
#   scripts/build_llama_server.sh            # builds into the cache folder (below) unless the binary is already there
#   scripts/build_llama_server.sh --force    # rebuilds
#
# Environment:
#   MISALIGN_LLAMA_SERVER_CACHE  the cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/misalign-tui/llama-server);
#                                the binary lands in $MISALIGN_LLAMA_SERVER_CACHE/bin/llama-server, where the tests
#                                look for it (they skip cleanly when it is absent).
#   LLAMA_CPP_SDIST              the llama_cpp_python-*.tar.gz to build from (default: the newest one in the cache
#                                folder; else `pip download --no-binary :all: --no-deps llama-cpp-python==<installed>`).
#   JOBS                         parallel compile jobs (default 2). One build takes long on a small CPU (tens of
#                                minutes on 2 cores): start it in the background with its output in a log file.
set -euo pipefail
CACHE=${MISALIGN_LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/misalign-tui/llama-server}
JOBS=${JOBS:-2}
BIN="$CACHE/bin/llama-server"
mkdir -p "$CACHE"

if [ -x "$BIN" ] && [ "${1:-}" != --force ]; then
    echo "llama-server already built: $BIN (use --force to rebuild)"
    exit 0
fi

SDIST=${LLAMA_CPP_SDIST:-}
if [ -z "$SDIST" ]; then
    SDIST=$(ls -1t "$CACHE"/llama_cpp_python-*.tar.gz 2>/dev/null | head -n1 || true)
fi
if [ -z "$SDIST" ]; then
    PY=${PY:-python3}
    VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
    echo "no sdist in $CACHE: downloading llama-cpp-python==$VERSION's sdist with pip"
    "$PY" -m pip download --no-binary :all: --no-deps -d "$CACHE" "llama-cpp-python==$VERSION"
    SDIST=$(ls -1t "$CACHE"/llama_cpp_python-*.tar.gz | head -n1)
fi
[ -f "$SDIST" ] || { echo "no such sdist: $SDIST" >&2; exit 2; }

SRC="$CACHE/src"
rm -rf "$SRC" && mkdir -p "$SRC"
echo "unpacking $SDIST"
tar -C "$SRC" -xzf "$SDIST" --strip-components=1
LLAMA="$SRC/vendor/llama.cpp"
[ -f "$LLAMA/CMakeLists.txt" ] || { echo "$SDIST carries no vendor/llama.cpp" >&2; exit 2; }

BUILD="$CACHE/build"
cmake -S "$LLAMA" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DGGML_CCACHE=OFF
cmake --build "$BUILD" --target llama-server -j "$JOBS"
mkdir -p "$CACHE/bin"
cp "$BUILD/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
rm -rf "$SRC"   # the unpacked source (the build folder stays; --force unpacks and rebuilds)
"$BIN" --version 2>&1 | head -n 3 || true
echo "built $BIN"
