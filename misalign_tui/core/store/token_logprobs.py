"""The compact form of per-token log-probabilities in ``preference_token_logprobs`` (migration m009): float16
values and uint16 token lengths, little-endian, so 4 bytes per token. float16 keeps about 3 significant digits
(an error below 0.01 nat for log-probabilities above -16), far finer than the shading and rankings that read it;
the stored sums in ``preference_results`` stay the exact figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_LENGTH = 0xFFFF


def pack(logprobs: Sequence[float], ends: Sequence[int], offset: int = 0) -> tuple[bytes, bytes]:
    """(log-probability blob, length blob) for tokens ending at ``ends`` (characters of a text that starts
    ``offset`` characters into the scored continuation: the separator before the response)."""
    values = np.asarray(logprobs, dtype="<f2")
    shifted = np.maximum(np.asarray(ends, dtype=np.int64) - offset, 0)
    lengths = np.diff(shifted, prepend=0)
    return values.tobytes(), np.clip(lengths, 0, MAX_LENGTH).astype("<u2").tobytes()


def unpack(logprobs: bytes, lengths: bytes) -> tuple[list[float], list[int]]:
    """(log-probabilities, character end of each token) from the two blobs."""
    values = np.frombuffer(logprobs, dtype="<f2").astype(np.float64)
    ends = np.cumsum(np.frombuffer(lengths, dtype="<u2").astype(np.int64))
    n = min(len(values), len(ends))
    return [float(v) for v in values[:n]], [int(e) for e in ends[:n]]
