"""Dimensions, semantic types and normative domains.

The published domains come from the package data file ``taxonomy.csv`` (the 111 names of the paper's per-domain
table: its text says 112, its table lists 111, and we ship only the published names). Users extend it with a CSV
of their own (columns ``dimension,domain[,source]``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.text import check_name
from misalign_tui.core.user_files import read_user_text

DIMENSIONS: dict[str, str] = {
    "safety": "Safety (BeaverTails harm categories)",
    "value": "Human values (Schwartz value items, as in ValueCompass)",
    "cultural": "Cultural norms (UNESCO Framework for Cultural Statistics)",
}

SEMANTIC_TYPES: dict[str, str] = {
    "object": "the misalignment concerns a thing or entity that is asked for or discussed",
    "attribute": "the misalignment concerns a property or characteristic",
    "relation": "the misalignment concerns a relationship or interaction between parties (the hardest)",
}

PAPER_DOMAIN_COUNT_TEXT = 112  # the paper's prose; its table lists one cultural domain fewer


@dataclass(frozen=True)
class Domain:
    dimension: str
    name: str
    source: str
    origin: str = "published"


@dataclass(frozen=True)
class Taxonomy:
    domains: tuple[Domain, ...]

    def by_name(self) -> dict[str, Domain]:
        return {d.name: d for d in self.domains}

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(DIMENSIONS, 0)
        for d in self.domains:
            out[d.dimension] += 1
        return out

    def extended(self, extra: list[Domain]) -> Taxonomy:
        known = self.by_name()
        added = [d for d in extra if d.name not in known]
        return Taxonomy(self.domains + tuple(added))


def _parse(text: str, label: str, origin: str) -> list[Domain]:
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or [])
    if not {"dimension", "domain"} <= fields:
        raise UserError(f"{label}: line 1: needs the columns 'dimension' and 'domain' (found {sorted(fields)})")
    out: list[Domain] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        dim = (row.get("dimension") or "").strip().lower()
        name = (row.get("domain") or "").strip()
        if dim not in DIMENSIONS:
            raise UserError(f"{label}: line {line}: unknown dimension {dim!r}; use one of {', '.join(DIMENSIONS)}")
        if not name:
            raise UserError(f"{label}: line {line}: empty domain name")
        try:
            check_name("domain", name)
        except UserError as exc:
            raise UserError(f"{label}: line {line}: {exc}") from None
        if name in seen:
            raise UserError(f"{label}: line {line}: domain {name!r} appears twice")
        seen.add(name)
        out.append(Domain(dim, name, (row.get("source") or "user").strip() or "user", origin))
    return out


def published_taxonomy() -> Taxonomy:
    text = resources.files("misalign_tui.data").joinpath("taxonomy.csv").read_text(encoding="utf-8")
    return Taxonomy(tuple(_parse(text, "taxonomy.csv", "published")))


def read_user_domains(path: str | Path) -> list[Domain]:
    return _parse(read_user_text(path, "file"), str(Path(path)), "user")
