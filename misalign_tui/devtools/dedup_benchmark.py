"""The dedup speed benchmark behind ``misalign-tui bench dedup``.

A synthetic corpus drawn from the seed benchmark's vocabulary and prompt lengths (the taxonomy's words and a
fixed word list when the package carries no seed benchmark), with a share of planted near-duplicates (an earlier
prompt with a few words changed). Fixed by a seed, so every run measures the same input.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from misalign_tui.core.fingerprint import (
    DEFAULT_BITS,
    DEFAULT_TAU,
    SIMHASH_PACKAGE_LOGGER,
    dedup,
    exhaustive_dedup,
    simhashes,
)

DEFAULT_SEED = 20260211
NEAR_DUPLICATE_SHARE = 0.05

# Used with the taxonomy's words when no seed benchmark is installed: everyday words of requests and advice.
FALLBACK_WORDS = """
how can i should we my our your their friend neighbour colleague family child parent teacher doctor manager
community village city country people group person someone help tell explain write describe suggest plan make
get keep stop avoid convince allow refuse share hide use take give find show teach learn ask answer question
best way quickly quietly without anyone noticing about for with from into against because before after while
when where why what which who whether if then not never always sometimes really very more most less least
money work job school home house car phone message post story song festival tradition food dish recipe
language religion belief custom ritual holiday music art craft heritage museum market law rule policy right
health safety risk danger harm fair honest respect privacy freedom power wealth status success pleasure
tradition security kindness loyalty justice equality nature animal elder guest stranger visitor minority
""".split()

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class CorpusSource:
    name: str  # "seed benchmark" or "taxonomy + word list"
    words: list[str]
    weights: np.ndarray  # relative frequency of each word
    lengths: np.ndarray  # prompt lengths in words to draw from


def corpus_source() -> CorpusSource:
    """The seed benchmark's words and lengths when the package carries it, else the fallback."""
    from misalign_tui.core.io.native import read_jsonl, seed_path

    path = seed_path()
    texts: list[str] = []
    if path is not None:
        texts = [rec.prompt for rec in read_jsonl(path)]
    if texts:
        name = "seed benchmark"
        tokens = [w for t in texts for w in _WORD.findall(t)]
        lengths = np.array([max(1, len(_WORD.findall(t))) for t in texts], dtype=np.int64)
    else:
        from misalign_tui.core.taxonomy import published_taxonomy

        name = "taxonomy + word list"
        domain_words = [w.lower() for d in published_taxonomy().domains for w in _WORD.findall(d.name)]
        tokens = FALLBACK_WORDS + domain_words
        lengths = np.arange(8, 41, dtype=np.int64)  # 8..40 words, as request prompts run
    counts = Counter(tokens)
    words = sorted(counts)
    weights = np.array([counts[w] for w in words], dtype=np.float64)
    return CorpusSource(name, words, weights / weights.sum(), lengths)


def synthetic_corpus(n: int, seed: int = DEFAULT_SEED, near_duplicate_share: float = NEAR_DUPLICATE_SHARE,
                     source: CorpusSource | None = None) -> tuple[list[str], np.ndarray]:
    """``n`` prompts and the indices of the planted near-duplicates (each a copy of an earlier prompt with one
    to three words replaced)."""
    src = source or corpus_source()
    rng = np.random.default_rng(seed)
    planted = np.zeros(n, dtype=bool)
    n_planted = int(round(n * near_duplicate_share)) if n > 1 else 0
    if n_planted:
        planted[rng.choice(np.arange(1, n), size=n_planted, replace=False)] = True
    lengths = rng.choice(src.lengths, size=n)
    vocab = np.array(src.words, dtype=object)
    words_per_prompt: list[list[str]] = []
    for i in range(n):
        if planted[i]:
            words = list(words_per_prompt[int(rng.integers(0, i))])
            for pos in rng.choice(len(words), size=min(len(words), int(rng.integers(1, 4))), replace=False):
                words[pos] = str(vocab[rng.choice(len(vocab), p=src.weights)])
        else:
            words = [str(w) for w in rng.choice(vocab, size=int(lengths[i]), p=src.weights)]
        words_per_prompt.append(words)
    texts = [(" ".join(w)[:1].upper() + " ".join(w)[1:] + "?") for w in words_per_prompt]
    return texts, np.flatnonzero(planted)


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings += 1


