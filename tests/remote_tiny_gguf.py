"""A tiny random-weight llama GGUF for the remote-backend tests (temporary: replaced by the engine's fixture).

SentencePiece-style vocabulary: byte fallback tokens, letters, and whole words with and without the leading
space marker, so answer words such as " Yes" are single tokens. Loads in milliseconds in real llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ["Yes", "No", "yes", "no", "YES", "NO", "the", "is", "a", "response", "prompt", "misaligned",
         "aligned", "Answer", "Question", "harm", "help", "safe", "you", "I", "to", "and", "of", "it"]


def write_tiny_gguf(path: Path, *, seed: int = 0, n_embd: int = 32, n_layer: int = 2) -> Path:
    import gguf

    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(gguf.TokenType.BYTE)
    pieces = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pieces += list(".,:;?!'\"-()0123456789\n")
    words = [f"▁{w}" for w in WORDS] + WORDS
    # SentencePiece merges pairs whose concatenation is in the vocabulary: every substring must exist
    pieces += sorted({w[i:j] for w in words for i in range(len(w)) for j in range(i + 2, len(w) + 1)},
                     key=lambda x: (len(x), x))
    for p in pieces:
        if p not in tokens:
            tokens.append(p)
            types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(len(tokens) - 259)]
    # longer pieces score higher so whole words win over letters
    scores = [s if i < 259 else float(len(tokens[i])) - i * 1e-3 for i, s in enumerate(scores)]
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-random-remote-test")
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(2 * n_embd)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_rope_dimension_count(n_embd // 4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    rng = np.random.default_rng(seed)

    def t(name: str, *shape: int, scale: float = 0.5) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("output.weight", n_vocab, n_embd, scale=0.3)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t(f"blk.{i}.{n}.weight", n_embd, n_embd, scale=0.2)
        t(f"blk.{i}.ffn_gate.weight", 2 * n_embd, n_embd, scale=0.2)
        t(f"blk.{i}.ffn_up.weight", 2 * n_embd, n_embd, scale=0.2)
        t(f"blk.{i}.ffn_down.weight", n_embd, 2 * n_embd, scale=0.2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
