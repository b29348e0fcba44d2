"""Calibrated word confidences and the verdict on a transcript (asr/confidence.py)."""

import numpy as np
import pytest

from asr.confidence import Calibration, expected_calibration_error, fit, judge, word_outcomes


def _overconfident(n: int = 4000, seed: int = 0):
    """Words whose raw confidence says 0.9-1.0 while the true chance of being right is lower."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.3, 0.99, n)
    raw = 1 - (1 - truth) ** 3  # squashed towards 1, as a CTC model's posteriors are
    correct = rng.uniform(size=n) < truth
    return raw, correct


def test_ece_of_perfect_and_of_overconfident_scores():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20000)
    assert expected_calibration_error(p, rng.uniform(size=20000) < p) < 0.02
    raw, correct = _overconfident()
    assert expected_calibration_error(raw, correct) > 0.1


def test_platt_fit_brings_the_error_down():
    raw, correct = _overconfident()
    per_utterance = [(raw[i:i + 10].tolist(), correct[i:i + 10].tolist(), 4.0) for i in range(0, len(raw), 10)]
    calibration, report = fit(per_utterance)
    assert report["ece_before"] > 0.1 and report["ece_after"] < 0.03
    assert report["words"] == len(raw) and report["accuracy"] == pytest.approx(correct.mean(), abs=1e-3)
    order = np.argsort(raw)  # monotone: calibration keeps the order of the raw confidences
    assert np.all(np.diff(calibration(raw[order])) >= 0)
    assert report["lowest_rate"] <= calibration.reject_rate_below < 2.5  # 10 words in 4 s, most of them right


def test_fit_refuses_what_it_cannot_learn_from():
    with pytest.raises(ValueError, match="at least 20 dev words"):
        fit([([0.9, 0.8], [True, False], 1.0)])
    with pytest.raises(ValueError, match="some right and some wrong"):
        fit([([0.9] * 30, [True] * 30, 10.0)])


def test_judge():
    identity = Calibration(1.0, 0.0, reject_rate_below=0.2, warn_below=0.5)
    assert judge([0.9, 0.95], identity, seconds=1.0) == ("ok", pytest.approx(0.925))
    assert judge([0.4, 0.45], identity, seconds=1.0)[0] == "probably wrong"
    assert judge([0.3, 0.3], identity, seconds=4.0)[0] == "not speech"  # 0.6 words expected right in 4 s
    assert judge([0.3, 0.3], identity)[0] == "probably wrong"  # no duration: no rate test
    assert judge([0.9], identity, seconds=1.5)[0] == "ok"  # one sure word, as "yes" is
    assert judge([], identity) == ("ok", None)
    assert judge([0.1], None) == ("ok", None)  # an uncalibrated model judges nothing


def test_calibration_round_trips_through_metadata():
    c = Calibration(0.5, 1.2, 0.2, 0.5)
    assert Calibration.from_metadata({"confidence": {**c.to_dict(), "ece_before": 0.1}}) == c
    assert Calibration.from_metadata({}) is None


def test_word_outcomes():
    assert word_outcomes("the cat sat on the mat", ["the", "cat", "sad", "on", "a", "mat"]) == \
        [True, True, False, True, False, True]
    assert word_outcomes("the cat", ["the", "cat", "cat"]) == [True, True, False]  # an insertion is wrong
    assert word_outcomes("the cat", []) == []
