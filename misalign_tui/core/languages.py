"""Prompt languages: BCP 47 tags (shape checked and case-normalised), their display names, and how a pair's
length is measured in each script (words where words are spaced, characters where they are not)."""

from __future__ import annotations

import re

DEFAULT_LANGUAGE = "en"  # every prompt stored before languages existed is English

# The shape of a BCP 47 tag (RFC 5646): a 2–3 letter ISO 639 language, up to three extended subtags, a 4-letter
# script, a 2-letter or 3-digit region, variants, extensions and a private-use part. Checked for shape, not
# looked up in the IANA registry (the program is offline).
_TAG = re.compile(
    r"^(?P<lang>[A-Za-z]{2,3})(?:-[A-Za-z]{3}){0,3}"
    r"(?:-(?P<script>[A-Za-z]{4}))?"
    r"(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[xX](?:-[A-Za-z0-9]{1,8})+)?$"
)

NAMES = {"en": "English", "es": "Spanish", "hi": "Hindi", "ar": "Arabic", "zh-Hans": "Chinese (Simplified)",
         "sw": "Swahili", "zh": "Chinese", "zh-Hant": "Chinese (Traditional)", "fr": "French", "de": "German",
         "ja": "Japanese", "ko": "Korean", "pt": "Portuguese", "ru": "Russian", "bn": "Bengali", "ur": "Urdu",
         "th": "Thai", "vi": "Vietnamese", "id": "Indonesian", "tr": "Turkish", "it": "Italian"}

# Scripts written without spaces between words: a pair's length is compared in characters there.
_UNSPACED = {"zh", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu"}


def normalise_tag(value: str) -> str | None:
    """The tag in its conventional case (``zh-hans`` → ``zh-Hans``, ``PT-br`` → ``pt-BR``), or None when
    ``value`` does not have the shape of a BCP 47 tag (``english``, ``en_US``, ``e``)."""
    value = value.strip()
    m = _TAG.match(value)
    if m is None:
        return None
    parts = value.split("-")
    out = [parts[0].lower()]
    private = False
    for part in parts[1:]:
        if private or len(part) == 1:
            private = private or part.lower() == "x"
            out.append(part.lower())
        elif len(part) == 4 and part.isalpha() and m.group("script") and part.lower() == m.group("script").lower():
            out.append(part.title())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


def tag_error(value: object) -> str:
    """The message for a value that is not a language tag (the caller prefixes the file and line)."""
    return f"language {value!r} is not a BCP 47 tag (write e.g. en, es, hi, ar, zh-Hans, sw, pt-BR)"


def language_name(tag: str) -> str:
    return NAMES.get(tag) or NAMES.get(tag.split("-")[0], tag)


def length_units(text: str, tag: str) -> tuple[int, str]:
    """A response's length as the pair-length rule counts it: (count, unit) — characters (spaces left out) for
    unspaced scripts, words elsewhere."""
    if tag.split("-")[0] in _UNSPACED:
        return sum(1 for ch in text if not ch.isspace()), "characters"
    return len(text.split()), "words"
