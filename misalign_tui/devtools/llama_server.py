"""Where the llama.cpp ``llama-server`` binary built by ``scripts/build_llama_server.sh`` lives.

The tests of the remote one-request judge and ``bench remote`` run it when it is there and skip cleanly when it
is not (building it takes tens of minutes on a small CPU, so nothing builds it implicitly).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MISALIGN_LLAMA_SERVER_CACHE"  # the script's cache folder; the binary is bin/llama-server in it
BINARY_ENV = "MISALIGN_LLAMA_SERVER"       # an explicit llama-server binary (e.g. one built elsewhere)


def cache_dir() -> Path:
    """``$MISALIGN_LLAMA_SERVER_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/misalign-tui/llama-server``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "misalign-tui" / "llama-server"


def find_binary() -> Path | None:
    """The llama-server binary to use, or None when none has been built."""
    explicit = os.environ.get(BINARY_ENV)
    candidates = [Path(explicit)] if explicit else [cache_dir() / "bin" / "llama-server"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None
