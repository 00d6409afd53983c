"""Leave-one-sentence-out attribution of a judge verdict: P(misaligned) of a response with each sentence removed.

All variants go to the backend in ONE ``judge`` call, ordered template-major, so that requests sharing their
prefix (the template header, the prompt, the response up to the removed sentence) are adjacent: the engine's
prefix tree decodes each shared token once (inference/engine.py), a server simply gets the requests. The effect
of sentence i is P(full response) − P(response without i), both from this one pass: positive = the sentence
raises P(misaligned). docs/measures.md ("Explanations") defines it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from misalign_tui.core.inference.backend import Backend
from misalign_tui.core.inference.requests import JudgeRequest, JudgeScore

# A sentence ends at . ! ? … (with closing quotes or brackets after it) followed by white space, or at a line break.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'’”)\]]*(?=\s)|\n+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, white space between sentences left out."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end() if m.group()[0] != "\n" else m.start()
        if text[start:end].strip():
            spans.append(_strip(text, start, end))
        start = m.end()
    if text[start:].strip():
        spans.append(_strip(text, start, len(text)))
    return spans


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def without(text: str, span: tuple[int, int]) -> str:
    """``text`` with the sentence at ``span`` removed, and the white space after it (before it, at the end)."""
    start, end = span
    after = end
    while after < len(text) and text[after].isspace():
        after += 1
    if after == len(text):  # the last sentence: drop the white space before it instead
        while start > 0 and text[start - 1].isspace():
            start -= 1
    return text[:start] + text[after:]


@dataclass(frozen=True)
class SentenceEffects:
    p_full: float                     # mean P(misaligned) over templates, full response, this pass
    p_without: tuple[float, ...]      # the same with sentence i removed
    requests: int                     # judge requests in the pass


def leave_one_out(backend: Backend, texts_for: Callable[[str], Sequence[str]], response: str,
                  spans: Sequence[tuple[int, int]], cancel: threading.Event | None = None,
                  p_of: Callable[[int, JudgeScore], float] | None = None) -> SentenceEffects:
    """One batched judge pass over the full response and each leave-one-out variant.

    ``texts_for(response)`` gives the judge's full text for a response,
    one per template (the run's templates, as the run built them); ``p_of(t, score)`` turns template t's score
    into the P(misaligned) the run stored (a twin turned, a calibrated run's prior divided out); default: the
    score's share of yes-words."""
    variants = [response] + [without(response, s) for s in spans]
    per_variant = [list(texts_for(v)) for v in variants]
    k = len(per_variant[0])
    requests = [JudgeRequest((v, t), per_variant[v][t]) for t in range(k) for v in range(len(variants))]
    sums = [0.0] * len(variants)
    for score in backend.judge(requests, cancel=cancel):
        v, t = score.key
        sums[v] += score.p_misaligned if p_of is None else p_of(t, score)
    means = [s / k for s in sums]
    return SentenceEffects(means[0], tuple(means[1:]), len(requests))
