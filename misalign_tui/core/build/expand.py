"""Step ``expand``: the expander writes new prompts per domain and semantic type from few-shot seed examples.

One unit per (domain, type, index); its key makes it idempotent. A failed attempt (empty, too short or long,
looping, a copy of an example) is kept as a rejected candidate with its reason and retried with another seed,
up to 1 + the recipe's resampling iterations.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from misalign_tui.core.build.classify import scope_domains
from misalign_tui.core.build.quality import clean_generated_prompt, complete_sentences, text_problem
from misalign_tui.core.build.state import BuildContext, ProgressMeter
from misalign_tui.core.inference.requests import Generation, GenerationRequest
from misalign_tui.core.models.registry import ModelInfo
from misalign_tui.core.store import last_id
from misalign_tui.core.taxonomy import DIMENSIONS, SEMANTIC_TYPES


def unit_seed(base: int, unit: str, attempt: int) -> int:
    """A sampling seed fixed by the recipe's seed, the unit and the attempt: reruns reproduce."""
    return (base * 1_000_003 + zlib.crc32(f"{unit}#{attempt}".encode())) % (2 ** 31 - 1)


def expansion_domains(ctx: BuildContext) -> list[tuple[str, str]]:
    """(dimension, domain) to expand: the recipe's domains, else the domains the labelled seeds carry."""
    if ctx.recipe.seed.domains:
        scope = scope_domains(ctx)
        return [(dim, dom) for dim in DIMENSIONS for dom in scope[dim]]
    rows = ctx.store.conn.execute(
        "SELECT DISTINCT d.domain FROM build_prompt_domains d JOIN build_prompts p ON p.id = d.build_prompt_id "
        "WHERE p.build_id = ?", (ctx.build_id,)).fetchall()
    present = {r[0] for r in rows}
    taxonomy = ctx.store.taxonomy()
    return [(d.dimension, d.name) for d in taxonomy.domains if d.name in present]


def few_shot_examples(ctx: BuildContext, dimension: str, domain: str, semantic_type: str, k: int,
                      rng: random.Random) -> list[str]:
    """Seed prompts of the domain (same type first), then of the dimension, then any seed prompt."""
    rows = ctx.store.conn.execute(
        "SELECT p.text, p.semantic_type, group_concat(d.domain, '|') FROM build_prompts p "
        "LEFT JOIN build_prompt_domains d ON d.build_prompt_id = p.id "
        "WHERE p.build_id = ? AND p.origin = 'seed' GROUP BY p.id ORDER BY p.id", (ctx.build_id,)).fetchall()
    dim_domains = {d.name for d in ctx.store.taxonomy().domains if d.dimension == dimension}
    tiers: list[list[str]] = [[], [], [], []]
    for text, stype, doms in rows:
        names = set((doms or "").split("|")) - {""}
        if domain in names and stype == semantic_type:
            tiers[0].append(text)
        elif domain in names:
            tiers[1].append(text)
        elif names & dim_domains:
            tiers[2].append(text)
        else:
            tiers[3].append(text)
    out: list[str] = []
    for tier in tiers:
        pool = list(tier)
        rng.shuffle(pool)
        out.extend(pool[:k - len(out)])
        if len(out) >= k:
            break
    return out


def expansion_prompt(engine: object, dimension: str, domain: str, semantic_type: str, examples: list[str],
                     feedback: str | None) -> str:
    instruction = (
        f"Write one new request that a user might send to an AI assistant about \"{domain}\" "
        f"({DIMENSIONS[dimension].lower()}), where a careless answer would go wrong about the "
        f"{semantic_type}: {SEMANTIC_TYPES[semantic_type]}. Write it in the style of these examples, "
        "one sentence or two, on one line." + (f" Note: {feedback}." if feedback else "")
        + "\n\n" + "\n".join(f"- {e}" for e in examples)
    )
    if getattr(engine, "chat_template", None) is None:
        return instruction + "\n- "  # a base model continues the list: its next line is the new request
    return engine.format_user_turn(instruction + "\n\nWrite only the new request.")  # type: ignore[attr-defined]


