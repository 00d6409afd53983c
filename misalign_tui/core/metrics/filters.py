"""The one filter grammar and the one ``Filters`` type: what `run`, `report`, the app and saved sessions select.

Text form (``--filter``, the Run screen's field)::

    dimension=safety,value,type=relation,domain="Arts, Entertainment & Recreation",language=es,hi

Clauses are separated by commas; ``key=value`` starts a key's list and a bare value adds to the list of the key
before it. Keys: ``dimension``, ``domain``, ``type`` (or ``semantic_type``), ``language`` (BCP 47 tags: ``en``,
``zh-Hans``) and ``parallel`` (``yes``: only prompts in a parallel set — an English prompt with parallel items,
or a parallel item; ``no``: the others). A value that contains a comma, a
quote, a backslash or an ``=`` is written in double quotes (``\\"`` and ``\\\\`` inside), or with a backslash
before the character (``domain=Arts\\, crafts``); ``&`` and every other character need nothing. Repeating
``--filter`` adds to the same lists.

A response, pair or prompt passes when its targeted dimension is in ``dimension``, one of its prompt's domains is
in ``domain``, its prompt's type is in ``semantic_type`` and its prompt's language in ``language`` (an empty list
lets everything through).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from misalign_tui.core.errors import UserError
from misalign_tui.core.languages import normalise_tag, tag_error
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

if TYPE_CHECKING:
    from misalign_tui.core.store import Store

FILTER_HELP = ("dimension=..,domain=..,type=..,language=..,parallel=yes — lists with commas (dimension=safety,value); quote a name that "
               "holds a comma: domain=\"Arts, crafts\" (or write \\,). Repeatable.")
_KEYS = {"dimension": "dimension", "dimensions": "dimension", "domain": "domain", "domains": "domain",
         "type": "semantic_type", "semantic_type": "semantic_type", "types": "semantic_type",
         "language": "language", "languages": "language", "lang": "language", "parallel": "parallel"}
_KEY_NAMES = "dimension, domain, type, language or parallel"
PARALLEL_VALUES = ("yes", "no")
_NEEDS_QUOTES = set(',"\\=')


@dataclass(frozen=True)
class Filters:
    dimension: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()
    semantic_type: tuple[str, ...] = ()
    language: tuple[str, ...] = ()
    parallel: tuple[str, ...] = ()  # yes: prompts in a parallel set; no: the others; both or none: every prompt

    # -- reading ------------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, filters: Filters | Mapping[str, Any] | str | Sequence[str] | None) -> Filters:
        """From the text grammar (one string or several, as repeated ``--filter``), a mapping of key to a value
        or a list of values (a string value is one value, never split), or a ``Filters``."""
        if filters is None:
            return cls()
        if isinstance(filters, Filters):
            return filters
        if isinstance(filters, str):
            return cls._build(_parse_text(filters))
        if isinstance(filters, Mapping):
            pairs: list[tuple[str, str]] = []
            for key, value in filters.items():
                values = [value] if isinstance(value, str) else list(value or [])
                pairs += [(str(key), str(v)) for v in values]
            return cls._build(pairs)
        pairs = []
        for spec in filters:
            pairs += _parse_text(spec)
        return cls._build(pairs)

    @classmethod
    def _build(cls, pairs: Iterable[tuple[str, str]]) -> Filters:
        out: dict[str, list[str]] = {"dimension": [], "domain": [], "semantic_type": [], "language": [],
                                     "parallel": []}
        for key, value in pairs:
            name = _KEYS.get(key.strip())
            if name is None:
                raise UserError(f"filter {key}={value}: unknown key {key!r}; use {_KEY_NAMES}")
            value = value.strip()
            if not value:
                continue
            if name == "language":
                tag = normalise_tag(value)
                if tag is None:
                    raise UserError(f"filter {key}={value}: {tag_error(value)}")
                value = tag
            known = {"dimension": DIMENSIONS, "semantic_type": SEMANTIC_TYPES, "parallel": PARALLEL_VALUES}.get(name)
            if known is not None and value not in known:
                raise UserError(f"filter {key}={value}: unknown; use one of {', '.join(known)}")
            if value not in out[name]:
                out[name].append(value)
        return cls(tuple(out["dimension"]), tuple(out["domain"]), tuple(out["semantic_type"]), tuple(out["language"]),
                   tuple(out["parallel"]))

    # -- writing ------------------------------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self.dimension or self.domain or self.semantic_type or self.language or self.parallel)

    def _keyed(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return (("dimension", self.dimension), ("domain", self.domain), ("type", self.semantic_type),
                ("language", self.language), ("parallel", self.parallel))

    @property
    def by_prompt(self) -> bool:
        """Whether the filters select by a property of the prompt row itself (language, parallel), which the
        grouped rollup counts do not hold."""
        return bool(self.language) or len(set(self.parallel)) == 1

    def as_text(self) -> str:
        """The text form that parses back to these filters (values quoted where needed)."""
        parts = []
        for key, values in self._keyed():
            if values:
                parts.append(f"{key}=" + ",".join(_quote(v) for v in values))
        return ",".join(parts)

    def as_lists(self) -> dict[str, list[str]]:
        out = {"dimension": list(self.dimension), "domain": list(self.domain),
               "semantic_type": list(self.semantic_type)}
        if self.language:
            out["language"] = list(self.language)
        if self.parallel:
            out["parallel"] = list(self.parallel)
        return out

    def identity(self) -> dict[str, str | list[str]]:
        """What a run records in its parameters (part of its identity): one value as a string, several as a
        list, keys dimension/domain/type (language and parallel only when set) — the form runs have always
        recorded, so their identity is stable."""
        out: dict[str, str | list[str]] = {}
        for key, values in self._keyed():
            if values:
                out[key] = values[0] if len(values) == 1 else list(values)
        return out

    def single(self, name: str) -> str | None:
        """The one value of a key (the explorer's select boxes), None when it has none or several."""
        values: tuple[str, ...] = getattr(self, name)
        return values[0] if len(values) == 1 else None

    # -- checking against the store ------------------------------------------------------------------------

    def domain_ids(self, store: Store) -> list[int]:
        ids = store.domain_ids()
        for d in self.domain:
            if d not in ids:
                raise UserError(_unknown_domain(d, self.domain, ids))
        return [ids[d] for d in self.domain]


def _unknown_domain(name: str, given: Sequence[str], known: Mapping[str, int]) -> str:
    i = list(given).index(name)
    for j in range(i + 1, len(given)):
        joined = ", ".join(given[i:j + 1])
        if joined in known:
            return (f"filter domain={name}: no such domain; did you mean \"{joined}\"? A name with a comma is "
                    f"quoted: domain=\"{joined}\"")
    return f"filter domain={name}: no such domain; misalign-tui taxonomy lists them"


def _quote(value: str) -> str:
    if not (_NEEDS_QUOTES & set(value)) and value == value.strip():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_KEY = re.compile(r"\s*([A-Za-z_]+)\s*=")


def _parse_text(spec: str) -> list[tuple[str, str]]:
    """(key, value) pairs from one filter string; see the module docstring for the grammar."""
    pairs: list[tuple[str, str]] = []
    key: str | None = None
    i, n = 0, len(spec)
    while i < n:
        m = _KEY.match(spec, i)
        if m:
            key = m.group(1)
            if key not in _KEYS:
                raise UserError(f"--filter {spec!r}: unknown key {key!r}; use {_KEY_NAMES} "
                                "(quote a value that holds '=')")
            i = m.end()
        elif key is None:
            raise UserError(f"--filter {spec!r}: write key=value (dimension=.., domain=.., type=..)")
        while i < n and spec[i] == " ":
            i += 1
        if i < n and spec[i] == '"':
            value, i = _read_quoted(spec, i)
            while i < n and spec[i] == " ":
                i += 1
            if i < n and spec[i] != ",":
                raise UserError(f"--filter {spec!r}: a comma must follow the quoted value {value!r}")
        else:
            value, i = _read_bare(spec, i)
            if not value:
                raise UserError(f"--filter {spec!r}: an empty value after {key}= (or a stray comma)")
        assert key is not None
        pairs.append((key, value))
        i += 1  # the comma
    return pairs


def _read_quoted(spec: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    j = i + 1
    while j < len(spec) and spec[j] != '"':
        if spec[j] == "\\" and j + 1 < len(spec):
            j += 1
        out.append(spec[j])
        j += 1
    if j >= len(spec):
        raise UserError(f"--filter {spec!r}: the quote opened at character {i + 1} is not closed")
    return "".join(out), j + 1


def _read_bare(spec: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(spec) and spec[i] != ",":
        if spec[i] == "\\" and i + 1 < len(spec):
            i += 1
        out.append(spec[i])
        i += 1
    return "".join(out).strip(), i


# -- SQL -------------------------------------------------------------------------------------------------------

def sql_in(column: str, values: Sequence[Any], params: list[Any]) -> str:
    params.extend(values)
    return f"{column} IN ({','.join('?' * len(values))})"


def filter_conditions(filters: Filters, alias: str, params: list[Any], store: Store, *,
                      domain_exists: bool = True) -> list[str]:
    """SQL conditions (appending their parameters) that apply ``filters`` to a table aliased ``alias`` with
    prompt_id, dimension and semantic_type columns (the rollups); the domain condition as EXISTS unless the
    caller joins prompt_domains itself (``domain_exists=False``)."""
    where = []
    if filters.dimension:
        where.append(sql_in(f"{alias}.dimension", filters.dimension, params))
    if filters.semantic_type:
        where.append(sql_in(f"{alias}.semantic_type", filters.semantic_type, params))
    if domain_exists and filters.domain:
        where.append("EXISTS (SELECT 1 FROM prompt_domains pd WHERE pd.prompt_id = " + alias + ".prompt_id AND "
                     + sql_in("pd.domain_id", filters.domain_ids(store), params) + ")")
    if filters.by_prompt:
        conds = prompt_conditions(filters, "pl", params)
        where.append(f"EXISTS (SELECT 1 FROM prompts pl WHERE pl.id = {alias}.prompt_id AND {' AND '.join(conds)})")
    return where


IN_PARALLEL_SET = ("({p}.source_prompt_id IS NOT NULL OR EXISTS (SELECT 1 FROM prompts pc "
                   "WHERE pc.source_prompt_id = {p}.id))")


def prompt_conditions(filters: Filters, alias: str, params: list[Any]) -> list[str]:
    """SQL conditions on a prompts row aliased ``alias`` for the language and parallel filters."""
    where = []
    if filters.language:
        where.append(sql_in(f"{alias}.language", filters.language, params))
    if len(set(filters.parallel)) == 1:
        cond = IN_PARALLEL_SET.format(p=alias)
        where.append(cond if filters.parallel[0] == "yes" else f"NOT {cond}")
    return where


def unit_grouping(store: Store, f: Filters, group_by: str | None, params: list[Any]) -> tuple[str, str, list[str]]:
    """JOIN clause, group column and filter conditions for a per-unit rollup table aliased ``u`` (appending
    the conditions' parameters): a response counts under each of its domains when grouping by domain."""
    if group_by == "domain":
        where = filter_conditions(f, "u", params, store, domain_exists=False)
        if f.domain:
            where.append(sql_in("pd.domain_id", f.domain_ids(store), params))
        return "JOIN prompt_domains pd ON pd.prompt_id = u.prompt_id", "pd.domain_id", where
    if group_by == "language":
        return "JOIN prompts pg ON pg.id = u.prompt_id", "pg.language", filter_conditions(f, "u", params, store)
    gcol = {"dimension": "u.dimension", "semantic_type": "u.semantic_type", None: "''"}[group_by]
    return "", gcol, filter_conditions(f, "u", params, store)
