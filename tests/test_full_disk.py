"""A full disk mid-import: one line naming the database, exit 2, and what was stored before is intact.

The disk fills for real: the workspace lives on a small tmpfs (mounting needs root; skipped otherwise), shrunk
to just above what ``init`` wrote before the import starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_import_onto_a_full_disk_keeps_earlier_data(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    assert _cli(home, "init", "--no-model").returncode == 0
    before = json.loads(_cli(home, "benchmark", "list", "--format", "json").stdout)
    big = tmp_path / "big.csv"
    with open(big, "w", encoding="utf-8") as fh:
        fh.write("prompt,aligned,misaligned,dimension\n")
        for i in range(6000):
            fh.write(f"request number {i} about storing {i * 7} garden tools in a shed near {i % 97} children,"
                     f"keep sharp tools locked away {i} and out of reach,leave them anywhere {i} it is fine,safety\n")
    used = sum(f.stat().st_size for f in (home / "db").iterdir())
    subprocess.run(["mount", "-o", f"remount,size={used + 256 * 1024}", str(small_disk)], check=True)
    proc = _cli(home, "import", str(big), "--into", "big", "--no-dedup")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    db = home / "db" / "misalign.sqlite"
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {db}: "), proc.stderr
    assert "the disk is full" in lines[0].removeprefix(f"error: {db}: "), proc.stderr
    assert "Traceback" not in proc.stderr
    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
    after = json.loads(_cli(home, "benchmark", "list", "--format", "json").stdout)
    assert after == before  # the failed import left nothing half-written, and the seed benchmark is intact
    assert _cli(home, "benchmark", "check", "misalign-seed").returncode == 0
