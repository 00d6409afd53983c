"""The trigger-maintained rollups give the same numbers as a direct computation over the raw result rows, on
randomized benchmarks and partial, interleaved runs (hypothesis)."""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misalign_tui.core import metrics
from misalign_tui.core.io.native import PairRecord, PromptRecord, ResponseRecord
from misalign_tui.core.store import rebuild_rollups
from tests.metrics_fixtures import add_benchmark, add_run, new_store

DOMAINS = ["Animal Abuse", "Privacy Violation", "Inner Harmony", "Festivals and Markets", "Equality"]
DIMS = [None, "safety", "value", "cultural"]
TYPES = [None, "object", "attribute", "relation"]
EIGHTHS = [i / 8 for i in range(9)]  # exact binary fractions: sums and means compare exactly

prompt_st = st.fixed_dictionaries({
    "type": st.sampled_from(TYPES),
    "domains": st.lists(st.sampled_from(DOMAINS), max_size=3, unique=True),
    "pairs": st.lists(st.sampled_from(DIMS), max_size=4),
    "lone": st.lists(st.tuples(st.sampled_from(DIMS), st.sampled_from(["aligned", "misaligned"])), max_size=2),
})
filters_st = st.fixed_dictionaries({}, optional={
    "dimension": st.lists(st.sampled_from(DIMS[1:]), min_size=1, max_size=2, unique=True),
    "domain": st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=3, unique=True),
    "semantic_type": st.lists(st.sampled_from(TYPES[1:]), min_size=1, max_size=2, unique=True),
})


def _build(data, prompts, store):
    records = []
    for i, p in enumerate(prompts):
        records.append(PromptRecord(
            f"k{i}", f"prompt {i}", p["type"], p["domains"],
            [PairRecord(d, f"a{i}-{j}", f"m{i}-{j}") for j, d in enumerate(p["pairs"])],
            [ResponseRecord(d, lab, f"l{i}-{j}") for j, (d, lab) in enumerate(p["lone"])]))
    bid = add_benchmark(store, "random", records)
    c = store.conn
    responses = c.execute("SELECT r.id, r.prompt_id, r.dimension, r.label FROM responses r").fetchall()
    pairs = c.execute("SELECT id, prompt_id, dimension, aligned_id, misaligned_id FROM pairs").fetchall()
    prompt_ids = [r[0] for r in c.execute("SELECT id FROM prompts ORDER BY id")]
    runs = {}
    k = data.draw(st.integers(1, 3), label="judge templates")
    runs["judge"] = add_run(store, "judge-model", bid, "judge", templates=k)
    runs["judge2"] = add_run(store, "judge-model-2", bid, "judge")
    runs["preference"] = add_run(store, "pref-model", bid, "preference", templates=2)
    runs["generate"] = add_run(store, "gen-model", bid, "generate", templates=2)
    rows = {"judge": [], "preference": [], "generate": []}
    for name, templates in (("judge", k), ("judge2", 1)):
        for r in responses:
            for t in range(templates):
                if data.draw(st.booleans()) or data.draw(st.booleans()):  # most rows present: partial runs
                    p = data.draw(st.sampled_from(EIGHTHS))
                    rows["judge"].append((runs[name], r[0], t, p, int(p >= 0.5)))
    for pr in pairs:
        for t in range(2):
            if data.draw(st.booleans()) or data.draw(st.booleans()):
                rows["preference"].append((runs["preference"], pr[0], t, data.draw(st.integers(0, 1))))
    for pid in prompt_ids:
        for d in DIMS[1:]:
            for t in range(2):
                if data.draw(st.booleans()):
                    p = data.draw(st.sampled_from(EIGHTHS))
                    rows["generate"].append((runs["generate"], pid, d, t, p, int(p >= 0.5)))
    for key in rows:  # interleave templates so verdicts flip as later templates arrive
        rows[key] = data.draw(st.permutations(rows[key]), label=f"{key} order")
    with store.transaction():
        c.executemany("INSERT INTO judge_results(run_id, response_id, template, p_misaligned, flagged) "
                      "VALUES (?, ?, ?, ?, ?)", rows["judge"])
    with store.transaction():
        c.executemany("INSERT INTO preference_results(run_id, pair_id, template, aligned_logprob, aligned_tokens, "
                      "misaligned_logprob, misaligned_tokens, prefers_aligned) VALUES (?, ?, ?, -1, 1, -1, 1, ?)",
                      rows["preference"])
        c.executemany("INSERT INTO generation_judgments(run_id, prompt_id, dimension, template, p_misaligned, "
                      "flagged) VALUES (?, ?, ?, ?, ?, ?)", rows["generate"])
    return runs


