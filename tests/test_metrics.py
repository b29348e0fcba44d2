import random

import jiwer
import numpy as np
import pytest

from asr.metrics import ErrorCounts, align_words, bootstrap_ci, bootstrap_rates, char_errors, score, word_errors
from asr.text import normalize_text


@pytest.mark.parametrize(
    ("ref", "hyp", "sub", "dele", "ins"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 0, 0, 0),
        ("the cat sat on the mat", "the cat sit on the mat", 1, 0, 0),
        ("the cat sat on the mat", "the cat on the mat", 0, 1, 0),
        ("the cat sat", "the big cat sat down", 0, 0, 2),
        ("a b c d", "a x c", 1, 1, 0),
        ("one two three", "four five six", 3, 0, 0),
        ("one two three", "one one two two three", 0, 0, 2),
        ("go left now", "go", 0, 2, 0),
    ],
)
def test_word_errors(ref, hyp, sub, dele, ins):
    counts = word_errors(ref, hyp)
    assert (counts.substitutions, counts.deletions, counts.insertions) == (sub, dele, ins)
    assert counts.ref_len == len(ref.split())
    assert counts.errors == sub + dele + ins
    assert counts.rate == pytest.approx((sub + dele + ins) / len(ref.split()))


@pytest.mark.parametrize(
    ("ref", "hyp", "sub", "dele", "ins"),
    [
        ("abc", "abc", 0, 0, 0),
        ("abc", "abd", 1, 0, 0),
        ("hello world", "helo world", 0, 1, 0),
        ("ab cd", "abcd", 0, 1, 0),  # the space counts
        ("abcd", "ab cd", 0, 0, 1),
        ("cat", "cats", 0, 0, 1),
        ("kitten", "sitting", 2, 0, 1),
    ],
)
def test_char_errors(ref, hyp, sub, dele, ins):
    counts = char_errors(ref, hyp)
    assert (counts.substitutions, counts.deletions, counts.insertions) == (sub, dele, ins)
    assert counts.ref_len == len(ref)


def test_char_errors_do_not_confuse_a_space_with_angle_brackets():
    # Spaces are escaped for jiwer; the escape must not collide with real characters.
    counts = char_errors("a<sp>b", "a b")
    assert counts.ref_len == 6
    assert counts.errors == 4  # "<sp>" (4 characters) -> " " (1): one substitution, three deletions


def test_case_and_punctuation_are_not_errors():
    assert word_errors("Hello, World!", "hello world").errors == 0
    assert word_errors("\u201cDon\u2019t\u201d -- stop.", "don't stop").errors == 0
    assert char_errors("Hello, World!", "HELLO   WORLD").errors == 0
    assert word_errors("Caf\u00e9 au lait", "cafe au lait").errors == 0
    assert word_errors("Hello, World!", "hello world").ref_len == 2
    assert char_errors("Hello, World!", "hello world").ref_len == len("hello world")


def test_empty_reference_and_hypothesis():
    assert word_errors("", "") == ErrorCounts(0, 0, 0, 0)
    assert word_errors("", "").rate == 0.0
    assert word_errors("...", "") == ErrorCounts(0, 0, 0, 0)  # nothing left after normalisation
    assert char_errors("", "") == ErrorCounts(0, 0, 0, 0)


def test_empty_reference():
    counts = word_errors("", "two words")
    assert counts == ErrorCounts(0, 0, 2, 0)
    assert counts.rate == 1.0
    assert char_errors("", "ab") == ErrorCounts(0, 0, 2, 0)


def test_empty_hypothesis():
    counts = word_errors("three short words", "")
    assert counts == ErrorCounts(0, 3, 0, 3)
    assert counts.rate == 1.0
    assert char_errors("ab c", "?") == ErrorCounts(0, 4, 0, 4)


def test_error_counts_add():
    total = ErrorCounts(1, 2, 3, 10) + ErrorCounts(4, 0, 1, 5)
    assert total == ErrorCounts(5, 2, 4, 15)
    assert total.errors == 11
    assert total.rate == pytest.approx(11 / 15)


def test_score_sums_errors_over_utterances():
    refs = ["wrong", "one two three four five six seven eight nine", "a b c"]
    hyps = ["right", "one two three four five six seven eight nine", "a b c d e"]
    s = score(refs, hyps)
    assert s.utterances == 3
    assert s.ref_words == 1 + 9 + 3
    assert (s.substitutions, s.deletions, s.insertions) == (1, 0, 2)
    assert s.wer == pytest.approx(3 / 13)  # not the mean of the per-utterance rates
    chars = [char_errors(r, h) for r, h in zip(refs, hyps, strict=True)]
    assert s.ref_chars == sum(c.ref_len for c in chars)
    assert s.cer == pytest.approx(sum(c.errors for c in chars) / s.ref_chars)
    d = s.to_dict()
    assert d["wer"] == s.wer and d["utterances"] == 3
    assert set(d) == {"wer", "cer", "substitutions", "deletions", "insertions", "ref_words", "ref_chars",
                      "utterances"}


