"""Third-party data beside the checkout (../shared/data); tests that need it skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"{p} is absent (third-party data lives beside the checkout)")
    return p