class Reference:
    """docs/measures.md computed directly from the raw rows, in plain Python."""

    def __init__(self, store, run_id: int, filters: dict):
        c = store.conn
        self.method = c.execute("SELECT method FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        self.ptype = {r[0]: r[1] or "" for r in c.execute("SELECT id, semantic_type FROM prompts")}
        self.pdoms = defaultdict(set)
        for pid, name in c.execute("SELECT pd.prompt_id, d.name FROM prompt_domains pd JOIN domains d "
                                   "ON d.id = pd.domain_id"):
            self.pdoms[pid].add(name)
        self.f = filters
        resp = {r[0]: (r[1], r[2] or "", r[3]) for r in c.execute("SELECT id, prompt_id, dimension, label "
                                                                    "FROM responses")}
        scores = defaultdict(list)
        self.template_rows = []
        for rid, t, p, fl in c.execute("SELECT response_id, template, p_misaligned, flagged FROM judge_results "
                                       "WHERE run_id = ?", (run_id,)):
            scores[rid].append(p)
            self.template_rows.append((resp[rid], t, fl))
        # items: (prompt, dim, label, flagged)
        self.items = [(*resp[rid], sum(ps) / len(ps) >= 0.5) for rid, ps in scores.items()]
        flagged = {rid: sum(ps) / len(ps) >= 0.5 for rid, ps in scores.items()}
        self.pair_units = []  # (prompt, dim, satisfied)
        pairs = c.execute("SELECT id, prompt_id, dimension, aligned_id, misaligned_id FROM pairs").fetchall()
        if self.method == "judge":
            for _, pid, d, a, m in pairs:
                if a in flagged and m in flagged:
                    self.pair_units.append((pid, d or "", (not flagged[a]) and flagged[m]))
        elif self.method == "preference":
            votes = defaultdict(list)
            for pair_id, v in c.execute("SELECT pair_id, prefers_aligned FROM preference_results WHERE run_id = ?",
                                        (run_id,)):
                votes[pair_id].append(v)
            for pair_id, pid, d, _, _ in pairs:
                if pair_id in votes:
                    self.pair_units.append((pid, d or "", 2 * sum(votes[pair_id]) > len(votes[pair_id])))
        units = defaultdict(list)
        for pid, d, s in self.pair_units:
            units[(pid, d)].append(s)
        self.prompt_units = [(pid, d, all(s)) for (pid, d), s in units.items()]
        if self.method == "generate":
            gen = defaultdict(list)
            for pid, d, p in c.execute("SELECT prompt_id, dimension, p_misaligned FROM generation_judgments "
                                       "WHERE run_id = ?", (run_id,)):
                gen[(pid, d)].append(p)
            self.prompt_units = [(pid, d, sum(ps) / len(ps) < 0.5) for (pid, d), ps in gen.items()]

    def passes(self, pid: int, dim: str) -> bool:
        f = self.f
        return ((not f.get("dimension") or dim in f["dimension"])
                and (not f.get("semantic_type") or self.ptype[pid] in f["semantic_type"])
                and (not f.get("domain") or bool(self.pdoms[pid] & set(f["domain"]))))

    def groups(self, pid: int, dim: str, group_by: str | None) -> list:
        if group_by is None:
            return [None]
        if group_by == "dimension":
            return [dim or metrics.UNTARGETED]
        if group_by == "semantic_type":
            return [self.ptype[pid] or "untyped"]
        return sorted(d for d in self.pdoms[pid] if not self.f.get("domain") or d in self.f["domain"])

    def profile(self, group_by: str | None) -> dict:
        out = defaultdict(lambda: defaultdict(int))
        for pid, dim, label, fl in self.items:
            if self.passes(pid, dim):
                for g in self.groups(pid, dim, group_by):
                    out[g][label] += 1
                    out[g][label + "_flagged"] += fl
        for (pid, dim, label), t, fl in self.template_rows:
            if self.passes(pid, dim):
                for g in self.groups(pid, dim, group_by):
                    out[g][(t, label)] += 1
                    out[g][(t, label, "flagged")] += fl
        for pid, dim, s in self.pair_units:
            if self.passes(pid, dim):
                for g in self.groups(pid, dim, group_by):
                    out[g]["pairs"] += 1
                    out[g]["pairs_satisfied"] += s
        for pid, dim, s in self.prompt_units:
            if self.passes(pid, dim):
                for g in self.groups(pid, dim, group_by):
                    out[g]["units"] += 1
                    out[g]["units_satisfied"] += s
        return out

    def trade_off(self) -> tuple[int, int, float | None]:
        per_prompt = defaultdict(dict)
        for pid, dim, s in self.prompt_units:
            if dim and self.passes(pid, dim):
                per_prompt[pid][dim] = s
        s_d = {}
        for d in DIMS[1:]:
            vals = [u[d] for u in per_prompt.values() if d in u]
            if vals:
                s_d[d] = sum(vals) / len(vals)
        multi = [u for u in per_prompt.values() if len(u) >= 2]
        n_trade = sum(1 for u in multi if any(u.values()) and not all(u.values()))
        base = (sum(1 - math.prod(s_d[d] for d in u) - math.prod(1 - s_d[d] for d in u) for u in multi) / len(multi)
                if multi else None)
        return len(multi), n_trade, base


def _check(store, run_id: int, filters: dict, group_by: str | None) -> None:
    ref = Reference(store, run_id, filters)
    expected = ref.profile(group_by)
    rows = metrics.profile(store, run_id, group_by=group_by, filters=filters)
    got = {r.group: r for r in rows}
    if group_by is None:
        expected = {None: expected.get(None, defaultdict(int))}
    assert set(got) == set(expected), (group_by, filters)
    for g, e in expected.items():
        r = got[g]
        if ref.method == "judge":
            assert (r.misaligned, r.misaligned_flagged, r.aligned, r.aligned_flagged) == (
                e["misaligned"], e["misaligned_flagged"], e["aligned"], e["aligned_flagged"]), (g, filters)
            for ts in r.templates:
                m, mf = e[(ts.template, "misaligned")], e[(ts.template, "misaligned", "flagged")]
                a, af = e[(ts.template, "aligned")], e[(ts.template, "aligned", "flagged")]
                assert (ts.coverage, ts.ffr) == (mf / m if m else None, af / a if a else None)
        if ref.method != "generate":
            assert (r.pairs, r.pairs_satisfied) == (e["pairs"], e["pairs_satisfied"]), (g, filters)
        assert (r.prompt_dimensions, r.satisfied) == (e["units"], e["units_satisfied"]), (g, filters)
    n_multi, n_trade, base = ref.trade_off()
    tr = metrics.trade_offs(store, run_id, filters)
    assert (tr.n_prompts, tr.n_trade_off) == (n_multi, n_trade)
    if n_multi:
        assert tr.rate == n_trade / n_multi and tr.baseline == pytest.approx(base)
    else:
        assert tr.rate is None and tr.reason


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), prompts=st.lists(prompt_st, min_size=1, max_size=7))
def test_rollups_equal_direct_computation(data, prompts) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = new_store(Path(tmp) / "r.db")
        try:
            runs = _build(data, prompts, store)
            for name in ("judge", "judge2", "preference", "generate"):
                for group_by in (None, "dimension", "domain", "semantic_type"):
                    _check(store, runs[name], data.draw(filters_st, label="filters"), group_by)
            counts = "SELECT * FROM rollup_counts ORDER BY 1, 2, 3, 4, 5, 6, 7"
            before = [tuple(r) for r in store.conn.execute(counts)]
            rebuild_rollups(store.conn)
            assert [tuple(r) for r in store.conn.execute(counts)] == before
        finally:
            store.close()
