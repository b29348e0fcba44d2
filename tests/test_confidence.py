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


# --- the English model on audio that holds no speech, and on speech --------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def english():
    from asr.catalog import models_dir
    from asr.transcribe import Transcriber

    if not (models_dir() / "english" / "model.pt").is_file():
        pytest.skip("the English model is not bundled")
    return Transcriber.load("english")


def test_the_english_model_is_calibrated(english):
    report = english.metadata["confidence"]
    assert report["ece_after"] < report["ece_before"] / 3
    assert english.calibration is not None and english.calibration.reject_rate_below > 0


def test_no_words_for_noise_music_or_silence(english, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("nonspeech", REPO / "recipes" / "english" / "nonspeech.py")
    nonspeech = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nonspeech)
    rows = nonspeech.write(tmp_path, count=2, seed=1)  # MODEL.md's measurement used seed 0
    heard = {r["id"]: english.transcribe(tmp_path / r["audio"]).text for r in rows}
    assert {k: v for k, v in heard.items() if v} == {}


def test_music_that_yields_words_is_judged_not_speech_and_says_so(english, tmp_path):
    import json
    import subprocess
    import sys

    import soundfile

    from asr.confidence import judge

    rng = np.random.default_rng(3)
    t = np.arange(5 * 16000) / 16000
    notes = np.concatenate([np.sin(2 * np.pi * f * t[:4000]) * np.exp(-3 * t[:4000]) for f in
                            rng.choice([220, 247, 262, 294, 330, 349, 392, 440], size=20)])
    soundfile.write(tmp_path / "tune.wav", 0.2 * notes, 16000)
    raw = english.calibration  # the words the model finds in it, before the verdict
    english.calibration = None
    try:
        found = english.transcribe(tmp_path / "tune.wav")
    finally:
        english.calibration = raw
    if found.words:  # the verdict, not the lexicon, keeps these out
        seconds = len(notes) / 16000
        assert judge([w.confidence for w in found.words], raw, seconds)[0] == "not speech"
    proc = subprocess.run([sys.executable, "-m", "asr", "transcribe", tmp_path / "tune.wav", "--format", "json",
                           "--output-dir", tmp_path], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "tune.json").read_text())
    assert result["text"] == "" and result["words"] == []
    if found.words:
        assert "no speech recognised" in result["warning"] and "warning: " in proc.stderr


def test_real_speech_keeps_its_words_with_calibrated_confidences(english, shared_data):
    sample = shared_data / "librispeech-sample" / "LibriSpeech" / "test-clean" / "1089" / "134686"
    if not sample.is_dir():
        pytest.skip("LibriSpeech sample not found")
    for flac in sorted(sample.glob("*.flac")) + [REPO / "examples" / "english-dev-example.wav"]:
        result = english.transcribe(flac)
        assert len(result.words) >= 5, flac
        assert all(0 <= w.confidence <= 1 for w in result.words)
        assert result.warning is None or result.warning.startswith("probably wrong")
