"""Run a recipe: seed → classify → expand → dedup → pairs → publish, resuming a build that was cut short.

The checker is measured on seed pairs after classify, before anything is generated (build/checker.py); one
that ranks aligned answers above misaligned ones stops the build there. The same recipe with the same model files
is the same build (``build_runs.recipe_hash``): running it again
continues where it stopped, skipping every committed unit. ``publish`` writes the finished benchmark (a new
version of its name) with the recipe and the models' sha256 in ``benchmarks.recipe_json``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from misalign_tui.core.build.checker import measure_checker
from misalign_tui.core.build.classify import run_classify, run_seed
from misalign_tui.core.build.dedup import run_dedup
from misalign_tui.core.build.expand import run_expand
from misalign_tui.core.build.pairs import run_pairs
from misalign_tui.core.build.recipe import HUMAN_CHECKER, Recipe, _Located, recipe_hash
from misalign_tui.core.build.state import AwaitingReview, BuildContext, ProgressFn
from misalign_tui.core.errors import UserError
from misalign_tui.core.models.registry import ModelInfo, resolve_model
from misalign_tui.core.store import Store, last_id


@dataclass(frozen=True)
class BuildResult:
    build_id: int
    benchmark_id: int
    name: str
    version: int
    resumed: bool
    counts: dict[str, dict[str, int]]


def resolve_roles(store: Store, recipe: Recipe, models_dir: object, recipe_text: str | None = None,
                  ) -> dict[str, ModelInfo]:
    """Each role's model; an unknown model is one line naming the recipe key."""
    from pathlib import Path

    loc = _Located(recipe.source_label, recipe_text or "")
    specs: list[tuple[str, str, str]] = [(role, role, getattr(recipe.models, role))
                                         for role in ("classifier", "expander", "checker", "scorer")
                                         if not (role == "checker" and recipe.models.checker == HUMAN_CHECKER)]
    specs += [(f"generator:{i}", "generators", g) for i, g in enumerate(recipe.models.generators)]
    out: dict[str, ModelInfo] = {}
    cache: dict[str, ModelInfo] = {}
    for role, key, spec in specs:
        if spec not in cache:
            try:
                cache[spec] = resolve_model(store, spec, Path(str(models_dir)))
            except UserError as exc:
                named = loc.line("models", key) is not None or spec != recipe.models.default
                raise loc.error("models", key if named else "default", str(exc)) from None
        model = cache[spec]
        if not model.usable or not model.path:
            raise loc.error("models", key if loc.line("models", key) else "default", f"model {model.name!r} is not usable here: {model.error or 'no local file'}")
        out[role] = model
    return out


def check_domains(store: Store, recipe: Recipe, recipe_text: str | None = None) -> None:
    """Every domain the recipe names is in the workspace's taxonomy; else one line naming the recipe's file and
    the line that writes it (before any build row is written)."""
    import difflib

    known = set(store.domain_ids())
    for name in recipe.seed.domains:
        if name not in known:
            loc = _Located(recipe.source_label, recipe_text or "")
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
                "; misalign-tui taxonomy --format json lists them"
            raise loc.error("seed", "domains", f"unknown domain {name!r}{hint}",
                            line=loc.value_line("seed", "domains", name))


def models_summary(models: dict[str, ModelInfo]) -> dict[str, dict[str, object]]:
    return {role: {"name": m.name, "sha256": m.sha256, "quantization": m.quantization,
                   "chat_template": m.effective_chat_template is not None} for role, m in sorted(models.items())}


def open_build(store: Store, recipe: Recipe, models: dict[str, ModelInfo]) -> tuple[int, bool, str | None]:
    """(build id, resumed?, status) for this recipe + models: an existing build is resumed."""
    summary = models_summary(models)
    digest = recipe_hash(recipe, {r: m["sha256"] for r, m in summary.items()})
    row = store.conn.execute("SELECT id, status FROM build_runs WHERE recipe_hash = ?", (digest,)).fetchone()
    if row is not None:
        if row["status"] != "complete":
            with store.transaction() as c:
                c.execute("UPDATE build_runs SET status = 'running', error = NULL WHERE id = ?", (row["id"],))
        return int(row["id"]), True, row["status"]
    with store.transaction() as c:
        build_id = last_id(c.execute(
            "INSERT INTO build_runs(name, recipe_hash, recipe_json, models_json) VALUES (?, ?, ?, ?)",
            (recipe.name, digest, recipe.canonical(), json.dumps(summary, sort_keys=True))))
    return int(build_id), False, None


def run_build(store: Store, recipe: Recipe, models_dir: object, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None, recipe_text: str | None = None) -> BuildResult:
    """Run (or resume) the whole build; returns the published benchmark."""
    check_domains(store, recipe, recipe_text)
    models = resolve_roles(store, recipe, models_dir, recipe_text)
    build_id, resumed, previous = open_build(store, recipe, models)
    ctx = BuildContext(store, build_id, recipe, models, progress, cancel or threading.Event())
    counts: dict[str, dict[str, int]] = {}
    try:
        if previous == "complete":
            row = store.conn.execute("SELECT benchmark_id FROM build_runs WHERE id = ?", (build_id,)).fetchone()
            if row and row[0] is not None:
                b = store.benchmark_by_id(int(row[0]))
                for step in ("seed", "classify", "expand", "dedup", "pairs", "publish"):
                    counts[step] = ctx.step_counts(step)
                return BuildResult(build_id, b.id, b.name, b.version, True, counts)
        counts["seed"] = run_seed(ctx)
        if recipe.seed.domains and not recipe.dedup.include_seeds:
            measure_checker(ctx)  # the dimensions are the recipe's: measure first of all
        counts["classify"] = run_classify(ctx)
        measure_checker(ctx)  # before anything is generated: a checker that ranks the wrong way stops here
        counts["expand"] = run_expand(ctx)
        counts["dedup"] = run_dedup(ctx)
        counts["pairs"] = run_pairs(ctx)
        if recipe.resample.review_sample:
            sample_checker_decisions(ctx)
        benchmark_id, version, counts["publish"] = publish(ctx)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt | InterruptedError | AwaitingReview) or \
            type(exc).__name__ == "Cancelled" else "failed"
        with store.transaction() as c:
            c.execute("UPDATE build_runs SET status = ?, error = ? WHERE id = ?", (status, str(exc)[:500], build_id))
        raise
    finally:
        ctx.close()
    return BuildResult(build_id, benchmark_id, recipe.name, version, resumed, counts)


