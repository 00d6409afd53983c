"""Counts and validity checks for a benchmark: what ``benchmark stats`` and ``benchmark check`` print."""

from __future__ import annotations

from dataclasses import dataclass

from misalign_tui.core.fingerprint import DEFAULT_TAU, near_duplicate_pairs
from misalign_tui.core.languages import DEFAULT_LANGUAGE, length_units
from misalign_tui.core.store import Store
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES

SIMHASH_TAU = DEFAULT_TAU  # Hamming threshold of the sister benchmark (64-bit fingerprints)
MIN_PROMPTS_PER_DOMAIN = 3
MAX_PAIR_LENGTH_RATIO = 2.0


def benchmark_statistics(store: Store, benchmark_id: int) -> dict[str, object]:
    """Integer counts per dimension, domain and semantic type (a prompt counts once under each of its domains)."""
    c = store.conn
    prompts = c.execute("SELECT count(*) FROM prompts WHERE benchmark_id = ?", (benchmark_id,)).fetchone()[0]
    per_domain = [
        {"dimension": r[0], "domain": r[1], "prompts": r[2], "pairs": r[3], "final_responses": r[4]}
        for r in c.execute(
            """
            SELECT d.dimension, d.name,
                   count(DISTINCT p.id),
                   (SELECT count(*) FROM pairs pr JOIN prompt_domains pd2 ON pd2.prompt_id = pr.prompt_id
                     JOIN prompts p2 ON p2.id = pr.prompt_id
                     WHERE pd2.domain_id = d.id AND p2.benchmark_id = ?),
                   (SELECT count(*) FROM responses r JOIN prompt_domains pd3 ON pd3.prompt_id = r.prompt_id
                     JOIN prompts p3 ON p3.id = r.prompt_id
                     WHERE pd3.domain_id = d.id AND p3.benchmark_id = ?)
            FROM domains d
            LEFT JOIN prompt_domains pd ON pd.domain_id = d.id
            LEFT JOIN prompts p ON p.id = pd.prompt_id AND p.benchmark_id = ?
            GROUP BY d.id ORDER BY d.id
            """,
            (benchmark_id, benchmark_id, benchmark_id),
        )
    ]
    per_dimension = {dim: 0 for dim in DIMENSIONS}
    for dim, n in c.execute(
        "SELECT d.dimension, count(DISTINCT p.id) FROM prompts p JOIN prompt_domains pd ON pd.prompt_id = p.id "
        "JOIN domains d ON d.id = pd.domain_id WHERE p.benchmark_id = ? GROUP BY d.dimension", (benchmark_id,)
    ):
        per_dimension[dim] = n
    types = dict.fromkeys(SEMANTIC_TYPES, 0)
    for t, n in c.execute("SELECT coalesce(semantic_type, 'none'), count(*) FROM prompts WHERE benchmark_id = ? "
                          "GROUP BY 1", (benchmark_id,)):
        types[t] = n
    dims_per_prompt = dict(c.execute(
        "SELECT p.id, count(DISTINCT d.dimension) FROM prompts p JOIN prompt_domains pd ON pd.prompt_id = p.id "
        "JOIN domains d ON d.id = pd.domain_id WHERE p.benchmark_id = ? GROUP BY p.id", (benchmark_id,)
    ).fetchall())
    pairs = c.execute("SELECT count(*) FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id WHERE p.benchmark_id = ?",
                      (benchmark_id,)).fetchone()[0]
    responses = c.execute("SELECT count(*) FROM responses r JOIN prompts p ON p.id = r.prompt_id "
                          "WHERE p.benchmark_id = ?", (benchmark_id,)).fetchone()[0]
    return {
        "prompts": prompts,
        "pairs": pairs,
        "responses": responses,
        "per_dimension": per_dimension,
        "per_domain": [d for d in per_domain if d["prompts"]],
        "domains_covered": sum(1 for d in per_domain if d["prompts"]),
        "domains_total": len(per_domain),
        "semantic_types": types,
        "multi_dimension_prompts": sum(1 for n in dims_per_prompt.values() if n >= 2),
        "missing_pairs": len(missing_pairs(store, benchmark_id)),
        "languages": language_counts(store, benchmark_id),
    }


