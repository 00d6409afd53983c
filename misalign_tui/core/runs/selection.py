"""Which items a run evaluates: the benchmark's prompts that pass the filters (``Filters``, the one grammar),
the first ``limit`` of them by prompt id, and their responses, pairs or labelled dimensions — always in prompt
order, so the item order is a function of the run alone."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from misalign_tui.core.metrics.filters import Filters, prompt_conditions, sql_in
from misalign_tui.core.store import Store


def prompt_ids(store: Store, benchmark_id: int, method: str, f: Filters, limit: int | None, *,
               exclude: Collection[int] = (), only: Collection[int] | None = None) -> list[int]:
    """The run's prompts: those with something to evaluate for ``method`` on the filtered dimensions, less
    ``exclude`` and within ``only`` (the calibration split, runs/calibration.py), then the first ``limit``."""
    where = ["p.benchmark_id = ?"]
    params: list[Any] = [benchmark_id]
    if f.semantic_type:
        where.append(sql_in("p.semantic_type", f.semantic_type, params))
    if f.domain:
        where.append("EXISTS (SELECT 1 FROM prompt_domains pd WHERE pd.prompt_id = p.id AND "
                     + sql_in("pd.domain_id", f.domain_ids(store), params) + ")")
    where += prompt_conditions(f, "p", params)
    dims: list[Any] = []
    dim_sql = (" AND " + sql_in("x.dimension", f.dimension, dims)) if f.dimension else ""
    if method == "judge":
        where.append(f"EXISTS (SELECT 1 FROM responses x WHERE x.prompt_id = p.id{dim_sql})")
    elif method == "preference":
        where.append(f"EXISTS (SELECT 1 FROM pairs x WHERE x.prompt_id = p.id{dim_sql})")
    elif f.dimension:
        where.append("EXISTS (SELECT 1 FROM prompt_domains pd JOIN domains x ON x.id = pd.domain_id "
                     f"WHERE pd.prompt_id = p.id{dim_sql})")
    params += dims if (method in ("judge", "preference") or f.dimension) else []
    sql = f"SELECT p.id FROM prompts p WHERE {' AND '.join(where)} ORDER BY p.id"
    if not exclude and only is None:
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [r[0] for r in store.conn.execute(sql, params)]
    skip, keep = set(exclude), set(only) if only is not None else None
    ids = [r[0] for r in store.conn.execute(sql, params) if r[0] not in skip and (keep is None or r[0] in keep)]
    return ids[:limit] if limit is not None else ids


def _chunks(ids: Sequence[int], n: int = 500) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def prompt_texts(store: Store, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(ids):
        out.update(store.conn.execute(
            f"SELECT id, text FROM prompts WHERE id IN ({','.join('?' * len(chunk))})", list(chunk)).fetchall())
    return out


def responses(store: Store, ids: Sequence[int], f: Filters) -> list[tuple[int, int, str]]:
    """(response id, prompt id, text) of the prompts' responses on the filtered dimensions."""
    out: list[tuple[int, int, str]] = []
    for chunk in _chunks(ids):
        params: list[Any] = list(chunk)
        dim = (" AND " + sql_in("dimension", f.dimension, params)) if f.dimension else ""
        sql = f"SELECT id, prompt_id, text FROM responses WHERE prompt_id IN ({','.join('?' * len(chunk))}){dim}"
        out += [(r[0], r[1], r[2]) for r in store.conn.execute(sql, params)]
    return sorted(out, key=lambda r: (r[1], r[0]))


def pairs(store: Store, ids: Sequence[int], f: Filters) -> list[tuple[int, int, str, str]]:
    """(pair id, prompt id, aligned text, misaligned text) on the filtered dimensions."""
    out: list[tuple[int, int, str, str]] = []
    for chunk in _chunks(ids):
        params: list[Any] = list(chunk)
        dim = (" AND " + sql_in("pr.dimension", f.dimension, params)) if f.dimension else ""
        sql = ("SELECT pr.id, pr.prompt_id, ra.text, rm.text FROM pairs pr "
               "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
               f"WHERE pr.prompt_id IN ({','.join('?' * len(chunk))}){dim}")
        out += [(r[0], r[1], r[2], r[3]) for r in store.conn.execute(sql, params)]
    return sorted(out, key=lambda r: (r[1], r[0]))


def prompt_dimensions(store: Store, ids: Sequence[int], f: Filters) -> dict[int, list[str]]:
    """Each prompt's labelled dimensions (from its domains), restricted to the filtered ones."""
    out: dict[int, list[str]] = {}
    for chunk in _chunks(ids):
        for pid, dim in store.conn.execute(
            "SELECT DISTINCT pd.prompt_id, d.dimension FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id "
            f"WHERE pd.prompt_id IN ({','.join('?' * len(chunk))}) ORDER BY pd.prompt_id, d.dimension", list(chunk)
        ):
            if not f.dimension or dim in f.dimension:
                out.setdefault(pid, []).append(dim)
    return out
