"""SimHash fingerprints equal the simhash package's; the indexed dedup equals the literal rule."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simhash import Simhash

from misalign_tui.core.fingerprint import (
    dedup,
    exhaustive_dedup,
    features,
    near_duplicate_pairs,
    near_duplicates,
    near_pairs,
    simhash_value,
    simhashes,
)
from misalign_tui.devtools.dedup_benchmark import package_index_dedup, synthetic_corpus

AWKWARD_TEXTS = [
    "", " ", "a", "ab", "abc", "abcd", "abcde", "!!!", "?? ..", "x y", "A b C d",
    "Hello, World!", "İstanbul", "Straße ß ẞ", "ﬁne ligature", "中文字符测试", "中a文b", "日本語のテキスト",
    "emoji 🙂 only 🙂🙂", "tab\tand\nnewline", "under_score 123 4567", "ÅÄÖ åäö", "Ǆ ǅ ǆ", "a" * 100,
    "ab" * 120, "\u0301combining", "mixed ١٢٣ arabic digits", "Ελληνικά κείμενο", "кириллица текст",
]


def package_value(text: str, bits: int = 64) -> int | None:
    """The package's value, or None where the package itself fails (numpy overflow above 255 repeats)."""
    try:
        return Simhash(text, f=bits).value
    except OverflowError:
        return None


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
def test_fingerprints_equal_the_package_on_awkward_texts(bits: int) -> None:
    ours = simhashes(AWKWARD_TEXTS, bits)
    for text, value in zip(AWKWARD_TEXTS, ours, strict=True):
        assert int(value) == package_value(text, bits), text
        assert simhash_value(text, bits) == int(value), text


def test_fingerprints_equal_the_package_on_a_synthetic_corpus() -> None:
    texts, _ = synthetic_corpus(1500, seed=7)
    ours = simhashes(texts)
    assert [int(v) for v in ours] == [Simhash(t).value for t in texts]


def test_features_match_the_package_tokenizer() -> None:
    for text in AWKWARD_TEXTS:
        assert features(text) == Simhash("")._tokenize(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=60), max_size=12), st.sampled_from([8, 32, 64]))
def test_fingerprints_equal_the_package_on_any_text(texts: list[str], bits: int) -> None:
    ours = simhashes(texts, bits)
    assert len(ours) == len(texts)
    for text, value in zip(texts, ours, strict=True):
        expected = package_value(text, bits)
        if expected is not None:
            assert int(value) == expected


def test_a_feature_repeated_beyond_the_package_limit_still_gets_its_defined_value() -> None:
    text = "a" * 400  # the package raises OverflowError here (one 4-gram, weight 397)
    assert package_value(text) is None
    assert int(simhashes([text])[0]) == simhash_value(text) == Simhash("aaaa").value


def test_texts_too_long_for_16_bit_counters_take_the_plain_road() -> None:
    rng = random.Random(0)
    long_text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(70_000))  # > 65,536 features
    texts = ["short one", long_text, "another"]
    ours = simhashes(texts)
    assert [int(v) for v in ours] == [Simhash(t).value for t in texts]


def _clustered(draw: st.DrawFn, bits: int) -> list[int]:
    """Fingerprints in a few clusters (a centre with a few bits flipped), so many pairs fall within tau."""
    centres = draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=1, max_size=4))
    n = draw(st.integers(0, 60))
    out = []
    for _ in range(n):
        value = centres[draw(st.integers(0, len(centres) - 1))]
        for bit in draw(st.lists(st.integers(0, bits - 1), max_size=8)):
            value ^= 1 << bit
        out.append(value)
    return out


@st.composite
def fingerprint_sets(draw: st.DrawFn) -> tuple[list[int], int, int]:
    bits = draw(st.sampled_from([8, 16, 32, 64]))
    tau = draw(st.integers(0, min(bits, 20)))
    return _clustered(draw, bits), tau, bits


@settings(max_examples=300, deadline=None)
@given(fingerprint_sets(), st.sampled_from([True, False, None]))
def test_indexed_dedup_equals_the_literal_rule(case: tuple[list[int], int, int], index: bool | None) -> None:
    fps, tau, bits = case
    ours = dedup(fps, tau, bits, index=index)
    assert ours.equals(exhaustive_dedup(fps, tau))


@settings(max_examples=200, deadline=None)
@given(fingerprint_sets())
def test_near_pairs_finds_every_pair_within_tau(case: tuple[list[int], int, int]) -> None:
    fps, tau, bits = case
    i, j, d = near_pairs(fps, tau, bits, index=True)
    expected = [(a, b, bin(fps[a] ^ fps[b]).count("1")) for b in range(len(fps)) for a in range(b)
                if bin(fps[a] ^ fps[b]).count("1") <= tau]
    assert list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == expected


def test_removed_prompts_link_to_the_earliest_kept_one_not_to_a_removed_one() -> None:
    # 0 kept; 1 is within 2 of 0 -> removed; 2 is within 2 of 1 but 4 from 0 -> kept (1 was removed).
    fps = [0b0000_0000, 0b0000_0011, 0b0000_1111, 0b0000_1110]
    for index in (True, False):
        result = dedup(fps, tau=2, bits=8, index=index)
        assert result.kept.tolist() == [True, False, True, False]
        assert result.link.tolist() == [-1, 0, -1, 2]
        assert result.distance.tolist() == [-1, 2, -1, 1]


def test_dedup_of_a_corpus_equals_exhaustive_and_finds_planted_duplicates() -> None:
    texts, planted = synthetic_corpus(6000, seed=3)
    fps = simhashes(texts)
    result = dedup(fps, 10, index=True)
    assert result.equals(exhaustive_dedup(fps, 10))
    assert (~result.kept[planted]).mean() > 0.5  # most planted copies are caught at tau = 10


def test_near_duplicates_reports_kept_removed_and_distance() -> None:
    texts = ["How should I greet my neighbour at the festival this year?",
             "Write a poem about the sea and the wind in autumn.",
             "How should I greet my neighbour at the festival this year?!",
             "How could I greet my neighbour at the festival this year?"]
    found = near_duplicates(texts, tau=10)
    assert [(k, r) for k, r, _ in found] == [(0, 2), (0, 3)]
    assert found[0][2] == 0


def test_package_index_applies_the_same_rule() -> None:
    texts, _ = synthetic_corpus(400, seed=5)
    link, _, _, _ = package_index_dedup(texts, 10, 64)
    assert np.array_equal(link, dedup(simhashes(texts), 10).link)


def test_package_warnings_stay_off_the_terminal(capsys: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    from simhash import SimhashIndex

    import misalign_tui.core.fingerprint  # noqa: F401 - importing it routes the package's logger

    index = SimhashIndex([(str(i), Simhash(i << 8)) for i in range(250)], k=10)  # one bucket of 250
    with caplog.at_level(logging.DEBUG):
        assert index.get_near_dups(Simhash(0))
    captured = capsys.readouterr()
    assert "Big bucket" not in captured.err + captured.out
    assert not [r for r in caplog.records if r.name == "simhash"]  # never reaches the root logger


def test_near_duplicate_pairs_equals_the_all_pairs_loop() -> None:
    texts, _ = synthetic_corpus(300, seed=11)
    texts += texts[:20]  # exact copies too
    fps = [Simhash(t).value for t in texts]
    expected = [(i, j, bin(fps[i] ^ fps[j]).count("1")) for i in range(len(fps)) for j in range(i + 1, len(fps))
                if bin(fps[i] ^ fps[j]).count("1") <= 10]
    assert near_duplicate_pairs(texts, 10) == expected
    assert len(expected) >= 20
