"""Cohen's κ and Krippendorff's α against cases computed by hand (in the comments), with ties, missing ratings
and a single category; the reviewers' majority; the bootstrap interval over prompts."""

from __future__ import annotations

import pytest

from misalign_tui.core.metrics.agreement import (
    cohen_kappa,
    krippendorff_alpha,
    majority,
    paired_agreement,
    rater_agreement,
)


def test_kappa_equal_marginals() -> None:
    # 10 units: agree on 8 (4 a/a, 4 m/m); each rater says a 5 times → p_o = .8, p_e = .5·.5 + .5·.5 = .5,
    # κ = (.8 − .5) / (1 − .5) = 0.6
    assert cohen_kappa(list(zip("aaaaammmmm", "aaaammmmma", strict=True))) == pytest.approx(0.6)


def test_kappa_unequal_marginals() -> None:
    # yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 35/50 = .7; rater 1 yes 25/50, rater 2 yes 30/50 →
    # p_e = .5·.6 + .5·.4 = .5, κ = (.7 − .5) / .5 = 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_kappa_below_chance_and_perfect() -> None:
    # always opposite with balanced marginals: p_o = 0, p_e = .5 → κ = −1; always equal: κ = 1
    assert cohen_kappa([("a", "m"), ("m", "a")] * 3) == pytest.approx(-1.0)
    assert cohen_kappa([("a", "a"), ("m", "m")] * 3) == pytest.approx(1.0)


def test_a_single_category_is_undefined_not_one() -> None:
    # p_e = 1 and D_e = 0: chance explains everything; the figure is n/a, never 1 or 0
    assert cohen_kappa([("a", "a")] * 5) is None
    assert krippendorff_alpha([["a", "a", "a"]] * 4) is None
    assert cohen_kappa([]) is None
    a = rater_agreement({i: {"r1": "a", "r2": "a"} for i in range(6)}, {i: i for i in range(6)})
    assert a is not None and a.value is None and a.ci is None and "one category" in a.note


def test_alpha_three_raters_by_hand() -> None:
    # units (a a a), (a a m), (m m m). Coincidences, o_ck = Σ pairs / (m_u − 1):
    # unit 1: o_aa += 3·2/2 = 3; unit 2: o_aa += 2·1/2 = 1, o_am = o_ma += 2·1/2 = 1; unit 3: o_mm += 3
    # n_a = 4 + 1 = 5, n_m = 1 + 3 = 4, n = 9; α = 1 − (n − 1)(o_am + o_ma) / (2 n_a n_m) = 1 − 8·2/40 = 0.6
    assert krippendorff_alpha([list("aaa"), list("aam"), list("mmm")]) == pytest.approx(0.6)


def test_alpha_with_missing_ratings_by_hand() -> None:
    # as above, plus (a, -, -): one value, not pairable, left out; plus (a, m, -): o_am = o_ma += 1·1/1
    # o_aa 4, o_am 2, o_ma 2, o_mm 3: n_a 6, n_m 5, n 11 → α = 1 − 10·4 / (2·6·5) = 1/3
    units = [list("aaa"), list("aam"), list("mmm"), ["a", None, None], ["a", "m", None]]
    assert krippendorff_alpha(units) == pytest.approx(1 / 3)


def test_alpha_reproduces_krippendorffs_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 observers × 12 units with missing
    # values: nominal α = 0.743
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3]
    c = [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]
    assert krippendorff_alpha(list(zip(a, b, c, d, strict=True))) == pytest.approx(0.743, abs=5e-4)


def test_alpha_of_two_raters_without_missing_is_close_to_kappa() -> None:
    # with two raters α = 1 − (n − 1) D_o / D_e differs from κ only by the small-sample factor (n − 1)/n
    pairs = list(zip("aaaaammmmm", "aaaammmmma", strict=True))
    alpha = krippendorff_alpha([list(p) for p in pairs])
    # o_am = o_ma = 2, n_a = n_m = 10, n = 20: α = 1 − 19·4 / (2·100) = 0.62
    assert alpha == pytest.approx(0.62)


def test_majority_and_its_ties() -> None:
    assert majority(["a", "a", "m"]) == "a"
    assert majority(["a", "m"]) is None          # a tie: split, no majority
    assert majority(["a", "m", "m", "a"]) is None
    assert majority(["m"]) == "m"
    assert majority([]) is None


def test_rater_agreement_picks_kappa_for_two_and_alpha_for_more() -> None:
    two = {i: {"ann": a, "bob": b} for i, (a, b) in enumerate(zip("aaaaammmmm", "aaaammmmma", strict=True))}
    k = rater_agreement(two, {i: i // 2 for i in two}, bootstrap=500)
    assert k is not None and k.statistic == "kappa" and k.value == pytest.approx(0.6)
    assert k.units == 10 and k.clusters == 5 and k.raters == 2 and k.observed == pytest.approx(0.8)
    assert k.ci is not None and k.ci[0] <= k.value <= k.ci[1]
    # a unit only one of two rated is left out of κ
    two[99] = {"ann": "a"}
    assert rater_agreement(two, {}, bootstrap=0).units == 10
    three = {0: {"x": "a", "y": "a", "z": "a"}, 1: {"x": "a", "y": "a", "z": "m"}, 2: {"x": "m", "y": "m", "z": "m"}}
    al = rater_agreement(three, {0: "p", 1: "q", 2: "r"}, bootstrap=0)
    assert al is not None and al.statistic == "alpha" and al.value == pytest.approx(0.6) and al.ci is None
    assert rater_agreement({0: {"x": "a"}}, {}) is None  # one rater: no agreement to speak of


def test_bootstrap_resamples_prompts_and_is_seeded() -> None:
    pairs = {i: ("a" if i % 3 else "m", "a" if i % 4 else "m") for i in range(40)}
    clusters = {i: i // 2 for i in pairs}
    one = paired_agreement(pairs, clusters, bootstrap=800, seed=3)
    again = paired_agreement(pairs, clusters, bootstrap=800, seed=3)
    assert one == again and one.clusters == 20 and one.units == 40
    assert one.ci is not None and one.ci[0] < one.value < one.ci[1]  # type: ignore[operator]
    # one prompt only: nothing to resample, so no interval (never a zero-width one)
    assert paired_agreement({0: ("a", "m"), 1: ("m", "m")}, {0: "p", 1: "p"}, bootstrap=100).ci is None
