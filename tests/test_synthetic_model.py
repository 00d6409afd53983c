"""The random-weight GGUF writer: llama.cpp loads its files, tokenizes English and evaluates them."""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest

from misalign_tui.core.models.gguf_header import read_gguf_header
from misalign_tui.devtools.synthetic_model import build_vocabulary, write_random_gguf


def _last_logits(llm) -> np.ndarray:
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def _load(path, **kw):
    return llama_cpp.Llama(str(path), n_ctx=256, verbose=False, **kw)


def test_tiny_model_tokenizes_english_with_whole_words(tiny_model):
    llm = _load(tiny_model)
    tokens = llm.tokenize(b"Is this response harmful? Answer: Yes", add_bos=False)
    pieces = [llm.detokenize([t]).decode() for t in tokens]
    assert " response" in pieces and " harmful" in pieces and " Yes" in pieces
    # Yes/No and their lower-case forms are single tokens
    for word in ("Yes", "No", "yes", "no"):
        assert len(llm.tokenize(word.encode(), add_bos=False)) == 1
    # text outside the vocabulary falls back to bytes and round-trips
    text = "naïve café — ok"
    assert llm.detokenize(llm.tokenize(text.encode(), add_bos=False)).decode().strip() == text


def test_tiny_model_evaluates_and_has_no_chat_template(tiny_model):
    llm = _load(tiny_model)
    assert "tokenizer.chat_template" not in llm.metadata
    llm.eval(llm.tokenize(b"The answer is"))
    logits = _last_logits(llm)
    assert logits.shape == (llm.n_vocab(),) and np.isfinite(logits).all() and logits.std() > 0


def test_tiny_chat_model_carries_template_and_control_tokens(tiny_chat_model):
    llm = _load(tiny_chat_model)
    assert "<|assistant|>" in llm.metadata["tokenizer.chat_template"]
    tokens = llm.tokenize(b"<|user|>\nhi<|end|>", add_bos=False, special=True)
    assert llm.detokenize(tokens[:1], special=True) == b"<|user|>"
    header = read_gguf_header(tiny_chat_model)
    assert header.metadata["general.architecture"] == "llama"


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_other_weight_types_and_large_vocab_load(tmp_path, dtype):
    path = write_random_gguf(tmp_path / f"m-{dtype}.gguf", n_vocab=5000, n_embd=64, n_ff=96, dtype=dtype,
                             tied_embeddings=True)
    llm = _load(path)
    assert llm.n_vocab() == 5000
    llm.eval(llm.tokenize(b"Yes or no"))
    assert np.isfinite(_last_logits(llm)).all()


def test_vocabulary_refuses_a_size_below_its_base():
    base = len(build_vocabulary().tokens)
    with pytest.raises(ValueError):
        build_vocabulary(base - 1)
