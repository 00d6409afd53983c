"""What the reviews say (docs/measures.md, "Review agreement"): agreement between reviewers, between the
reviewers and the labels (the dispute rate), and between the reviewers and a model (a judge's verdicts or a
build's model checker) — for one queue, a benchmark (every queue that reviewed its responses) or a build.

The unit is a response. Each reviewer's current decision on it counts; only aligned/misaligned rate it (skip
and flag do not; a flag's note is listed). The reviewers' **majority** is the label given strictly more often;
a tie is "split" and leaves the response out of the comparisons with labels and models.

- between reviewers: Cohen's κ (two reviewers) or Krippendorff's α (three or more), core.metrics.agreement;
- **dispute rate** = responses whose majority differs from their label (gold label, or for a build the label
  the generator was asked for) / responses with a majority; Wilson interval;
- **model accuracy** = responses whose model verdict equals the majority / responses with both; Wilson
  interval; and Cohen's κ between the model's verdicts and the majority.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from misalign_tui.core.metrics.agreement import Agreement, majority, paired_agreement, rater_agreement
from misalign_tui.core.metrics.judge_quality import quality_from_scores
from misalign_tui.core.metrics.statistics import wilson
from misalign_tui.core.review.decisions import LABELS
from misalign_tui.core.review.queues import QueueInfo, queue_info
from misalign_tui.core.store import Store


@dataclass(frozen=True)
class Rate:
    hits: int
    n: int

    @property
    def value(self) -> float | None:
        return self.hits / self.n if self.n else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return wilson(self.hits, self.n)


@dataclass(frozen=True)
class Dispute:
    """A response whose reviewers' majority differs from its label, or that a reviewer flagged."""

    kind: str                   # "disputed" | "flagged"
    queue: str
    prompt_key: str
    dimension: str | None
    text: str
    label: str | None
    majority: str | None
    votes: dict[str, int]
    notes: tuple[tuple[str, str, str], ...]    # (reviewer, decision, note)
    response_id: int | None


@dataclass(frozen=True)
class ReviewFigures:
    scope: str
    kind: str | None            # the queue's kind, None for a benchmark
    reference: str | None       # whose verdicts the model figures are about: "judge", "checker"
    label_meaning: str          # "gold label" or "generator's target"
    items: int
    responses: int
    rated: int                  # responses with at least one aligned/misaligned decision
    reviewers: tuple[str, ...]
    decisions: dict[str, int]   # current decisions by kind
    decided_items: int          # items every response of which some reviewer decided (skips included)
    between: Agreement | None
    with_majority: int
    split: int
    disputes: Rate
    model_accuracy: Rate | None
    model_kappa: Agreement | None
    listed: tuple[Dispute, ...] = field(default=())
    # the model's P(misaligned) ranked against the reviewers' majority (metrics/judge_quality.py: the one AUROC,
    # bootstrap over prompts); None without a P or without both labels among the majorities
    model_auroc: float | None = None
    model_auroc_ci: tuple[float, float] | None = None
    model_auroc_n: int = 0

    def as_json(self) -> dict[str, Any]:
        def agreement(a: Agreement | None) -> dict[str, Any] | None:
            if a is None:
                return None
            return {"statistic": a.statistic, "value": a.value, "ci95": a.ci, "units": a.units,
                    "prompts": a.clusters, "raters": a.raters, "observed_agreement": a.observed, "note": a.note}

        def rate(r: Rate | None) -> dict[str, Any] | None:
            return None if r is None else {"value": r.value, "ci95": r.ci, "hits": r.hits, "n": r.n}

        return {"scope": self.scope, "kind": self.kind, "reference": self.reference,
                "label_meaning": self.label_meaning, "items": self.items, "decided_items": self.decided_items,
                "responses": self.responses, "rated_responses": self.rated, "reviewers": list(self.reviewers),
                "decisions": self.decisions, "between_reviewers": agreement(self.between),
                "responses_with_majority": self.with_majority, "split": self.split,
                "dispute_rate": rate(self.disputes), "model_accuracy": rate(self.model_accuracy),
                "model_kappa": agreement(self.model_kappa),
                "model_auroc": self.model_auroc,
                "model_auroc_ci": list(self.model_auroc_ci) if self.model_auroc_ci else None,
                "model_auroc_n": self.model_auroc_n,
                "listed": [{"kind": d.kind, "queue": d.queue, "prompt_key": d.prompt_key, "dimension": d.dimension,
                            "label": d.label, "majority": d.majority, "votes": d.votes, "text": d.text,
                            "notes": [{"reviewer": r, "decision": k, "note": n} for r, k, n in d.notes]}
                           for d in self.listed]}


@dataclass
class _Unit:
    key: Hashable
    queue: str
    item: int
    prompt_key: str
    dimension: str | None
    text: str
    label: str | None
    reference: str | None
    response_id: int | None
    reference_p: float | None
    by: dict[str, tuple[int, str, str | None]] = field(default_factory=dict)   # reviewer → (decision id, …)


