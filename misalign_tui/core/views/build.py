"""What the Build screen shows: the latest build, its steps with their counts, what it published, and the rejected
candidates with the reason each was dropped. Headless, read in a worker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from misalign_tui.core.build.checker import measurement_line
from misalign_tui.core.build.state import STEPS
from misalign_tui.core.store import Store


@dataclass(frozen=True)
class BuildRow:
    id: int
    name: str
    status: str                 # running, interrupted, complete, failed
    benchmark: str | None       # name vX once published
    prompts: int | None         # what publishing wrote (None before it)
    pairs: int | None
    error: str | None
    checker: str = ""           # the checker as measured on seed pairs before stage 2 (build/checker.py), a line


@dataclass(frozen=True)
class BuildStep:
    step: str
    status: str                 # pending, running, done
    done: int
    total: int
    counts: dict[str, int]


@dataclass(frozen=True)
class Rejected:
    id: int
    kind: str                   # prompt or response
    stage: str
    domain: str
    dimension: str
    label: str
    model: str
    reason: str
    text: str
    feedback: str
    attempt: int
    p_misaligned: float | None
    perplexity: float | None


@dataclass
class BuildState:
    builds: list[BuildRow] = field(default_factory=list)  # latest first
    steps: list[BuildStep] = field(default_factory=list)  # of the latest build, in pipeline order
    rejected: list[Rejected] = field(default_factory=list)


def format_counts(counts: dict[str, int]) -> str:
    """A step's counts in one phrase, as the CLI's ``build`` prints them: ``accepted 4, rejected 2``."""
    return ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(counts.items())) or "-"


def published_note(build: BuildRow) -> str:
    """What the build left behind, said plainly; an empty benchmark is named as such."""
    if build.status != "complete" or build.benchmark is None:
        return ""
    if not build.pairs:
        return (f"published {build.benchmark} with 0 pairs: no prompt got a pair for every dimension it is "
                "labelled with — the rejected candidates below say why")
    return f"published {build.benchmark}: {build.prompts:,} prompts, {build.pairs:,} pairs"


def read_build_state(store: Store, limit: int = 300) -> BuildState:
    c = store.conn
    if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'build_runs'").fetchone() is None:
        return BuildState()
    builds = [BuildRow(r["id"], r["name"], r["status"],
                       None if r["bname"] is None else f"{r['bname']} v{r['version']}",
                       r["prompts"], r["pairs"], r["error"],
                       measurement_line(json.loads(r["checker_json"]) if r["checker_json"] else None))
              for r in c.execute(
                  "SELECT br.id, br.name, br.status, br.error, br.checker_json, b.name AS bname, b.version, "
                  "(SELECT count(*) FROM prompts p WHERE p.benchmark_id = b.id) AS prompts, "
                  "(SELECT count(*) FROM pairs pa JOIN prompts p ON p.id = pa.prompt_id "
                  " WHERE p.benchmark_id = b.id) AS pairs "
                  "FROM build_runs br LEFT JOIN benchmarks b ON b.id = br.benchmark_id ORDER BY br.id DESC LIMIT 20")]
    if not builds:
        return BuildState()
    bid = builds[0].id
    steps = [BuildStep(r["step"], r["status"], r["items_done"], r["items_total"], json.loads(r["counts_json"] or "{}"))
             for r in c.execute("SELECT * FROM build_steps WHERE build_id = ?", (bid,))]
    steps.sort(key=lambda s: STEPS.index(s.step) if s.step in STEPS else len(STEPS))
    rejected = [Rejected(r[0], r[1], r[2] or "", r[3], r[4], r[5] or "", r[6], r[7] or "", r[8], r[9], r[10],
                         r[11], r[12]) for r in c.execute(
        "SELECT id, kind, stage, coalesce(domain, ''), coalesce(dimension, ''), label, model, reason, text, "
        "coalesce(feedback, ''), attempt, p_misaligned, perplexity FROM build_candidates "
        "WHERE build_id = ? AND status = 'rejected' ORDER BY id LIMIT ?", (bid, limit))]
    return BuildState(builds, steps, rejected)