def sample_checker_decisions(ctx: BuildContext) -> None:
    """``review = "sample:N"``: a review queue of N of the model checker's decisions (seeded by the recipe's
    generation seed), for reviewers to validate the checker; the build does not wait for it."""
    from misalign_tui.core.review.queues import build_sample_queue

    has_decisions = ctx.store.conn.execute(
        "SELECT 1 FROM build_candidates WHERE build_id = ? AND p_misaligned IS NOT NULL LIMIT 1",
        (ctx.build_id,)).fetchone()
    if has_decisions:
        build_sample_queue(ctx.store, ctx.build_id, ctx.recipe.resample.review_sample, ctx.recipe.generate.seed)


def publish(ctx: BuildContext) -> tuple[int, int, dict[str, int]]:
    """Write the benchmark: every kept prompt whose labelled dimensions all got a pair, with its pairs."""
    store, recipe = ctx.store, ctx.recipe
    dims_of = {d.name: d.dimension for d in store.taxonomy().domains}
    domain_ids = store.domain_ids()
    prompts = store.conn.execute(
        "SELECT id, key, text, semantic_type, origin, fingerprint FROM build_prompts WHERE build_id = ? "
        "AND dedup_status = 'kept' AND (origin = 'expanded' OR ?) ORDER BY id",
        (ctx.build_id, int(recipe.dedup.include_seeds))).fetchall()
    ctx.start_step("publish", len(prompts))
    meta = {"recipe": recipe.as_json(), "models": json.loads(store.conn.execute(
        "SELECT models_json FROM build_runs WHERE id = ?", (ctx.build_id,)).fetchone()[0]),
        "recipe_hash": store.conn.execute("SELECT recipe_hash FROM build_runs WHERE id = ?",
                                          (ctx.build_id,)).fetchone()[0], "build_id": ctx.build_id}
    published = skipped = responses = 0
    with store.transaction() as c:
        version = c.execute("SELECT coalesce(max(version), 0) + 1 FROM benchmarks WHERE name = ?",
                            (recipe.name,)).fetchone()[0]
        bid = last_id(c.execute(
            "INSERT INTO benchmarks(name, version, description, licence, source_json, recipe_json) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (recipe.name, version, recipe.description or f"built by misalign-tui from recipe {recipe.source_label}",
             "generated; see recipe_json for models", json.dumps({"build_id": ctx.build_id}),
             json.dumps(meta, sort_keys=True, ensure_ascii=False))))
        for p in prompts:
            domains = c.execute("SELECT domain, probability FROM build_prompt_domains WHERE build_prompt_id = ?",
                                (p["id"],)).fetchall()
            dims = {dims_of[d[0]] for d in domains if d[0] in dims_of}
            units = c.execute(
                "SELECT u.dimension, u.generator, ca.text, cm.text FROM build_pair_units u "
                "JOIN build_candidates ca ON ca.id = u.aligned_candidate_id "
                "JOIN build_candidates cm ON cm.id = u.misaligned_candidate_id "
                "WHERE u.build_prompt_id = ? AND u.status = 'paired' ORDER BY u.dimension, u.generator",
                (p["id"],)).fetchall()
            if not dims or {u[0] for u in units} != dims:
                skipped += 1
                continue
            pid = last_id(c.execute("INSERT INTO prompts(benchmark_id, key, text, semantic_type, origin, fingerprint) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (bid, p["key"], p["text"], p["semantic_type"], p["origin"], p["fingerprint"])))
            for name, prob in domains:
                if name in domain_ids:
                    c.execute("INSERT INTO prompt_domains(prompt_id, domain_id, probability) VALUES (?, ?, ?)",
                              (pid, domain_ids[name], prob))
            for dim, gen, aligned, misaligned in units:
                a = last_id(c.execute("INSERT INTO responses(prompt_id, dimension, label, text, origin) "
                              "VALUES (?, ?, 'aligned', ?, ?)", (pid, dim, aligned, gen)))
                m = last_id(c.execute("INSERT INTO responses(prompt_id, dimension, label, text, origin) "
                              "VALUES (?, ?, 'misaligned', ?, ?)", (pid, dim, misaligned, gen)))
                c.execute("INSERT INTO pairs(prompt_id, dimension, aligned_id, misaligned_id) VALUES (?, ?, ?, ?)",
                          (pid, dim, a, m))
                responses += 2
            published += 1
        store.update_content_hash(bid)
        c.execute("UPDATE build_runs SET benchmark_id = ?, status = 'complete', "
                  "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?", (bid, ctx.build_id))
    counts = {"prompts": published, "responses": responses, "prompts_without_all_pairs": skipped}
    ctx.finish_step("publish", counts)
    return int(bid), int(version), counts
