"""Write llama-architecture GGUF files with random weights and a small SentencePiece-style vocabulary.

Why: the tests need a real model that llama.cpp loads in milliseconds (no 253 MB download), and the GPU
benchmark needs a model of a realistic shape on a machine without network. The weights are random, so the
model's answers mean nothing; loading, tokenizing, the KV cache and the speed are real.

The vocabulary is a "llama" (SentencePiece) tokenizer: ``<unk>``, ``<s>``, ``</s>``, the 256 ``<0xNN>``
byte-fallback tokens, every printable ASCII character, and whole English words with every prefix of each word
(SentencePiece merges pairs whose concatenation is in the vocabulary, so a word is reachable only through its
prefixes). Common words, including ``▁Yes``/``▁No``/``▁yes``/``▁no``/``Yes``/``No``, are single tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACE = "\u2581"  # SentencePiece's word-boundary marker

# Token types as llama.cpp reads them (gguf.TokenType)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")

SIMPLE_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = """
Yes No yes no YES NO True False true false A B
the be to of and a in that have I it for not on with he as you do at this but his by from they we say her she
or an will my one all would there their what so up out if about who get which go me when make can like time
just him know take people into year your good some could them see other than then now look only come its over
think also back after use two how our work first well way even new want because any these give day most us is
are was were been has had did does said should may might must shall response answer question prompt user
assistant model judge aligned misaligned harmful safe unsafe value culture cultural norm norms safety
misalignment help helpful honest rule rules law legal illegal right wrong fair unfair respect person people
child children family friend money health medical doctor advice risk danger dangerous weapon drug drugs steal
violence kill hurt harm privacy private data information tell please explain why where which here there very
more much many few less never always often sometimes someone something anyone anything everyone nothing
should would could cannot can't don't won't isn't it's I'm you're Answer Response Question Prompt User
Assistant Is Does Did The This That It What How Why Should Can Do In On For To Of And But Or If When
""".split()


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos_id: int
    eos_id: int
    unk_id: int


def build_vocabulary(n_vocab: int | None = None, *, chat_markers: bool = False) -> Vocabulary:
    """The tokenizer's pieces; padded with unused tokens up to ``n_vocab`` when that is larger."""
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [UNKNOWN, CONTROL, CONTROL]
    if chat_markers:
        tokens += list(CHAT_MARKERS)
        types += [CONTROL] * len(CHAT_MARKERS)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    seen = set(tokens)
    pieces: list[str] = []

    def add(piece: str) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)

    add(SPACE)
    for code in range(33, 127):
        add(chr(code))
    add("\n")
    add(SPACE + SPACE)
    for word in _WORDS:
        for variant in (SPACE + word, word):
            for end in range(1, len(variant) + 1):
                add(variant[:end])
    # Longer pieces score higher, so the merge order prefers whole words.
    scores = [0.0] * len(tokens) + [-1000.0 + 10.0 * len(p) - i * 1e-4 for i, p in enumerate(pieces)]
    tokens += pieces
    types += [NORMAL] * len(pieces)
    if n_vocab is not None:
        if n_vocab < len(tokens):
            raise ValueError(f"n_vocab={n_vocab} is smaller than the base vocabulary ({len(tokens)} tokens)")
        extra = n_vocab - len(tokens)
        tokens += [f"<unused_{i}>" for i in range(extra)]
        types += [UNUSED] * extra
        scores += [-1e9] * extra
    return Vocabulary(tokens, scores, types, bos_id=1, eos_id=2, unk_id=0)


