"""What the Item screen shows: one prompt with its domains, responses and pairs, every model's verdicts on them,
the stored explanations of its preference verdicts (views/explain.py), and the exact text each run's templates
produced."""

from __future__ import annotations

from dataclasses import dataclass, field

from misalign_tui.core.store import Store
from misalign_tui.core.views.explain import PreferenceExplanation, stored_preferences


@dataclass
class ItemVerdict:
    model: str
    run_id: int
    method: str
    response_id: int | None
    pair_id: int | None
    value: str  # verdict and probability, or log-likelihoods


@dataclass
class ItemView:
    prompt_id: int
    key: str
    text: str
    semantic_type: str | None
    domains: list[tuple[str, str]]  # (dimension, domain)
    responses: list[tuple[int, str | None, str, str]]  # id, dimension, label, text
    pairs: list[tuple[int, str | None, int, int]]  # id, dimension, aligned id, misaligned id
    verdicts: list[ItemVerdict]
    formatted: list[tuple[str, str]]  # (run/template name, the text the model saw)
    preferences: dict[tuple[int, int], PreferenceExplanation] = field(default_factory=dict)  # (run, pair)

    def judge_verdicts(self) -> list[tuple[int, int]]:
        """(run id, response id) of every judge verdict shown: what the explain key explains."""
        return [(v.run_id, v.response_id) for v in self.verdicts if v.method == "judge" and v.response_id is not None]


def read_item(store: Store, prompt_id: int) -> ItemView:
    c = store.conn
    p = c.execute("SELECT id, key, text, semantic_type FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
    if p is None:
        raise LookupError(f"prompt {prompt_id} not found")
    domains = [(r[0], r[1]) for r in c.execute(
        "SELECT d.dimension, d.name FROM prompt_domains pd JOIN domains d ON d.id = pd.domain_id "
        "WHERE pd.prompt_id = ? ORDER BY d.dimension, d.name", (prompt_id,))]
    responses = [tuple(r) for r in c.execute(
        "SELECT id, dimension, label, text FROM responses WHERE prompt_id = ? ORDER BY dimension, label, id",
        (prompt_id,))]
    pairs = [tuple(r) for r in c.execute(
        "SELECT id, dimension, aligned_id, misaligned_id FROM pairs WHERE prompt_id = ? ORDER BY id", (prompt_id,))]
    verdicts: list[ItemVerdict] = []
    for rid, model, method, rsp, mean_p, n in c.execute(
            "SELECT jr.run_id, m.name, r.method, jr.response_id, avg(jr.p_misaligned), count(*) "
            "FROM judge_results jr JOIN runs r ON r.id = jr.run_id JOIN models m ON m.id = r.model_id "
            "JOIN responses resp ON resp.id = jr.response_id WHERE resp.prompt_id = ? "
            "GROUP BY jr.run_id, jr.response_id ORDER BY m.name, jr.run_id", (prompt_id,)):
        flag = "misaligned" if mean_p >= 0.5 else "aligned"
        verdicts.append(ItemVerdict(model, rid, method, rsp, None,
                                    f"flags {flag}  P(misaligned)={mean_p:.3f} over {n} template(s)"))
    for rid, model, pair_id, alp, atok, mlp, mtok, pref in c.execute(
            "SELECT pr.run_id, m.name, pr.pair_id, avg(aligned_logprob), avg(aligned_tokens), "
            "avg(misaligned_logprob), avg(misaligned_tokens), avg(prefers_aligned) FROM preference_results pr "
            "JOIN runs r ON r.id = pr.run_id JOIN models m ON m.id = r.model_id JOIN pairs pa ON pa.id = pr.pair_id "
            "WHERE pa.prompt_id = ? GROUP BY pr.run_id, pr.pair_id", (prompt_id,)):
        verdicts.append(ItemVerdict(model, rid, "preference", None, pair_id,
                                    f"{'prefers aligned' if pref >= 0.5 else 'prefers misaligned'}  "
                                    f"mean logprob aligned {alp / max(atok, 1):.3f} vs misaligned "
                                    f"{mlp / max(mtok, 1):.3f}"))
    formatted: list[tuple[str, str]] = []
    first_response = next((r for r in responses), None)
    run_ids = sorted({v.run_id for v in verdicts})
    for rid in run_ids:
        for t, name, text in c.execute(
                "SELECT template, name, text FROM run_templates WHERE run_id = ? ORDER BY template", (rid,)):
            filled = text.replace("{prompt}", p["text"])
            if first_response is not None:
                filled = filled.replace("{response}", first_response[3])
                filled = filled.replace("{dimension}", first_response[1] or "")
            formatted.append((f"run {rid} · template {t} ({name})", filled))
    return ItemView(p["id"], p["key"], p["text"], p["semantic_type"], domains, responses, pairs, verdicts,
                    formatted, stored_preferences(store, prompt_id))