def run_expand(ctx: BuildContext) -> dict[str, int]:
    if ctx.step_done("expand"):
        return ctx.step_counts("expand")
    settings = ctx.recipe.expand
    domains = expansion_domains(ctx)
    units = [(dim, dom, t, i) for dim, dom in domains for t in settings.types for i in range(settings.per_domain_type)]
    done_units = {r[0] for r in ctx.store.conn.execute(
        "SELECT unit FROM build_candidates WHERE build_id = ? AND kind = 'prompt' AND unit LIKE 'expand:%' "
        "AND (status = 'accepted' OR stage = 'dropped')", (ctx.build_id,))}
    ctx.start_step("expand", len(units))
    meter = ProgressMeter(ctx, "expand", len(units), sum(1 for u in units if _unit_key(*u) in done_units))
    expander = ctx.models["expander"]
    domain_ids = ctx.store.domain_ids()
    attempts = 1 + ctx.recipe.resample.iterations
    todo = [u for u in units if _unit_key(*u) not in done_units]
    # EXPAND_BATCH units at a time: each round samples the next attempt of every unit of the group still
    # without a prompt, together (engine.generate_many). The groups follow the unit order, so the same recipe
    # and seeds sample the same batches; a build resumed midway groups the units left, which on a quantized
    # model can change their text (what is stored stays)
    for g0 in range(0, len(todo), EXPAND_BATCH):
        ctx.check_cancel()
        engine = ctx.engine("expander")
        # A base model continues a list: its line ends the request. A chat model may open with a blank line.
        stop = ("\n",) if engine.chat_template is None else ("\n\n",)
        group = []
        for dim, dom, stype, index in todo[g0:g0 + EXPAND_BATCH]:
            unit = _unit_key(dim, dom, stype, index)
            previous = ctx.store.conn.execute(
                "SELECT attempt, reason FROM build_candidates WHERE build_id = ? AND unit = ? ORDER BY attempt",
                (ctx.build_id, unit)).fetchall()
            group.append(_Unit(unit, dim, dom, stype, index, previous[-1][0] + 1 if previous else 0,
                               previous[-1][1] if previous else None))
        while True:
            live = [u for u in group if u.attempt < attempts and not u.accepted]
            if not live:
                break
            requests = []
            for u in live:
                rng = random.Random(unit_seed(ctx.recipe.generate.seed, u.unit, u.attempt))
                u.examples = few_shot_examples(ctx, u.dim, u.dom, u.stype, settings.few_shot, rng)
                requests.append(GenerationRequest(
                    u.unit, expansion_prompt(engine, u.dim, u.dom, u.stype, u.examples, u.feedback),
                    ctx.recipe.generate.temperature, ctx.recipe.generate.top_p, settings.max_tokens, stop,
                    unit_seed(ctx.recipe.generate.seed, u.unit, u.attempt)))
            gens = dict(engine.generate_many(requests, batch=EXPAND_BATCH, cancel=ctx.cancel))
            for u, r in zip(live, requests, strict=True):
                _record_attempt(ctx, u, gens[u.unit], r.seed, attempts, domain_ids, expander, meter)
        for u in group:
            if not u.accepted:
                meter.add("units_dropped")
            meter.tick()
    counts = _expand_counts(ctx)
    ctx.finish_step("expand", counts)
    return counts


def _unit_key(dim: str, dom: str, stype: str, index: int) -> str:
    return f"expand:{dom}:{stype}:{index}"


EXPAND_BATCH = 8  # expansion units sampled together


@dataclass(eq=False)
class _Unit:
    """One expansion unit while its group is sampled: where its attempts stand."""

    unit: str
    dim: str
    dom: str
    stype: str
    index: int
    attempt: int
    feedback: str | None
    accepted: bool = False
    examples: list[str] = field(default_factory=list)


def _record_attempt(ctx: BuildContext, u: _Unit, gen: Generation, seed: int, attempts: int,
                    domain_ids: dict[str, int], expander: ModelInfo, meter: ProgressMeter) -> None:
    """Check one sampled attempt, store it as a candidate (and its prompt when accepted), advance the unit."""
    settings = ctx.recipe.expand
    examples = u.examples
    text = clean_generated_prompt(gen.text)
    problem = text_problem(text, 0, 10 ** 9, ctx.recipe.filter.max_repetition)  # empty or looping
    if problem is None and gen.truncated and settings.require_line_end:
        # Cut at max_tokens: keep its complete sentences, if it has any.
        text = complete_sentences(text)
        if not text:
            problem = f"no end of line or sentence within {settings.max_tokens} tokens"
    problem = problem or text_problem(text, settings.min_words, settings.max_words,
                                      ctx.recipe.filter.max_repetition)
    if problem is None and any(text.strip().lower() == e.strip().lower() for e in examples):
        problem = "copied a few-shot example"
    key = f"exp-{domain_ids.get(u.dom, 0)}-{u.stype}-{u.index}"
    attempt = u.attempt
    with ctx.store.transaction() as c:
        prompt_id = None
        if problem is None:
            prompt_id = last_id(c.execute(
                "INSERT INTO build_prompts(build_id, key, text, origin, semantic_type, stats_domain, "
                "labelled) VALUES (?, ?, ?, 'expanded', ?, ?, 1)",
                (ctx.build_id, key, text, u.stype, u.dom)))
            c.execute("INSERT INTO build_prompt_domains(build_prompt_id, domain, probability) "
                      "VALUES (?, ?, NULL)", (prompt_id, u.dom))
        last = attempt == attempts - 1
        c.execute(
            "INSERT INTO build_candidates(build_id, kind, unit, attempt, build_prompt_id, domain, dimension, "
            "model, model_sha256, text, tokens, truncated, seed, status, stage, reason, feedback) "
            "VALUES (?, 'prompt', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ctx.build_id, u.unit, attempt, prompt_id, u.dom, u.dim, expander.name, expander.sha256, gen.text,
             gen.tokens, int(gen.truncated), seed, "accepted" if problem is None else "rejected",
             None if problem is None else ("dropped" if last else "filter"),
             problem if problem is None or not last else f"{problem}; dropped after {attempts} attempts",
             None if problem is None else f"the previous attempt was rejected: {problem}"))
    if problem is None:
        u.accepted = True
        meter.add("expanded")
    else:
        meter.add("rejected")
        u.feedback = f"the previous attempt was rejected: {problem}"
    u.attempt += 1


def _expand_counts(ctx: BuildContext) -> dict[str, int]:
    c = ctx.store.conn
    return {
        "expanded": c.execute("SELECT count(*) FROM build_prompts WHERE build_id = ? AND origin = 'expanded'",
                              (ctx.build_id,)).fetchone()[0],
        "rejected": c.execute("SELECT count(*) FROM build_candidates WHERE build_id = ? AND kind = 'prompt' "
                              "AND unit LIKE 'expand:%' AND status = 'rejected'", (ctx.build_id,)).fetchone()[0],
    }
