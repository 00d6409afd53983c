"""Where each scored token sits in the text it came from, so per-token log-probabilities can be shown on the text.

A tokenizer's pieces do not always join back into the text byte for byte: a SentencePiece model with a dummy
prefix adds a leading space, a server may normalise whitespace, and a multi-byte character can be split across two
tokens. The pieces are aligned to the text by their longest matching blocks; a token ends at the character that
holds its last byte (a character split between tokens belongs to the first of them), so the ends never decrease (pieces
that cover only the start of the text, a cut continuation, end before its end).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from difflib import SequenceMatcher


def token_ends(text: str, pieces: Sequence[bytes]) -> tuple[int, ...]:
    """The character offset in ``text`` where each of ``pieces`` ends (non-decreasing)."""
    if not pieces:
        return ()
    data = text.encode("utf-8")
    joined = b"".join(pieces)
    cum: list[int] = []
    total = 0
    for p in pieces:
        total += len(p)
        cum.append(total)
    if joined == data:
        byte_ends = cum
    else:
        blocks = [b for b in SequenceMatcher(None, joined, data, autojunk=False).get_matching_blocks() if b.size]
        starts = [b.a for b in blocks]
        byte_ends = []
        for x in cum:
            i = bisect_right(starts, x - 1) - 1  # the last block starting before byte x
            if i < 0:
                byte_ends.append(0)
                continue
            a, b, size = blocks[i]
            byte_ends.append(b + min(x - a, size))
    # byte offset -> character offset, rounding up to the end of a character split between tokens
    char_at = [0] * (len(data) + 1)
    pos = 0
    for ch_index, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        for k in range(1, n + 1):
            char_at[pos + k] = ch_index + 1
        pos += n
    out: list[int] = []
    last = 0
    for e in byte_ends:
        last = max(last, char_at[min(max(e, 0), len(data))])
        out.append(last)
    return tuple(out)
