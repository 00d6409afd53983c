"""Workspaces for the app's tests: a fixed path, so snapshots do not change with tmp names."""

from __future__ import annotations

import shutil
from pathlib import Path

SNAPSHOT_HOME = Path("/tmp/misalign-tui-snapshot-home")
SIZE = (100, 30)


def fresh_home(path: Path = SNAPSHOT_HOME) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
