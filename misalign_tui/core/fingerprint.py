"""SimHash fingerprints and the near-duplicate index used by the build's dedup step and ``benchmark check``.

Fingerprints equal the ``simhash`` package's ``Simhash(text, f=bits).value``: the same features (the text
lower-cased, its ``[\\w\\u4e00-\\u9fcc]+`` runs joined, then every 4-character window, or the whole string when it
is shorter, counted), the same md5 hash (the digest's last ``bits/8`` bytes, big-endian) and the same vote (a bit
is set when the weighted count of features having it exceeds half the total weight). We compute them for a whole
corpus at once: distinct 4-grams are found with numpy, each is hashed once, and the weighted bit sums are
vectorised — about 20× faster than calling the package per text.

Dedup rule: prompts are taken in order; a prompt within Hamming distance ``tau`` of an already *kept* prompt is
removed and linked to the earliest such kept prompt. :func:`dedup` finds every pair within ``tau`` with a
multi-index (pigeonhole over bit blocks with enumerated flips) and then applies the rule; the result equals
:func:`exhaustive_dedup`, which applies the rule literally by comparing each prompt with all kept ones.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

# The simhash package logs a warning per large bucket (and info lines while indexing). Those lines must never
# reach a terminal, least of all under the running Textual app: keep them in this logger, away from the root
# logger and from logging's last-resort stderr handler. Callers that want to count them attach a handler.
SIMHASH_PACKAGE_LOGGER = logging.getLogger("simhash")
SIMHASH_PACKAGE_LOGGER.propagate = False
if not SIMHASH_PACKAGE_LOGGER.handlers:
    SIMHASH_PACKAGE_LOGGER.addHandler(logging.NullHandler())

FEATURE_PATTERN = re.compile(r"[\w\u4e00-\u9fcc]+")  # the package's default ``reg``
FEATURE_WIDTH = 4  # the package's sliding window
DEFAULT_BITS = 64
DEFAULT_TAU = 10

_GATHER_CHUNK = 1 << 20  # feature rows gathered at once when summing bits (128 MB at 64 bits)
_LANE_LIMIT = 1 << 16  # features per text that a 16-bit counter holds
_DENSE_KEYS = 1 << 25  # distinct-feature lookup table size below which we skip sorting


def _check_bits(bits: int) -> None:
    if bits % 8 or not 8 <= bits <= 64:
        raise ValueError(f"fingerprint width must be a multiple of 8 between 8 and 64 bits, not {bits}")


def normalised_text(text: str) -> str:
    """The package's view of a text: lower-cased, word characters only, runs joined without spaces."""
    return "".join(FEATURE_PATTERN.findall(text.lower()))


def features(text: str) -> list[str]:
    """The package's features: every 4-character window of :func:`normalised_text` (the whole when shorter)."""
    content = normalised_text(text)
    return [content[i:i + FEATURE_WIDTH] for i in range(max(len(content) - FEATURE_WIDTH + 1, 1))]


def _feature_hash(feature: str, nbytes: int) -> bytes:
    return hashlib.md5(feature.encode("utf-8")).digest()[-nbytes:]


