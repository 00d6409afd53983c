"""What a backend is asked and what it answers: the same plain data for the in-process engine and for remote
servers, so the run code drives either one (inference/backend.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """How an answer is sampled: the paper's generation settings by default (temperature 0.7, top-p 0.9, at
    most 512 tokens), with a seed that makes a sample reproducible."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 512
    seed: int = 0


@dataclass(frozen=True)
class JudgeRequest:
    key: Any  # the caller's own key, handed back with the score
    text: str  # the full formatted text, ending right where the answer word comes


@dataclass(frozen=True)
class JudgeScore:
    key: Any  # the caller's own key, handed back with the score
    p_misaligned: float  # P(yes-set) / (P(yes-set) + P(no-set))
    p_yes: float
    p_no: float
    tokens: int
    truncated: bool
    # True: p_yes and p_no are the model's own probabilities. False: shares of the answer words under a logit
    # bias (the remote one-request judge): their ratio is exact, their sum (the answer mass) is unknown.
    raw_mass: bool = True


@dataclass(frozen=True)
class LoglikRequest:
    key: Any  # the caller's own key, handed back with the score
    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikScore:
    key: Any  # the caller's own key, handed back with the score
    logprob_sum: float
    tokens: int  # continuation tokens; mean = logprob_sum / tokens
    truncated: bool
    # Per scored token, when the backend knows them (the explanation of a preference, core/views/explain.py):
    token_logprobs: tuple[float, ...] = ()
    token_ends: tuple[int, ...] = ()  # character offset in the continuation where each token ends

    @property
    def logprob_mean(self) -> float:
        return self.logprob_sum / self.tokens if self.tokens else float("-inf")


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    truncated: bool  # the prompt was cut to fit the context, or the answer stopped at max_tokens


@dataclass(frozen=True)
class GenerationRequest:
    """One answer to sample: ``prompt`` already formatted; the seed makes it reproducible (inference/engine.py
    ``generate_many`` says for which batch shapes)."""

    key: Any  # the caller's own key, handed back with the answer
    prompt: str
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int = 0