def missing_pairs(store: Store, benchmark_id: int) -> list[tuple[str, str]]:
    """(prompt key, dimension) for every labelled dimension that has no aligned/misaligned pair."""
    return [(r[0], r[1]) for r in store.conn.execute(
        """
        SELECT DISTINCT p.key, d.dimension FROM prompts p
        JOIN prompt_domains pd ON pd.prompt_id = p.id JOIN domains d ON d.id = pd.domain_id
        WHERE p.benchmark_id = ? AND NOT EXISTS (
            SELECT 1 FROM pairs pr WHERE pr.prompt_id = p.id AND pr.dimension = d.dimension)
        ORDER BY p.key, d.dimension
        """, (benchmark_id,))]


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def check_benchmark(store: Store, benchmark_id: int, *, tau: int = SIMHASH_TAU) -> list[Problem]:
    """Everything that makes a benchmark unfit: thin domains, missing pairs, unknown domains,
    near-duplicate prompts, pairs of very unequal length (in words, or characters for unspaced scripts), and a
    parallel structure that does not hold (``parallel_problems``)."""
    problems: list[Problem] = []
    c = store.conn
    for r in c.execute(
        """
        SELECT d.name, count(p.id) FROM domains d
        LEFT JOIN prompt_domains pd ON pd.domain_id = d.id
        LEFT JOIN prompts p ON p.id = pd.prompt_id AND p.benchmark_id = ?
        WHERE d.origin = 'published' GROUP BY d.id HAVING count(p.id) < ? ORDER BY d.id
        """, (benchmark_id, MIN_PROMPTS_PER_DOMAIN),
    ):
        problems.append(Problem("thin domain", f"{r[0]!r} has {r[1]} prompt(s), needs {MIN_PROMPTS_PER_DOMAIN}"))
    for key, dim in missing_pairs(store, benchmark_id):
        problems.append(Problem("missing pair", f"prompt {key} is labelled {dim} but has no {dim} pair"))
    for r in c.execute(
        "SELECT p.key, pr.dimension FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id WHERE p.benchmark_id = ? "
        "AND pr.dimension IS NOT NULL AND NOT EXISTS (SELECT 1 FROM prompt_domains pd JOIN domains d "
        "ON d.id = pd.domain_id WHERE pd.prompt_id = p.id AND d.dimension = pr.dimension)", (benchmark_id,)
    ):
        problems.append(Problem("unlabelled pair", f"prompt {r[0]} has a {r[1]} pair but no {r[1]} domain"))
    for r in c.execute(
        "SELECT p.key FROM prompts p WHERE p.benchmark_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM prompt_domains pd WHERE pd.prompt_id = p.id)", (benchmark_id,)
    ):
        problems.append(Problem("unknown domain", f"prompt {r[0]} has no known domain"))
    for r in c.execute(
        "SELECT p.key, pr.dimension, ra.text, rm.text, p.language FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id "
        "JOIN responses ra ON ra.id = pr.aligned_id JOIN responses rm ON rm.id = pr.misaligned_id "
        "WHERE p.benchmark_id = ?", (benchmark_id,)
    ):
        (la, unit), (lm, _) = length_units(r[2], r[4]), length_units(r[3], r[4])
        if min(la, lm) == 0 or max(la, lm) / min(la, lm) > MAX_PAIR_LENGTH_RATIO:
            problems.append(Problem("unequal pair", f"prompt {r[0]} {r[1]}: {la} vs {lm} {unit} (limit 2x)"))
    problems += parallel_problems(store, benchmark_id)
    rows = c.execute("SELECT key, text FROM prompts WHERE benchmark_id = ? ORDER BY id", (benchmark_id,)).fetchall()
    for i, j, dist in near_duplicate_pairs([r[1] for r in rows], tau):
        problems.append(Problem("near-duplicate", f"prompts {rows[i][0]} and {rows[j][0]} "
                                                  f"(SimHash distance {dist} <= {tau})"))
    return problems


def _structure(c: Store, prompt_id: int) -> tuple[str | None, list[str], list[str]]:
    """What a parallel item must share with its source: type, domains and the dimensions of its pairs."""
    stype = c.conn.execute("SELECT semantic_type FROM prompts WHERE id = ?", (prompt_id,)).fetchone()[0]
    domains = sorted(r[0] for r in c.conn.execute(
        "SELECT d.name FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id WHERE pd.prompt_id = ?",
        (prompt_id,)))
    dims = sorted(r[0] or "" for r in c.conn.execute("SELECT dimension FROM pairs WHERE prompt_id = ?", (prompt_id,)))
    return stype, domains, dims


def parallel_problems(store: Store, benchmark_id: int) -> list[Problem]:
    """The parallel structure: each parallel item links to an English prompt of the same benchmark, has its
    source's semantic type, domains and pair dimensions (so labels carry over), and is the only item in its
    language for that source; an English prompt is never itself a parallel item."""
    problems: list[Problem] = []
    rows = store.conn.execute(
        "SELECT p.id, p.key, p.language, s.id, s.key, s.language, s.benchmark_id FROM prompts p "
        "JOIN prompts s ON s.id = p.source_prompt_id WHERE p.benchmark_id = ? ORDER BY p.id", (benchmark_id,)
    ).fetchall()
    seen: dict[tuple[int, str], str] = {}
    for pid, key, lang, sid, skey, slang, sbench in rows:
        if sbench != benchmark_id:
            problems.append(Problem("parallel source", f"prompt {key}: its source {skey} is in another benchmark"))
            continue
        if slang != DEFAULT_LANGUAGE:
            problems.append(Problem("parallel source", f"prompt {key}: its source {skey} is {slang}, not English"))
        if lang == DEFAULT_LANGUAGE:
            problems.append(Problem("parallel language", f"prompt {key}: a parallel item in English (its source "
                                                         f"{skey} is English)"))
        other = seen.get((sid, lang))
        if other is not None:
            problems.append(Problem("parallel duplicate", f"prompts {other} and {key}: two {lang} items for {skey}"))
        seen[(sid, lang)] = key
        mine, theirs = _structure(store, pid), _structure(store, sid)
        for what, a, b in zip(("semantic type", "domains", "pair dimensions"), mine, theirs, strict=True):
            if a != b:
                problems.append(Problem("parallel structure", f"prompt {key}: {what} {a!r} differ from its source "
                                                              f"{skey}'s {b!r}"))
    return problems


def language_counts(store: Store, benchmark_id: int) -> list[dict[str, object]]:
    """Prompts, pairs and parallel items per language (English first)."""
    rows = store.conn.execute(
        "SELECT p.language, count(*), sum(p.source_prompt_id IS NOT NULL), "
        "(SELECT count(*) FROM pairs pr JOIN prompts q ON q.id = pr.prompt_id "
        " WHERE q.benchmark_id = p.benchmark_id AND q.language = p.language) "
        "FROM prompts p WHERE p.benchmark_id = ? GROUP BY p.language", (benchmark_id,)).fetchall()
    out = [{"language": r[0], "prompts": r[1], "parallel_items": r[2], "pairs": r[3]} for r in rows]
    return sorted(out, key=lambda d: (d["language"] != DEFAULT_LANGUAGE, str(d["language"])))