_ROWS = ("SELECT s.id, s.item_id, i.prompt_key, i.dimension, s.text, s.label, s.reference_label, s.response_id, "
         "q.name, d.id, d.reviewer, d.decision, d.note, s.reference_p FROM review_responses s JOIN review_items i ON i.id = s.item_id "
         "JOIN review_queues q ON q.id = i.queue_id LEFT JOIN review_decisions d ON d.review_response_id = s.id "
         "AND d.undone_at IS NULL")


def _units(rows: Sequence[Sequence[Any]], by_response: bool) -> tuple[dict[Hashable, _Unit], dict[int, set[int]],
                                                                       dict[int, set[int]]]:
    """Units (keyed by review response, or by benchmark response across queues), each reviewer's latest
    decision on each; and per item its responses and the responses someone decided."""
    units: dict[Hashable, _Unit] = {}
    item_responses: dict[int, set[int]] = {}
    item_decided: dict[int, set[int]] = {}
    for sid, item, pkey, dim, text, label, ref, rid, qname, did, reviewer, decision, note, ref_p in rows:
        key: Hashable = ("response", rid) if by_response and rid is not None else ("shown", sid)
        u = units.get(key)
        if u is None:
            u = units[key] = _Unit(key, qname, item, pkey, dim, text, label, ref, rid, ref_p)
        item_responses.setdefault(item, set()).add(sid)
        if did is None:
            continue
        item_decided.setdefault(item, set()).add(sid)
        if reviewer not in u.by or u.by[reviewer][0] < did:
            u.by[reviewer] = (did, decision, note)
    return units, item_responses, item_decided


def _figures(scope: str, kind: str | None, reference: str | None, label_meaning: str,
             rows: Sequence[Sequence[Any]], by_response: bool, bootstrap: int, seed: int) -> ReviewFigures:
    units, item_responses, item_decided = _units(rows, by_response)
    counts = dict.fromkeys(("aligned", "misaligned", "skip", "flag"), 0)
    ratings: dict[Hashable, dict[str, str]] = {}
    clusters: dict[Hashable, str] = {}
    reviewers: set[str] = set()
    with_majority = split = disputed = 0
    model_pairs: dict[Hashable, tuple[str, str]] = {}
    scored: list[tuple[str, int, float]] = []  # (prompt, majority is misaligned, the model's P) for the AUROC
    listed = []
    for key, u in units.items():
        clusters[key] = u.prompt_key
        for reviewer, (_, decision, _) in u.by.items():
            counts[decision] = counts.get(decision, 0) + 1
            reviewers.add(reviewer)
        labels = {r: d for r, (_, d, _) in u.by.items() if d in LABELS}
        if labels:
            ratings[key] = labels
        votes = {lab: sum(1 for d in labels.values() if d == lab) for lab in LABELS if lab in labels.values()}
        top = majority(list(labels.values())) if labels else None
        if labels and top is None:
            split += 1
        notes = tuple((r, d, n) for r, (_, d, n) in sorted(u.by.items()) if n)
        if top is not None:
            with_majority += 1
            if u.label is not None and top != u.label:
                disputed += 1
            if u.reference is not None:
                model_pairs[key] = (u.reference, str(top))
            if u.reference_p is not None:
                scored.append((u.prompt_key, int(top == "misaligned"), float(u.reference_p)))
        is_dispute = top is not None and u.label is not None and top != u.label
        flagged = any(d == "flag" for _, d, _ in u.by.values())
        if is_dispute or flagged:
            listed.append(Dispute("disputed" if is_dispute else "flagged", u.queue, u.prompt_key, u.dimension, u.text,
                                  u.label, None if top is None else str(top), votes, notes, u.response_id))
    between = rater_agreement(ratings, clusters, bootstrap=bootstrap, seed=seed)
    model_accuracy = model_kappa = None
    if reference is not None:
        model_accuracy = Rate(sum(1 for m, r in model_pairs.values() if m == r), len(model_pairs))
        model_kappa = paired_agreement(model_pairs, clusters, bootstrap=bootstrap, seed=seed) if model_pairs else None
    auroc, auroc_ci = _model_auroc(scored, bootstrap, seed) if reference is not None else (None, None)
    decided_items = sum(1 for item, shown in item_responses.items() if shown <= item_decided.get(item, set()))
    listed.sort(key=lambda d: (d.kind != "disputed", d.queue, d.prompt_key))
    return ReviewFigures(scope, kind, reference, label_meaning, len(item_responses), len(units), len(ratings),
                         tuple(sorted(reviewers)), counts, decided_items, between, with_majority, split,
                         Rate(disputed, with_majority), model_accuracy, model_kappa, tuple(listed), auroc, auroc_ci,
                         len(scored) if auroc is not None else 0)


def _model_auroc(scored: Sequence[tuple[str, int, float]], bootstrap: int,
                 seed: int) -> tuple[float | None, tuple[float, float] | None]:
    """AUROC of the model's P(misaligned) against the reviewers' majority, with the judge-quality bootstrap over
    prompts (metrics/judge_quality.py)."""
    if len({y for _, y, _ in scored}) < 2:
        return None, None
    prompts = {k: i for i, k in enumerate(dict.fromkeys(k for k, _, _ in scored))}
    q = quality_from_scores([prompts[k] for k, _, _ in scored], [y for _, y, _ in scored], [p for _, _, p in scored],
                            bootstrap=min(bootstrap, 1000), seed=seed)
    return q.auroc, q.auroc_ci


