"""Third-party data beside the checkout (../shared/data); tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A git worktree sits one level deeper than the main checkout: MISALIGN_TUI_SHARED_DATA points at the folder.
SHARED_DATA = Path(os.environ.get("MISALIGN_TUI_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")


def shared_file(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"{p} is absent (third-party data lives beside the checkout)")
    return p
