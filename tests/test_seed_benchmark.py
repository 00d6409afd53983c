"""The embedded seed benchmark: loaded by init, structurally sound, with the coverage issue 3 asks for."""

from __future__ import annotations

import json

from misalign_tui.core.benchmark_checks import MIN_PROMPTS_PER_DOMAIN


def test_init_loads_seed_and_check_passes(cli_run) -> None:
    res = cli_run("init", "--no-model")
    assert res.exit_code == 0, res.output
    listing = json.loads(cli_run("benchmark", "list", "--format", "json").stdout)
    seed = next(b for b in listing if b["name"] == "misalign-seed")
    assert seed["prompts"] >= 333 and len(seed["hash"]) == 64
    check = cli_run("benchmark", "check", "misalign-seed")
    assert check.exit_code == 0, check.stdout
    stats = json.loads(cli_run("benchmark", "stats", "misalign-seed", "--format", "json").stdout)
    assert len(stats["per_domain"]) == 111
    assert min(d["prompts"] for d in stats["per_domain"]) >= MIN_PROMPTS_PER_DOMAIN
    assert stats["missing_pairs"] == 0
    assert stats["multi_dimension_prompts"] >= 0.4 * stats["prompts"]
    assert min(stats["semantic_types"].values()) >= 0.25 * stats["prompts"]
    # init twice keeps one copy with the same hash
    cli_run("init", "--no-model")
    again = json.loads(cli_run("benchmark", "list", "--format", "json").stdout)
    assert [b["hash"] for b in again if b["name"] == "misalign-seed"] == [seed["hash"]]