def package_index_dedup(texts: list[str], tau: int, bits: int) -> tuple[np.ndarray, float, float, int]:
    """The same rule with the ``simhash`` package's own Simhash and SimhashIndex (only kept prompts are in the
    index); returns (link per prompt or -1, fingerprint seconds, index seconds, warnings it logged)."""
    from simhash import Simhash, SimhashIndex

    counter = _CountingHandler()
    SIMHASH_PACKAGE_LOGGER.addHandler(counter)
    try:
        t0 = time.perf_counter()
        hashes = [Simhash(t, f=bits) for t in texts]
        t1 = time.perf_counter()
        index = SimhashIndex([], f=bits, k=tau)
        link = np.full(len(texts), -1, dtype=np.int64)
        for i, h in enumerate(hashes):
            dups = index.get_near_dups(h)
            if dups:
                link[i] = min(int(d) for d in dups)
            else:
                index.add(str(i), h)
        t2 = time.perf_counter()
    finally:
        SIMHASH_PACKAGE_LOGGER.removeHandler(counter)
    return link, t1 - t0, t2 - t1, counter.warnings


def run_dedup_benchmark(n: int = 50_000, tau: int = DEFAULT_TAU, bits: int = DEFAULT_BITS,
                        seed: int = DEFAULT_SEED, package_n: int = 5_000, exhaustive: bool = True,
                        report: Callable[[str], None] | None = None) -> dict[str, object]:
    """Time our fingerprints + index against exhaustive comparison and the package's SimhashIndex."""
    say = report or (lambda _msg: None)
    src = corpus_source()
    say(f"corpus: {n} prompts from the {src.name}, seed {seed}")
    texts, planted = synthetic_corpus(n, seed, source=src)

    say("fingerprinting and indexing …")
    t0 = time.perf_counter()
    fps = simhashes(texts, bits)
    t1 = time.perf_counter()
    result = dedup(fps, tau, bits)
    t2 = time.perf_counter()
    out: dict[str, object] = {
        "n": n, "tau": tau, "bits": bits, "seed": seed, "corpus": src.name,
        "planted_near_duplicates": int(len(planted)),
        "planted_removed": int((~result.kept[planted]).sum()),
        "removed": result.removed,
        "fingerprint_seconds": round(t1 - t0, 3),
        "index_seconds": round(t2 - t1, 3),
        "seconds": round(t2 - t0, 3),
    }
    say(f"ours: {out['seconds']} s ({out['fingerprint_seconds']} s fingerprints, {out['index_seconds']} s index), "
        f"{result.removed} removed")
    if exhaustive:
        say("exhaustive comparison (numpy XOR + popcount against every kept prompt) …")
        t3 = time.perf_counter()
        reference = exhaustive_dedup(fps, tau)
        out["exhaustive_seconds"] = round(time.perf_counter() - t3, 3)
        out["exhaustive_equal"] = result.equals(reference)
        say(f"exhaustive: {out['exhaustive_seconds']} s, equal: {out['exhaustive_equal']}")
    else:
        out["exhaustive_seconds"] = None
        out["exhaustive_equal"] = None
    m = min(package_n, n)
    if m:
        say(f"simhash package on the first {m} prompts (Simhash + SimhashIndex, k={tau}) …")
        link, fp_s, idx_s, warnings = package_index_dedup(texts[:m], tau, bits)
        ours_prefix = dedup(fps[:m], tau, bits)
        ours_fp_s = _time(lambda: simhashes(texts[:m], bits))
        ours_idx_s = _time(lambda: dedup(fps[:m], tau, bits))
        from simhash import Simhash

        out.update({
            "package_index_n": m,
            "package_fingerprint_seconds": round(fp_s, 3),
            "package_index_seconds": round(idx_s, 3),
            "package_index_equal": bool(np.array_equal(link, ours_prefix.link)),
            "package_warnings_logged": warnings,
            "fingerprints_equal_package": all(int(fps[i]) == Simhash(texts[i], f=bits).value for i in range(m)),
            "ours_at_package_n_fingerprint_seconds": round(ours_fp_s, 3),
            "ours_at_package_n_index_seconds": round(ours_idx_s, 3),
        })
        say(f"package: {fp_s:.2f} s fingerprints, {idx_s:.2f} s index ({warnings} warnings kept off the "
            f"terminal); ours at the same size: {ours_fp_s:.2f} s + {ours_idx_s:.3f} s")
    else:
        out.update({"package_index_n": 0, "package_index_seconds": None})
    return out


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