def queue_figures(store: Store, queue_id: int, *, bootstrap: int = 2000, seed: int = 0) -> ReviewFigures:
    """The figures of one queue."""
    q: QueueInfo = queue_info(store, queue_id)
    rows = store.conn.execute(_ROWS + " WHERE i.queue_id = ? ORDER BY s.id, d.id", (queue_id,)).fetchall()
    return _figures(q.name, q.kind, q.reference, q.label_meaning, rows, False, bootstrap, seed)


def benchmark_figures(store: Store, benchmark_id: int, *, bootstrap: int = 2000, seed: int = 0
                      ) -> ReviewFigures | None:
    """Reviews of a benchmark's gold labels across every queue that showed its responses (gold and run
    queues); a response reviewed in two queues counts once, each reviewer's latest decision on it. None when
    none of its responses was reviewed."""
    rows = store.conn.execute(
        _ROWS + " JOIN responses r ON r.id = s.response_id JOIN prompts p ON p.id = r.prompt_id "
        "WHERE p.benchmark_id = ? ORDER BY s.id, d.id", (benchmark_id,)).fetchall()
    if not any(r[9] is not None for r in rows):
        return None
    b = store.benchmark_by_id(benchmark_id)
    return _figures(f"gold labels of {b.name}@{b.version}", None, None, "gold label", rows, True, bootstrap, seed)


def build_figures(store: Store, build_id: int, *, bootstrap: int = 2000, seed: int = 0) -> list[ReviewFigures]:
    """The figures of every review queue of a build (its human checker, samples of its model checker)."""
    ids = [r[0] for r in store.conn.execute("SELECT id FROM review_queues WHERE build_id = ? ORDER BY id", (build_id,))]
    return [queue_figures(store, q, bootstrap=bootstrap, seed=seed) for q in ids]


def run_figures(store: Store, run_id: int, *, bootstrap: int = 2000, seed: int = 0) -> list[ReviewFigures]:
    """The figures of every review queue of a judge run's verdicts."""
    ids = [r[0] for r in store.conn.execute("SELECT id FROM review_queues WHERE run_id = ? ORDER BY id", (run_id,))]
    return [queue_figures(store, q, bootstrap=bootstrap, seed=seed) for q in ids]


def figures_lines(f: ReviewFigures) -> list[str]:
    """The figures in plain sentences, the same for the CLI, the app and the reports."""
    lines = [f"{f.items} items, {f.decided_items} decided; {f.rated} of {f.responses} responses rated by "
             f"{len(f.reviewers)} reviewer(s)" + (f" ({', '.join(f.reviewers)})" if f.reviewers else "") + "; "
             + ", ".join(f"{n} {k}" for k, n in f.decisions.items())]
    lines.append(agreement_text("between reviewers", f.between,
                                "n/a — fewer than two reviewers so far" if len(f.reviewers) < 2 else "n/a — no response rated "
                                "by two reviewers"))
    if f.split:
        lines.append(f"{f.split} response(s) split evenly between reviewers (no majority; left out below)")
    lines.append(f"{f.label_meaning} disputed by the reviewers' majority: {rate_text(f.disputes)}")
    if f.reference is not None:
        who = "judge" if f.reference == "judge" else "model checker"
        lines.append(f"{who} accuracy against the reviewers' majority: "
                     f"{rate_text(f.model_accuracy) if f.model_accuracy else 'n/a'}")
        lines.append(agreement_text(f"{who} vs majority", f.model_kappa, "n/a — no response with a majority yet"))
        if f.model_auroc is not None:
            ci = f" [{f.model_auroc_ci[0]:.2f}, {f.model_auroc_ci[1]:.2f}]" if f.model_auroc_ci else " (no interval)"
            lines.append(f"{who} AUROC of P(misaligned) against the majority: {f.model_auroc:.2f}{ci}, "
                         f"n={f.model_auroc_n} responses (0.5 is chance)")
    return lines


def percent(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def rate_text(r: Rate | None) -> str:
    if r is None or not r.n:
        return f"n/a (n={0 if r is None else r.n})"
    ci = r.ci
    return f"{percent(r.value)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] ({r.hits}/{r.n})" if ci else percent(r.value)


def agreement_text(what: str, a: Agreement | None, missing: str) -> str:
    if a is None:
        return f"{what}: {missing}"
    name = "Cohen's κ" if a.statistic == "kappa" else "Krippendorff's α"
    if a.value is None:
        return f"{what}: {name} n/a — {a.note or 'undefined'} (n={a.units})"
    ci = f" [{a.ci[0]:.2f}, {a.ci[1]:.2f}]" if a.ci else " (no interval: one prompt)"
    return (f"{what}: {name} = {a.value:.2f}{ci}, n={a.units} responses over {a.clusters} prompts, "
            f"{a.raters} raters; observed agreement {percent(a.observed)}" + (f"; {a.note}" if a.note else ""))

