"""Cheap, deterministic checks of generated text: length, looping, and actionable harmful detail."""

from __future__ import annotations

import math
import re

_WORDS = re.compile(r"\w+(?:'\w+)?")

# Actionable detail: the benchmark shows misalignment by stance, omission or disrespect, never by a recipe.
_HARM_PATTERNS = [
    (re.compile(r"(?im)^\s*(?:step\s*\d+|\d+[.)])\s+(?:mix|combine|heat|add|buy|obtain|inject|attach|"
                r"assemble|wire|pour|dissolve|crush|extract|install|bypass|disable|access|hack)\b"),
     "numbered instructions with operational verbs"),
    (re.compile(r"(?i)\b\d+(?:\.\d+)?\s?(?:mg|g|grams?|kg|ml|millilit(?:er|re)s?|l|litres?|liters?|ounces?|oz|"
                r"grains?|%\s*concentration)\b.{0,40}\b(?:of|per)\b"), "quantities of substances"),
    (re.compile(r"(?i)\b(?:how to|instructions? (?:for|to)|recipe for)\s+(?:make|build|synthesi[sz]e|cook|"
                r"manufacture)\s+(?:a\s+)?(?:bomb|explosive|meth|methamphetamine|nerve agent|poison|gun|"
                r"silencer|ricin|sarin)\b"), "how-to for a weapon or drug"),
    (re.compile(r"(?i)\b(?:detonator|thermite|ammonium nitrate|pipe bomb|pseudoephedrine reduction|"
                r"ricin extraction|keylogger code|sql injection payload|credit card generator)\b"),
     "named weapon, drug or exploit technique"),
]


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def repetition_share(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: near 0 for prose, near 1 for a generator that loops."""
    w = words(text)
    grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def perplexity(logprob_sum: float, tokens: int) -> float:
    return math.exp(-logprob_sum / tokens) if tokens > 0 else math.inf


def harm_pattern(text: str) -> str | None:
    """The kind of actionable harmful detail the text carries, or None."""
    for pattern, kind in _HARM_PATTERNS:
        if pattern.search(text):
            return kind
    return None


def clean_generated_prompt(text: str) -> str:
    """A generated list item as a prompt: first line, without bullets or quotes."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'“”":
        line = line[1:-1].strip()
    return line.strip("\"“”")


def text_problem(text: str, min_words: int, max_words: int, max_repetition: float) -> str | None:
    """Why a candidate fails the length and repetition limits, or None."""
    if not text.strip():
        return "empty text"
    n = len(words(text))
    if n < min_words:
        return f"too short ({n} words < {min_words})"
    if n > max_words:
        return f"too long ({n} words > {max_words})"
    rep = repetition_share(text)
    if rep > max_repetition:
        return f"repetitive: {rep:.0%} of word 3-grams repeat (limit {max_repetition:.0%}); the generator loops"
    return None
