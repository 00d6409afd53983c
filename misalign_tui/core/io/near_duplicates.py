"""SimHash near-duplicate detection for imported prompts, behind one small interface.

``prompt_fingerprint`` is the ``simhash`` package's ``Simhash(text).value`` (64 bits, its default features)
and two prompts are near-duplicates at Hamming distance ≤ ``HAMMING_THRESHOLD`` (τ = 10, the sister
benchmark's). ``core/fingerprint.py`` (another branch) brings a faster equivalent: swap it in here.

The index splits the 64 bits into four 16-bit blocks; two fingerprints within distance 10 agree on some block
up to 2 bits (pigeonhole), so probing each block's value and its 136 neighbours within 2 bits finds every
match exactly — no false negatives — while a lookup touches only a few buckets.
"""

from __future__ import annotations

import logging
from itertools import combinations

from simhash import Simhash

HAMMING_THRESHOLD = 10
_BLOCKS = 4
_BLOCK_BITS = 16
_MASKS = [0] + [1 << i for i in range(_BLOCK_BITS)] + [(1 << i) | (1 << j)
                                                       for i, j in combinations(range(_BLOCK_BITS), 2)]
assert HAMMING_THRESHOLD // _BLOCKS <= 2  # the masks above reach 2 bits per block

logging.getLogger("simhash").setLevel(logging.WARNING)  # it logs a line per large bucket


def prompt_fingerprint(text: str) -> int:
    """The prompt's 64-bit SimHash as a signed integer, as stored in ``prompts.fingerprint``."""
    value = Simhash(text).value
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(fp: int) -> int:
    return fp + (1 << 64) if fp < 0 else fp


class NearDuplicateIndex:
    """Fingerprints added so far, each with an owner id; ``matches`` lists owners within the threshold."""

    def __init__(self, threshold: int = HAMMING_THRESHOLD) -> None:
        if threshold // _BLOCKS > 2:
            raise ValueError(f"threshold {threshold} is beyond what this index searches exactly")
        self.threshold = threshold
        self._tables: list[dict[int, list[tuple[int, int]]]] = [{} for _ in range(_BLOCKS)]
        self.size = 0

    def add(self, fingerprint: int, owner: int) -> None:
        u = _unsigned(fingerprint)
        for b, table in enumerate(self._tables):
            table.setdefault((u >> (b * _BLOCK_BITS)) & 0xFFFF, []).append((u, owner))
        self.size += 1

    def matches(self, fingerprint: int) -> list[tuple[int, int]]:
        """(owner, distance) for every fingerprint within the threshold, nearest first."""
        if not self.size:
            return []
        u = _unsigned(fingerprint)
        found: dict[int, int] = {}
        limit = self.threshold
        for b, table in enumerate(self._tables):
            key = (u >> (b * _BLOCK_BITS)) & 0xFFFF
            for mask in _MASKS:
                bucket = table.get(key ^ mask)
                if bucket is None:
                    continue
                for other, owner in bucket:
                    if owner not in found:
                        d = (u ^ other).bit_count()
                        if d <= limit:
                            found[owner] = d
        return sorted(found.items(), key=lambda kv: kv[1])