def test_score_with_empty_utterances():
    s = score(["", "a b"], ["x", "a b"])
    assert (s.insertions, s.ref_words) == (1, 2)
    assert s.wer == pytest.approx(0.5)


def test_score_of_nothing():
    s = score([], [])
    assert (s.wer, s.cer, s.utterances) == (0.0, 0.0, 0)


def test_score_needs_one_hypothesis_per_reference():
    with pytest.raises(ValueError):
        score(["a", "b"], ["a"])


def _random_pairs(n: int, seed: int = 0):
    rng = random.Random(seed)
    words = ["a", "the", "cat", "sat", "on", "mat", "dog", "ran", "up", "hill"]
    for _ in range(n):
        ref = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        hyp = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        yield ref, hyp


@pytest.mark.parametrize(("ref", "hyp"), list(_random_pairs(30)))
def test_agrees_with_jiwer(ref, hyp):
    assert word_errors(ref, hyp).rate == pytest.approx(jiwer.wer(ref, hyp))
    assert char_errors(ref, hyp).rate == pytest.approx(jiwer.cer(ref, hyp))


def test_corpus_wer_agrees_with_jiwer():
    refs, hyps = map(list, zip(*_random_pairs(20, seed=1), strict=True))
    s = score(refs, hyps)
    assert s.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert s.cer == pytest.approx(jiwer.cer(refs, hyps))


@pytest.mark.parametrize(("ref", "hyp"), [*_random_pairs(20, seed=2), ("", "a b"), ("a b", ""), ("", ""),
                                          ("Hello, World!", "hello there world")])
def test_alignment_rebuilds_both_sides_and_agrees_with_the_counts(ref, hyp):
    counts, chunks = align_words(ref, hyp)
    assert [w for c in chunks for w in c["ref"]] == normalize_text(ref).split()
    assert [w for c in chunks for w in c["hyp"]] == normalize_text(hyp).split()
    assert counts == word_errors(ref, hyp)
    ops = {op: [c for c in chunks if c["op"] == op] for op in ("equal", "substitute", "delete", "insert")}
    assert all(c["ref"] == c["hyp"] for c in ops["equal"])
    assert all(len(c["ref"]) == len(c["hyp"]) for c in ops["substitute"])
    assert sum(len(c["ref"]) for c in ops["substitute"]) == counts.substitutions
    assert sum(len(c["ref"]) for c in ops["delete"]) == counts.deletions and not any(c["hyp"] for c in ops["delete"])
    assert sum(len(c["hyp"]) for c in ops["insert"]) == counts.insertions and not any(c["ref"] for c in ops["insert"])


def test_alignment_chunks():
    _, chunks = align_words("a b c d", "a x c")
    assert chunks == [{"op": "equal", "ref": ["a"], "hyp": ["a"]}, {"op": "substitute", "ref": ["b"], "hyp": ["x"]},
                      {"op": "equal", "ref": ["c"], "hyp": ["c"]}, {"op": "delete", "ref": ["d"], "hyp": []}]


def _utterance_counts(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref_len = rng.integers(3, 15, n)
    return rng.binomial(ref_len, 0.2), ref_len


def test_bootstrap_ci_contains_the_wer_and_narrows_with_more_utterances():
    errors, ref_len = _utterance_counts(50)
    wer = errors.sum() / ref_len.sum()
    low, high = bootstrap_ci(errors, ref_len)
    assert low < wer < high
    more_errors, more_ref = _utterance_counts(2000)
    low2, high2 = bootstrap_ci(more_errors, more_ref)
    assert low2 < more_errors.sum() / more_ref.sum() < high2
    assert high2 - low2 < (high - low) / 3  # the width shrinks like 1 / sqrt(utterances)


def test_bootstrap_is_deterministic_with_the_seed():
    errors, ref_len = _utterance_counts(30)
    assert bootstrap_ci(errors, ref_len, seed=3) == bootstrap_ci(errors, ref_len, seed=3)
    assert bootstrap_ci(errors, ref_len, seed=3) != bootstrap_ci(errors, ref_len, seed=4)
    assert bootstrap_rates(errors, ref_len, resamples=7).shape == (7,)


def test_bootstrap_of_several_systems_resamples_the_same_utterances():
    errors, ref_len = _utterance_counts(40)
    rates = bootstrap_rates(np.stack([errors, errors], 1), np.stack([ref_len, ref_len], 1), resamples=200)
    assert rates.shape == (200, 2) and np.array_equal(rates[:, 0], rates[:, 1])
    assert np.array_equal(rates[:, 0], bootstrap_rates(errors, ref_len, resamples=200))


def test_bootstrap_edge_cases():
    assert bootstrap_ci([], []) == (0.0, 0.0)
    assert bootstrap_ci([0, 0], [3, 4]) == (0.0, 0.0)
    assert bootstrap_ci([2], [0]) == (1.0, 1.0)  # insertions with no reference words, as ErrorCounts.rate
