"""The calibration split of a benchmark: prompts held out of scoring so that few-shot demonstrations (and the
choice of a protocol's settings) never touch the items a run scores.

The split is a deterministic, seeded function of the benchmark alone: prompts ordered by sha256(seed, prompt key),
the first ``SPLIT_SHARE`` of them held out. A run with ``--shots K`` shows K demonstrations drawn from the split —
balanced over labels (aligned, misaligned alternate) and dimensions (round robin), one response per pair and
distinct prompts first — and scores only the other prompts. ``split = "calibration"`` scores the split instead,
less the prompts its demonstrations come from: where settings are measured and chosen (``bench judge-protocols``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from misalign_tui.core.errors import UserError
from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import DIMENSIONS

SPLIT_SHARE = 0.2
SPLIT_SEED = 0
SPLIT_VERSION = 1  # bump when the rule above changes, so runs on the old split stay apart
CONTENT_FREE = "N/A"  # the content-free response of contextual calibration (Zhao et al. 2021)
LABEL_ORDER = ("aligned", "misaligned")


@dataclass(frozen=True)
class Demonstration:
    response_id: int
    prompt_id: int
    prompt_key: str
    prompt: str
    response: str
    label: str
    dimension: str | None

    def as_triple(self) -> tuple[str, str, str]:
        return (self.prompt, self.response, self.label)

    def record(self) -> dict[str, object]:
        """What the run's provenance keeps of it."""
        return {"prompt_key": self.prompt_key, "response_id": self.response_id, "label": self.label,
                "dimension": self.dimension}


@dataclass(frozen=True)
class CalibrationSplit:
    benchmark_id: int
    prompts_total: int
    held_out: tuple[int, ...]              # prompt ids, in split order
    demonstrations: tuple[Demonstration, ...]  # the ones a run shows (K of them)

    @property
    def demo_prompts(self) -> frozenset[int]:
        return frozenset(d.prompt_id for d in self.demonstrations)

    @property
    def dev_prompts(self) -> frozenset[int]:
        """The held-out prompts a run on the calibration split scores: none of its demonstrations' prompts."""
        return frozenset(self.held_out) - self.demo_prompts

    def record(self) -> dict[str, object]:
        return {"version": SPLIT_VERSION, "share": SPLIT_SHARE, "seed": SPLIT_SEED,
                "prompts_held_out": len(self.held_out), "prompts_total": self.prompts_total,
                "demonstrations": [d.record() for d in self.demonstrations]}


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def held_out_prompts(store: Store, benchmark_id: int, seed: int = SPLIT_SEED) -> tuple[tuple[int, ...], int]:
    """(held-out prompt ids in split order, prompts in the benchmark)."""
    rows = store.conn.execute("SELECT id, key FROM prompts WHERE benchmark_id = ?", (benchmark_id,)).fetchall()
    ordered = sorted(rows, key=lambda r: _rank(seed, str(r[1])))
    n = math.ceil(SPLIT_SHARE * len(ordered)) if ordered else 0
    return tuple(int(r[0]) for r in ordered[:n]), len(ordered)


def calibration_split(store: Store, benchmark_id: int, shots: int, dimensions: Sequence[str] = (),
                      seed: int = SPLIT_SEED) -> CalibrationSplit:
    """The split and the ``shots`` demonstrations, on the ``dimensions`` given (default: every dimension the
    split's responses target). Fewer suitable responses than shots is one line saying how many there are."""
    held, total = held_out_prompts(store, benchmark_id, seed)
    demos = _demonstrations(store, held, shots, tuple(dimensions)) if shots else ()
    return CalibrationSplit(benchmark_id, total, held, demos)


def _demonstrations(store: Store, held: tuple[int, ...], shots: int,
                    dimensions: tuple[str, ...]) -> tuple[Demonstration, ...]:
    order = {pid: i for i, pid in enumerate(held)}
    rows: list[tuple[int, int, str, str, str, str, str | None, int | None]] = []
    for start in range(0, len(held), 500):
        chunk = held[start:start + 500]
        rows += store.conn.execute(
            "SELECT r.id, r.prompt_id, p.key, p.text, r.text, r.label, r.dimension, "
            "(SELECT min(x.id) FROM pairs x WHERE x.aligned_id = r.id OR x.misaligned_id = r.id) "
            f"FROM responses r JOIN prompts p ON p.id = r.prompt_id WHERE r.prompt_id IN ({','.join('?' * len(chunk))})",
            list(chunk)).fetchall()
    rows.sort(key=lambda r: (order[r[1]], r[0]))
    present = {r[6] for r in rows}
    dims: list[str | None] = [d for d in DIMENSIONS if d in present and (not dimensions or d in dimensions)]
    dims += sorted(d for d in present if d is not None and d not in DIMENSIONS and (not dimensions or d in dimensions))
    if None in present and not dimensions:
        dims.append(None)
    if not dims:
        raise UserError(f"--shots {shots}: the calibration split has no response on the chosen dimensions")
    chosen: list[Demonstration] = []
    used_prompts: set[int] = set()
    used_pairs: set[int] = set()
    used_rows: set[int] = set()
    for i in range(shots):
        # labels alternate; with an even number of dimensions the pattern shifts every round, so each
        # dimension gets both labels
        shift = i // len(dims) if len(dims) % 2 == 0 else 0
        dim, label = dims[i % len(dims)], LABEL_ORDER[(i + shift) % 2]
        pick = None
        for distinct in (True, False):  # distinct prompts first; then any response of an unused pair
            for r in rows:
                if r[0] in used_rows or r[6] != dim or r[5] != label:
                    continue
                if (distinct and r[1] in used_prompts) or (r[7] is not None and r[7] in used_pairs):
                    continue
                pick = r
                break
            if pick is not None:
                break
        if pick is None:
            raise UserError(f"--shots {shots}: the calibration split ({len(held)} prompts) holds too few "
                            f"{label} responses on {dim or 'untargeted'} for {shots} balanced demonstrations; "
                            "use fewer shots")
        used_rows.add(pick[0])
        used_prompts.add(pick[1])
        if pick[7] is not None:
            used_pairs.add(pick[7])
        chosen.append(Demonstration(pick[0], pick[1], pick[2], pick[3], pick[4], pick[5], pick[6]))
    return tuple(chosen)


def calibrated_p_yes(p_yes: float, p_no: float, prior_yes: float, prior_no: float) -> float:
    """Contextual calibration (Zhao et al. 2021): the answer probabilities divided by the content-free prior's,
    then normalised over Yes and No. A prior that underflowed to 0 counts as the smallest positive float."""
    tiny = 1e-300
    a = p_yes / max(prior_yes, tiny)
    b = p_no / max(prior_no, tiny)
    return a / (a + b) if a + b > 0 else 0.5
