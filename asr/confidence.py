"""Word confidences that mean something, and the verdict on a whole transcript.

A word's raw confidence is the mean posterior of its tokens over their aligned frames (`asr.alignment`).
A CTC model is sure of itself far more often than it is right, so raw values are not probabilities.
`fit` learns Platt scaling on a dev set: p(correct) = sigmoid(a * logit(raw) + b), fitted by maximum
likelihood to whether each hypothesis word is aligned to an equal reference word. Two parameters cannot
overfit a few thousand dev words, and unlike binning they keep the order of the raw confidences.

The calibrated confidences then judge a transcript (`judge`). A calibrated confidence is the chance
that the word is right, so their sum over a stretch of audio is the number of words expected right in
it, and their mean the share:

* a stretch of audio (a segment cut at pauses) that yields fewer than `reject_rate_below` words expected
  right per second is taken as not speech (music, noise, a language the model never heard) and gives no
  words rather than confident nonsense. Speech gives words at 2-3 a second, most of them right; a model
  hearing music finds a word or two in several seconds, and is unsure of them;
* a transcript whose mean is below `warn_below` is kept but marked probably wrong.

`reject_rate_below` is set on dev (`fit`): the 1st percentile of the dev utterances' rates, so that 1 %
of real speech like the dev set's, the stretches the model is least sure of, would be dropped. The
settings live in the checkpoint's metadata (`confidence`), written by `asr calibrate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-4
ECE_BINS = 10
WARN_BELOW = 0.5  # fewer than half the words expected right: "probably wrong"


@dataclass(frozen=True)
class Calibration:
    a: float = 1.0
    b: float = 0.0
    reject_rate_below: float = 0.0  # words expected right per second under which a stretch gives no words
    warn_below: float = WARN_BELOW  # mean calibrated confidence under which a transcript is "probably wrong"

    def __call__(self, raw: np.ndarray | float) -> np.ndarray | float:
        x = np.clip(np.asarray(raw, dtype=np.float64), _EPS, 1 - _EPS)
        p = 1 / (1 + np.exp(-(self.a * np.log(x / (1 - x)) + self.b)))
        return float(p) if np.ndim(p) == 0 else p

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: dict) -> Calibration | None:
        """The checkpoint's stored calibration, or None for a model never calibrated."""
        c = metadata.get("confidence")
        return cls(**{k: c[k] for k in ("a", "b", "reject_rate_below", "warn_below") if k in c}) if c else None


def word_outcomes(reference: str, hypothesis_words: list[str]) -> list[bool] | None:
    """Whether each hypothesis word is aligned to an equal reference word; None when the hypothesis's
    words do not match its normalised text one to one (nothing to attribute)."""
    from asr.metrics import align_words

    _, chunks = align_words(reference, " ".join(hypothesis_words))
    outcomes = [op == "equal" for c in chunks for op in [c["op"]] for _ in c["hyp"]]
    return outcomes if len(outcomes) == len(hypothesis_words) else None


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    confidences, correct = np.asarray(confidences, float), np.asarray(correct, float)
    if not len(confidences):
        return float("nan")
    which = np.minimum((confidences * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        inside = which == k
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidences[inside].mean())
    return float(total / len(confidences))


def fit_platt(raw: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(a, b) maximising the likelihood of `correct` under sigmoid(a * logit(raw) + b)."""
    from scipy.optimize import minimize

    x = np.log(np.clip(raw, _EPS, 1 - _EPS) / (1 - np.clip(raw, _EPS, 1 - _EPS)))
    y = np.asarray(correct, float)

    def nll(params):
        z = params[0] * x + params[1]
        # log(1 + e^z) - y z, and its gradient, computed stably
        loss = np.logaddexp(0, z) - y * z
        g = 1 / (1 + np.exp(-z)) - y
        return loss.mean(), np.array([(g * x).mean(), g.mean()])

    result = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


REJECT_PERCENTILE = 1.0  # of the dev utterances' rates of words expected right per second


def fit(per_utterance: list[tuple[list[float], list[bool], float]]) -> tuple[Calibration, dict]:
    """Calibration from dev: each utterance's raw word confidences, whether each word was right, and its
    duration in seconds.

    -> (calibration, report: words, utterances, accuracy, ECE before and after, the thresholds).
    """
    raw = np.array([c for confs, _, _ in per_utterance for c in confs])
    correct = np.array([o for _, outcomes, _ in per_utterance for o in outcomes])
    if len(raw) < 20 or correct.all() or not correct.any():
        raise ValueError(f"calibration needs at least 20 dev words, some right and some wrong; got {len(raw)} "
                         f"words, {int(correct.sum())} right")
    a, b = fit_platt(raw, correct)
    calibration = Calibration(a, b)
    rates = [expected_right_per_second(confs, calibration, seconds) for confs, _, seconds in per_utterance if confs]
    calibration = Calibration(a, b, reject_rate_below=round(float(np.percentile(rates, REJECT_PERCENTILE)), 4))
    report = {"words": int(len(raw)), "utterances": len(per_utterance), "accuracy": round(float(correct.mean()), 4),
              "ece_before": round(expected_calibration_error(raw, correct), 4),
              "ece_after": round(expected_calibration_error(calibration(raw), correct), 4),
              "lowest_rate": round(min(rates), 4), **calibration.to_dict()}
    return calibration, report


def expected_right_per_second(raw_confidences: list[float], calibration: Calibration, seconds: float) -> float:
    return float(np.sum(calibration(np.array(raw_confidences)))) / max(seconds, 1e-3)


def judge(word_confidences: list[float], calibration: Calibration | None, seconds: float | None = None,
          calibrated: bool = False) -> tuple[str, float | None]:
    """The verdict on `seconds` of audio (None: no rate test) from its word confidences (raw, or already
    `calibrated`) -> ("ok" | "probably wrong" | "not speech", the mean calibrated confidence; None when
    there are no words or no calibration)."""
    if not word_confidences or calibration is None:
        return "ok", None
    confidences = np.array(word_confidences) if calibrated else calibration(np.array(word_confidences))
    mean = float(np.mean(confidences))
    if seconds is not None and float(np.sum(confidences)) / max(seconds, 1e-3) < calibration.reject_rate_below:
        return "not speech", mean
    return ("probably wrong" if mean < calibration.warn_below else "ok"), mean