def simhash_value(text: str, bits: int = DEFAULT_BITS) -> int:
    """One text's fingerprint, in plain Python (the readable definition; :func:`simhashes` is the fast one)."""
    _check_bits(bits)
    counts = Counter(features(text))
    total = sum(counts.values())
    sums = [0] * bits
    for feature, weight in counts.items():
        h = int.from_bytes(_feature_hash(feature, bits // 8), "big")
        for b in range(bits):
            if h >> (bits - 1 - b) & 1:
                sums[b] += weight
    value = 0
    for b in range(bits):
        value = value << 1 | (2 * sums[b] > total)
    return value


def simhashes(texts: Sequence[str], bits: int = DEFAULT_BITS) -> np.ndarray:
    """Fingerprints of many texts as a ``uint64`` array, equal to the package's ``Simhash(t, f=bits).value``.

    The package itself fails (numpy OverflowError) on a text where one 4-gram occurs more than 255 times; we
    return the value its definition gives.
    """
    _check_bits(bits)
    n = len(texts)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    normalised = [normalised_text(t) for t in texts]
    lengths = np.fromiter((len(s) for s in normalised), dtype=np.int64, count=n)
    per_text = np.maximum(lengths - FEATURE_WIDTH + 1, 1)  # features per text
    if per_text.max() >= _LANE_LIMIT:  # a 16-bit lane would overflow: such texts take the plain road
        out = np.zeros(n, dtype=np.uint64)
        long_ones = per_text >= _LANE_LIMIT
        out[long_ones] = [simhash_value(texts[int(i)], bits) for i in np.flatnonzero(long_ones)]
        rest = np.flatnonzero(~long_ones)
        out[rest] = simhashes([texts[int(i)] for i in rest], bits)
        return out
    codepoints = np.frombuffer("".join(normalised).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    alphabet = np.flatnonzero(np.bincount(codepoints, minlength=1)).astype(np.uint32) if len(codepoints) \
        else np.zeros(0, dtype=np.uint32)
    base = len(alphabet) + 1  # a character is its rank + 1; 0 pads features shorter than 4 characters
    if base ** FEATURE_WIDTH > 1 << 64:  # more than 65,535 distinct characters: cannot pack four in 64 bits
        return np.array([simhash_value(t, bits) for t in texts], dtype=np.uint64)
    rank = np.zeros(int(alphabet[-1]) + 1 if len(alphabet) else 1, dtype=np.uint64)
    rank[alphabet] = np.arange(1, base, dtype=np.uint64)
    codes = np.zeros(len(codepoints) + FEATURE_WIDTH - 1, dtype=np.uint64)
    codes[:len(codepoints)] = rank[codepoints]
    b = np.uint64(base)
    packed = ((codes[:-3] * b + codes[1:-2]) * b + codes[2:-1]) * b + codes[3:]  # every 4-window, base `base`

    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    feature_starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_text, out=feature_starts[1:])
    total = int(feature_starts[-1])
    # A feature's first character: features are consecutive windows within their text.
    positions = np.arange(total, dtype=np.int64) + np.repeat(starts - feature_starts[:-1], per_text)
    keys = packed[np.minimum(positions, max(len(packed) - 1, 0))] if len(packed) else \
        np.zeros(total, dtype=np.uint64)
    for t in np.flatnonzero(lengths < FEATURE_WIDTH):  # texts of 0..3 characters: one zero-padded feature
        key = 0
        for k in range(FEATURE_WIDTH):
            key = key * base + (int(codes[starts[t] + k]) if k < lengths[t] else 0)
        keys[feature_starts[t]] = key

    if base ** FEATURE_WIDTH <= _DENSE_KEYS:  # small alphabet: a lookup table instead of a sort
        present = np.zeros(base ** FEATURE_WIDTH, dtype=bool)
        present[keys] = True
        unique_keys = np.flatnonzero(present).astype(np.uint64)
        dense_id = np.cumsum(present, dtype=np.int64) - 1
        feature_ids = dense_id[keys]
    else:
        unique_keys, feature_ids = np.unique(keys, return_inverse=True)
        feature_ids = feature_ids.reshape(-1)
    # Decode each distinct feature back to text and hash it exactly as the package does.
    digits = np.empty((len(unique_keys), FEATURE_WIDTH), dtype=np.int64)
    rest_keys = unique_keys.copy()
    for k in range(FEATURE_WIDTH - 1, -1, -1):
        digits[:, k] = (rest_keys % b).astype(np.int64)
        rest_keys //= b
    feature_cps = np.concatenate(([0], alphabet)).astype("<u4")[digits]
    feature_text = feature_cps.tobytes().decode("utf-32-le", "surrogatepass")
    nbytes = bits // 8
    digests = b"".join(_feature_hash(feature_text[4 * i:4 * i + 4].rstrip("\x00"), nbytes)
                       for i in range(len(unique_keys)))
    bit_table = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(-1, nbytes), axis=1)
    # Four 16-bit counters per uint64: one integer add sums four bits, with no casts.
    words = bits // 4
    lanes = np.zeros((len(unique_keys), words), dtype=np.uint64)
    for bit in range(bits):
        lanes[:, bit // 4] |= bit_table[:, bit].astype(np.uint64) << np.uint64(16 * (bit % 4))

    sums = np.empty((n, words), dtype=np.uint64)
    first = 0
    while first < n:  # whole texts per chunk, about _GATHER_CHUNK features each
        last = int(np.searchsorted(feature_starts, feature_starts[first] + _GATHER_CHUNK, side="right")) - 1
        last = min(max(last, first + 1), n)
        lo, hi = int(feature_starts[first]), int(feature_starts[last])
        sums[first:last] = np.add.reduceat(lanes[feature_ids[lo:hi]], feature_starts[first:last] - lo, axis=0)
        first = last
    bit_sums = np.empty((n, bits), dtype=np.int64)
    for bit in range(bits):
        bit_sums[:, bit] = ((sums[:, bit // 4] >> np.uint64(16 * (bit % 4))) & np.uint64(0xFFFF)).astype(np.int64)
    votes = (2 * bit_sums > per_text[:, None]).astype(np.uint8)
    value_bytes = np.zeros((n, 8), dtype=np.uint8)
    value_bytes[:, 8 - nbytes:] = np.packbits(votes, axis=1)
    return value_bytes.view(">u8").reshape(-1).astype(np.uint64)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    b = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(b, axis=-1).sum(axis=-1, dtype=np.uint8)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


@dataclass(frozen=True)
class DedupResult:
    """Per prompt, in input order: kept or not, and for a removed one the kept prompt it duplicates."""

    kept: np.ndarray  # bool
    link: np.ndarray  # int64: index of the earliest kept prompt within tau; -1 for kept prompts
    distance: np.ndarray  # int64: Hamming distance to link; -1 for kept prompts

    @property
    def removed(self) -> int:
        return int((~self.kept).sum())

    def links(self) -> list[tuple[int, int, int]]:
        """(kept index, removed index, distance) for every removed prompt, by removed index."""
        return [(int(self.link[j]), int(j), int(self.distance[j])) for j in np.flatnonzero(~self.kept)]

    def equals(self, other: DedupResult) -> bool:
        return bool(np.array_equal(self.kept, other.kept) and np.array_equal(self.link, other.link)
                    and np.array_equal(self.distance, other.distance))


def _as_fingerprints(fps: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(fps, dtype=np.uint64) if not isinstance(fps, np.ndarray) else fps.astype(np.uint64,
                                                                                              copy=False)
    return arr.reshape(-1)


def exhaustive_dedup(fps: Sequence[int] | np.ndarray, tau: int = DEFAULT_TAU) -> DedupResult:
    """The rule applied literally: each prompt against every prompt kept before it (numpy XOR + popcount)."""
    fps = _as_fingerprints(fps)
    n = len(fps)
    kept = np.zeros(n, dtype=bool)
    link = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, -1, dtype=np.int64)
    kept_fps = np.empty(n, dtype=np.uint64)
    kept_idx = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if k:
            d = popcount(kept_fps[:k] ^ fps[i])
            hits = np.flatnonzero(d <= tau)
            if len(hits):
                link[i] = kept_idx[hits[0]]  # kept_idx grows with i: the first hit is the earliest
                distance[i] = d[hits[0]]
                continue
        kept[i] = True
        kept_fps[k] = fps[i]
        kept_idx[k] = i
        k += 1
    return DedupResult(kept, link, distance)


def _block_plan(n: int, bits: int, tau: int, force: bool = False) -> tuple[list[tuple[int, int]], int] | None:
    """Blocks (shift, width) and the per-block radius r = tau // len(blocks) that make the multi-index
    cheapest, or None when comparing all pairs is cheaper (unless ``force``). Pigeonhole: two fingerprints within
    ``tau`` differ in at most ``tau // m`` bits in at least one of ``m`` disjoint blocks."""
    best: tuple[float, int] | None = None
    for m in range(1, bits + 1):
        width = math.ceil(bits / m)
        if width > 22:  # bucket table of 2**width entries
            continue
        r = tau // m
        probes = m * sum(math.comb(width, k) for k in range(min(r, width) + 1)) / 2
        candidates = 2 * probes * n / 2 ** (bits // m)
        cost = n * (probes + 2 * candidates) + m * 2 ** width
        if best is None or cost < best[0]:
            best = (cost, m)
    assert best is not None  # m = bits always qualifies
    if not force and best[0] >= n * n / 8:  # all pairs run vectorised: ~4x cheaper per comparison
        return None
    m = best[1]
    widths = [bits // m + (1 if b < bits % m else 0) for b in range(m)]
    blocks, shift = [], bits
    for w in widths:
        shift -= w
        blocks.append((shift, w))
    return blocks, tau // m


def _flip_masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, min(radius, width) + 1):
        for combo in combinations(range(width), k):
            masks.append(sum(1 << b for b in combo))
    return np.array(masks, dtype=np.int64)


def _ranges(sizes: np.ndarray) -> np.ndarray:
    """0..size-1 for each size, concatenated."""
    ends = np.cumsum(sizes)
    return np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - sizes, sizes)


def _bucket_members(query: np.ndarray, first: np.ndarray, size: np.ndarray, order: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(query, member) for every member of each probed bucket; most buckets hold one, which skips the repeat."""
    single = size == 1
    many = ~single
    q_many, s_many = query[many], size[many]
    return (np.concatenate((query[single], np.repeat(q_many, s_many))),
            order[np.concatenate((first[single], np.repeat(first[many], s_many) + _ranges(s_many)))])


def _keep_close(fps: np.ndarray, i: np.ndarray, j: np.ndarray, tau: int, found_i: list[np.ndarray],
                found_j: list[np.ndarray]) -> None:
    close = popcount(fps[i] ^ fps[j]) <= tau
    found_i.append(i[close])
    found_j.append(j[close])


def near_pairs(fps: Sequence[int] | np.ndarray, tau: int = DEFAULT_TAU, bits: int = DEFAULT_BITS,
               index: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, whose fingerprints are within Hamming distance ``tau``, sorted by (j, i),
    as three int64 arrays (i, j, distance). ``index``: True forces the multi-index, False all-pairs comparison,
    None picks the cheaper for this size."""
    fps = _as_fingerprints(fps)
    n = len(fps)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty, empty
    plan = None if index is False else _block_plan(n, bits, tau, force=bool(index))
    found_i, found_j = [], []
    if plan is None:
        for lo in range(1, n, 256):  # rows j in [lo, hi) against all earlier i
            hi = min(lo + 256, n)
            d = popcount(fps[None, :hi] ^ fps[lo:hi, None])
            jj, ii = np.nonzero((d <= tau) & (np.arange(hi)[None, :] < np.arange(lo, hi)[:, None]))
            found_i.append(ii.astype(np.int64))
            found_j.append(jj.astype(np.int64) + lo)
    else:
        blocks, radius = plan
        for shift, width in blocks:
            values = ((fps >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
            order = np.argsort(values, kind="stable")  # within a bucket, earlier prompts first
            counts = np.bincount(values, minlength=1 << width)
            bucket_start = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(counts, out=bucket_start[1:])
            # Same block value: every pair inside a bucket.
            rank_in_bucket = np.arange(n, dtype=np.int64) - bucket_start[values[order]]
            later = order[rank_in_bucket > 0]
            if len(later):
                earlier_count = rank_in_bucket[rank_in_bucket > 0]
                first = np.repeat(bucket_start[values[later]], earlier_count)
                slot = first + _ranges(earlier_count)
                _keep_close(fps, order[slot], np.repeat(later, earlier_count), tau, found_i, found_j)
            # Block values differing in 1..radius bits. Each unordered pair of buckets is probed once: from the
            # query whose value has a 0 at the mask's highest bit (so the probe is the larger value).
            for high in range(width):
                masks = _flip_masks(high, radius - 1) | (1 << high) if radius else np.zeros(0, np.int64)
                if not len(masks):
                    continue
                queries = np.flatnonzero((values >> high) & 1 == 0)
                step = max(1, (1 << 21) // len(masks))
                for q0 in range(0, len(queries), step):
                    q = queries[q0:q0 + step]
                    probe = (values[q, None] ^ masks[None, :]).reshape(-1)
                    size = counts[probe]
                    hit = np.flatnonzero(size)
                    if not len(hit):
                        continue
                    query, other = _bucket_members(q[hit // len(masks)], bucket_start[probe[hit]], size[hit],
                                                   order)
                    _keep_close(fps, np.minimum(query, other), np.maximum(query, other), tau, found_i, found_j)
    if not found_i:
        return empty, empty, empty
    i = np.concatenate(found_i)
    j = np.concatenate(found_j)
    code = np.unique(j * n + i)  # one pair may match in several blocks; sorted by (j, i)
    j, i = np.divmod(code, n)
    d = popcount(fps[i] ^ fps[j]).astype(np.int64)
    return i, j, d


def dedup(fps: Sequence[int] | np.ndarray, tau: int = DEFAULT_TAU, bits: int = DEFAULT_BITS,
          index: bool | None = None) -> DedupResult:
    """The dedup rule over all pairs within ``tau`` found by the multi-index; equals :func:`exhaustive_dedup`."""
    fps = _as_fingerprints(fps)
    n = len(fps)
    kept = np.ones(n, dtype=bool)
    link = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, -1, dtype=np.int64)
    i, j, d = near_pairs(fps, tau, bits, index)
    # Pairs come sorted by the later prompt j, then the earlier i: walk each j's group in order; the first
    # earlier prompt still kept is the earliest kept one (every i < j was decided before j).
    bounds = np.flatnonzero(np.diff(j)) + 1 if len(j) else np.zeros(0, dtype=np.int64)
    group_start = np.concatenate(([0], bounds)).tolist() if len(j) else []
    group_end = np.concatenate((bounds, [len(j)])).tolist() if len(j) else []
    i_list, j_list, d_list = i.tolist(), j.tolist(), d.tolist()
    kept_list = [True] * n
    for s, e in zip(group_start, group_end, strict=True):
        later = j_list[s]
        for k in range(s, e):
            if kept_list[i_list[k]]:
                kept_list[later] = False
                link[later] = i_list[k]
                distance[later] = d_list[k]
                break
    kept[:] = kept_list
    return DedupResult(kept, link, distance)


def near_duplicates(texts: Sequence[str], tau: int = DEFAULT_TAU, bits: int = DEFAULT_BITS,
                    ) -> list[tuple[int, int, int]]:
    """Near-duplicate prompts of a benchmark: (kept index, removed index, Hamming distance) for every prompt
    the dedup rule would remove, by removed index (kept index < removed index)."""
    return dedup(simhashes(texts, bits), tau, bits).links()


def near_duplicate_pairs(texts: Sequence[str], tau: int = DEFAULT_TAU, bits: int = DEFAULT_BITS,
                         ) -> list[tuple[int, int, int]]:
    """Every pair of texts (i, j, distance), i < j, within Hamming distance ``tau`` — a drop-in for an
    all-pairs loop over ``Simhash(t).value``, without its quadratic cost."""
    i, j, d = near_pairs(simhashes(texts, bits), tau, bits)
    order = np.lexsort((j, i))
    return [(int(i[k]), int(j[k]), int(d[k])) for k in order]
