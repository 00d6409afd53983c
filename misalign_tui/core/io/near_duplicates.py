"""SimHash near-duplicate detection for imported prompts, behind one small interface.

``prompt_fingerprint`` is ``core.fingerprint.simhash_value`` (equal to the ``simhash`` package's
``Simhash(text).value``, 64 bits) and two prompts are near-duplicates at Hamming distance ≤ ``HAMMING_THRESHOLD``
(τ = 10, the sister benchmark's). Imports stream row by row, so this index grows one fingerprint at a time;
whole-corpus dedup uses ``core.fingerprint.dedup`` instead.

The index compares a new fingerprint with every stored one at once (numpy XOR and popcount): exact, no false
negatives, and its cost does not depend on how clustered the fingerprints are — measured 6× faster than a
4 × 16-bit block index on 50,000 clustered fingerprints.
"""

from __future__ import annotations

import numpy as np

from misalign_tui.core.fingerprint import DEFAULT_TAU, simhash_value

HAMMING_THRESHOLD = DEFAULT_TAU


def prompt_fingerprint(text: str) -> int:
    """The prompt's 64-bit SimHash as a signed integer, as stored in ``prompts.fingerprint``."""
    value = simhash_value(text)
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(fp: int) -> int:
    return fp + (1 << 64) if fp < 0 else fp


class NearDuplicateIndex:
    """Fingerprints added so far, each with an owner id; ``matches`` lists owners within the threshold."""

    def __init__(self, threshold: int = HAMMING_THRESHOLD) -> None:
        self.threshold = threshold
        self._fps = np.zeros(1024, dtype=np.uint64)
        self._owners = np.zeros(1024, dtype=np.int64)
        self.size = 0

    def add(self, fingerprint: int, owner: int) -> None:
        if self.size == len(self._fps):
            self._fps = np.concatenate([self._fps, np.zeros_like(self._fps)])
            self._owners = np.concatenate([self._owners, np.zeros_like(self._owners)])
        self._fps[self.size] = _unsigned(fingerprint)
        self._owners[self.size] = owner
        self.size += 1

    def matches(self, fingerprint: int) -> list[tuple[int, int]]:
        """(owner, distance) for every fingerprint within the threshold, nearest first."""
        if not self.size:
            return []
        distances = np.bitwise_count(self._fps[: self.size] ^ np.uint64(_unsigned(fingerprint)))
        hits = np.flatnonzero(distances <= self.threshold)
        return sorted(((int(self._owners[i]), int(distances[i])) for i in hits), key=lambda kv: kv[1])
