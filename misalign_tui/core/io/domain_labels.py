"""Match domain names from other datasets to ours: normalise, apply aliases, report the rest — never guess.

A label matches a domain when both normalise to the same text: case folded, ``&`` read as ``and``, every run of
punctuation or space read as one space (``"Drug & weapon abuse"`` = ``"Drug and Weapon Abuse"``). An alias file
(CSV ``alias,domain``; ``domain`` may also be a dimension or ``aligned``/``misaligned`` for label values) maps
foreign names to ours; the built-in alias file ``data/domain_aliases.csv`` holds the original BeaverTails
category keys and the spellings of the SaVaCu release. A label that still matches nothing is counted, never
mapped to the nearest name.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from importlib import resources
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.user_files import read_user_text

NO_DOMAIN = {"", "none", "null", "nan", "n/a", "na", "-"}
_PUNCT = re.compile(r"[\W_]+")
_LIST_SEPARATORS = re.compile(r"\s*[;|,]\s*")
LABEL_VALUES = ("aligned", "misaligned")
DIMENSION_ALIASES = {"safety": "safety", "value": "value", "values": "value", "human values": "value",
                     "cultural": "cultural", "culture": "cultural", "cultural norms": "cultural"}


def normalise_label(text: str) -> str:
    """Case, punctuation and ``&``/``and`` folded away: the key under which names are compared."""
    t = text.casefold().replace("&", " and ")
    return " ".join(_PUNCT.sub(" ", t).split())


def read_aliases(path: str | Path) -> dict[str, str]:
    """An alias CSV with columns ``alias,domain`` (a header line is required)."""
    return _parse_aliases(read_user_text(path, "file (the --aliases file)", encoding="utf-8-sig"), str(Path(path)))


def _parse_aliases(text: str, label: str) -> dict[str, str]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header[:2] != ["alias", "domain"]:
        raise UserError(f"{label}:1: an alias file starts with the header 'alias,domain' (found {header})")
    out: dict[str, str] = {}
    for row in reader:
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"{label}:{reader.line_num}: needs an alias and a domain name")
        out[normalise_label(row[0])] = row[1].strip()
    return out


def builtin_aliases() -> dict[str, str]:
    ref = resources.files("misalign_tui.data").joinpath("domain_aliases.csv")
    return _parse_aliases(ref.read_text(encoding="utf-8"), "domain_aliases.csv") if ref.is_file() else {}


class LabelMatcher:
    """Resolves domain names, dimensions and response labels; remembers every label it could not match."""

    def __init__(self, domain_names: list[str], aliases: dict[str, str] | None = None) -> None:
        self.domains = {normalise_label(n): n for n in domain_names}
        self.aliases: dict[str, str] = {**builtin_aliases(), **(aliases or {})}
        for alias, target in self.aliases.items():
            t = normalise_label(target)
            if t not in self.domains and t not in DIMENSION_ALIASES and t not in LABEL_VALUES:
                raise UserError(f"alias {alias!r} points at {target!r}, which is no domain, dimension or label; "
                                "check the alias file")
        self.unmatched: Counter[str] = Counter()

    def domain_name(self, text: str) -> str | None:
        """Our name for one label, or None."""
        key = normalise_label(text)
        key = normalise_label(self.aliases.get(key, key))
        return self.domains.get(key)

    def domains_in(self, cell: object) -> tuple[list[str], list[str]]:
        """Our names for the domains in one cell (a name, several separated by ; | or , or a JSON list), and
        the labels that matched nothing. The whole cell is tried first, so a name holding a comma survives."""
        items = cell if isinstance(cell, list) else [cell]
        found: list[str] = []
        missing: list[str] = []
        for item in items:
            text = "" if item is None else str(item).strip()
            if normalise_label(text) in NO_DOMAIN:
                continue
            whole = self.domain_name(text)
            if whole is not None:
                found.append(whole)
                continue
            parts = [p for p in _LIST_SEPARATORS.split(text) if normalise_label(p) not in NO_DOMAIN]
            matched = [self.domain_name(p) for p in parts] if len(parts) > 1 else [None]
            if all(m is not None for m in matched):
                found.extend(m for m in matched if m is not None)
            else:
                missing.append(text)
        return list(dict.fromkeys(found)), missing

    def dimension(self, value: object) -> str | None:
        """'safety', 'value', 'cultural'; None for an empty cell; raises ValueError for anything else."""
        text = "" if value is None else str(value).strip()
        key = normalise_label(text)
        if key in NO_DOMAIN:
            return None
        key = normalise_label(self.aliases.get(key, key))
        if key in DIMENSION_ALIASES:
            return DIMENSION_ALIASES[key]
        raise ValueError(text)

    def label(self, value: object) -> str:
        """'aligned' or 'misaligned'; raises ValueError for anything else (map it with an alias)."""
        text = "" if value is None else str(value).strip()
        key = normalise_label(text)
        key = normalise_label(self.aliases.get(key, key))
        if key in LABEL_VALUES:
            return key
        raise ValueError(text)
