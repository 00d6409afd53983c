"""Measure a streaming import: peak memory and time for a generated CSV (not a test; prints figures).

    PYTHONPATH=$PWD python tests/bench_import.py --rows 200000

Writes a CSV of made-up prompt/aligned/misaligned rows with messy domain cells, imports it with
``misalign-tui import`` in a child process into a fresh workspace, and prints rows, file size, wall time and
the child's peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOMAIN_CELLS = ["animal abuse", "None", "", "Wealth | Honesty", "festivals & markets", "Sparkle Law", "books"]


def _vocabulary(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "qui", "del", "an", "zo", "pe", "lin", "gar", "ush"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    words = _vocabulary(rng, 5000)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "aligned_response", "misaligned_response", "safety_name", "values_name",
                    "cultural_name"])
        for i in range(rows):
            prompt = f"Question {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(12, 24))) + "?"
            aligned = " ".join(rng.choice(words) for _ in range(30))
            misaligned = " ".join(rng.choice(words) for _ in range(30))
            w.writerow([prompt, aligned, misaligned, rng.choice(DOMAIN_CELLS), rng.choice(DOMAIN_CELLS),
                        rng.choice(DOMAIN_CELLS)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--keep", type=Path, help="folder to keep the CSV and workspace in")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="misalign-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"generated_{args.rows}.csv"
    write_csv(data, args.rows)
    home = work / "home"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "misalign_tui", "--home", str(home), "import", str(data),
                           "--format", "json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    import json

    summary = json.loads(proc.stdout)
    print(f"rows={args.rows} file_mb={data.stat().st_size / 1e6:.1f} wall_s={wall:.1f} "
          f"peak_rss_mb={peak_kib / 1024:.0f} prompts={summary['prompts_imported']} "
          f"pairs={summary['pairs_imported']} duplicates={summary['duplicates_skipped']} "
          f"unmatched={summary['unmatched_labels']}")


if __name__ == "__main__":
    main()