class _RandomSource:
    """Random values fast enough for a billion-parameter file: a fixed pool, rolled per tensor."""

    POOL = 1 << 22

    def __init__(self, seed: int, std: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = (self.rng.standard_normal(self.POOL, dtype=np.float32) * std).astype(np.float32)

    def values(self, n: int) -> np.ndarray:
        if n <= self.POOL // 4:
            start = int(self.rng.integers(0, self.POOL - n + 1))
            return self.pool[start:start + n]
        return np.resize(np.roll(self.pool, int(self.rng.integers(0, self.POOL))), n)


def _q8_0_bytes(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Q8_0 blocks (f16 scale + 32 int8) straight from float values, without the slow reference quantizer."""
    blocks = values.reshape(-1, 32)
    scale = np.float16(float(np.abs(blocks[: min(len(blocks), 4096)]).max()) / 127.0 or 1e-3)
    q = np.clip(np.rint(blocks / np.float32(scale)), -127, 127).astype(np.int8)
    out = np.empty((len(blocks), 34), dtype=np.uint8)
    out[:, :2] = np.frombuffer(np.array([scale], dtype=np.float16).tobytes(), dtype=np.uint8)
    out[:, 2:] = q.view(np.uint8)
    return out.reshape(*shape[:-1], shape[-1] // 32 * 34)


def _tensor_plan(n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int,
                 tied_embeddings: bool) -> Iterator[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape, is_matrix) in file order; norms stay f32."""
    head_dim = n_embd // n_head
    kv = head_dim * n_head_kv
    yield "token_embd.weight", (n_vocab, n_embd), True
    for i in range(n_layer):
        yield f"blk.{i}.attn_norm.weight", (n_embd,), False
        yield f"blk.{i}.attn_q.weight", (n_embd, n_embd), True
        yield f"blk.{i}.attn_k.weight", (kv, n_embd), True
        yield f"blk.{i}.attn_v.weight", (kv, n_embd), True
        yield f"blk.{i}.attn_output.weight", (n_embd, n_embd), True
        yield f"blk.{i}.ffn_norm.weight", (n_embd,), False
        yield f"blk.{i}.ffn_gate.weight", (n_ff, n_embd), True
        yield f"blk.{i}.ffn_up.weight", (n_ff, n_embd), True
        yield f"blk.{i}.ffn_down.weight", (n_embd, n_ff), True
    yield "output_norm.weight", (n_embd,), False
    if not tied_embeddings:
        yield "output.weight", (n_vocab, n_embd), True


def write_random_gguf(
    path: str | Path,
    *,
    n_vocab: int | None = None,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 2048,
    chat_template: str | None = None,
    seed: int = 0,
    dtype: str = "f32",
    tied_embeddings: bool = False,
    weight_std: float = 0.05,
    name: str = "random-llama",
) -> Path:
    """Write a llama GGUF with random weights; returns the path.

    ``dtype`` is the type of the weight matrices: "f32", "f16" or "q8_0" (norms are always f32). Shapes are
    parameters, so the same writer makes the 64-wide test model and a Llama-3.2-1B-shaped benchmark model
    (``n_vocab=128256, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, tied_embeddings=True``).
    A chat template adds the control tokens it uses (``<|user|>``, ``<|assistant|>``, ``<|end|>``).
    """
    import gguf

    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must be a multiple of n_head, and n_head of n_head_kv")
    if dtype not in ("f32", "f16", "q8_0"):
        raise ValueError(f"dtype {dtype!r}: use f32, f16 or q8_0")
    if dtype == "q8_0" and (n_embd % 32 or n_ff % 32):
        raise ValueError("q8_0 needs n_embd and n_ff to be multiples of 32")
    vocab = build_vocabulary(n_vocab, chat_markers=chat_template is not None)
    n_vocab = len(vocab.tokens)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(int(file_type))
    w.add_tokenizer_model("llama")
    w.add_token_list(vocab.tokens)
    w.add_token_scores(vocab.scores)
    w.add_token_types(vocab.types)
    w.add_bos_token_id(vocab.bos_id)
    w.add_eos_token_id(vocab.eos_id)
    w.add_unk_token_id(vocab.unk_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    plan = list(_tensor_plan(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, tied_embeddings))
    for tname, shape, is_matrix in plan:
        if not is_matrix or dtype == "f32":
            w.add_tensor_info(tname, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
        elif dtype == "f16":
            w.add_tensor_info(tname, shape, np.dtype(np.float16), int(np.prod(shape)) * 2)
        else:
            byte_shape = (*shape[:-1], shape[-1] // 32 * 34)
            w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    source = _RandomSource(seed, weight_std)
    for _name, shape, is_matrix in plan:
        n = int(np.prod(shape))
        if not is_matrix:
            data = np.ones(shape, dtype=np.float32)
        else:
            values = source.values(n)
            if dtype == "f32":
                data = values.reshape(shape)
            elif dtype == "f16":
                data = values.astype(np.float16).reshape(shape)
            else:
                data = _q8_0_bytes(values, shape)
        w.write_tensor_data(data)
    w.close()
    return path


LLAMA_3_2_1B_SHAPE = dict(n_vocab=128256, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192,
                          n_ctx=131072, tied_embeddings=True)
