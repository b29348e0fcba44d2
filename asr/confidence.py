"""Word confidences that mean something, and the verdict on a whole transcript.

A word's raw confidence is the mean posterior of its tokens over their aligned frames (`asr.alignment`).
A CTC model is sure of itself far more often than it is right, so raw values are not probabilities.
`fit` learns Platt scaling on a dev set: p(correct) = sigmoid(a * logit(raw) + b), fitted by maximum
likelihood to whether each hypothesis word is aligned to an equal reference word. Two parameters cannot
overfit a few thousand dev words, and unlike binning they keep the order of the raw confidences.

The calibrated confidences then judge a transcript (`judge`). Their mean over a stretch of audio is the
share of its words expected to be right, so:

* a stretch whose mean is below `reject_below` is taken as not speech (noise, music, a language the model
  never heard) and gives no words rather than confident nonsense;
* a transcript whose mean is below `warn_below` is kept but marked probably wrong.

`reject_below` is set on dev (`fit`): below the confidence of the least confident dev utterance, so that
real speech like the dev set's is never dropped. The settings live in the checkpoint's metadata
(`confidence`), written by `asr calibrate`.
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
    reject_below: float = 0.0  # a stretch of audio whose mean calibrated word confidence is lower gives no words
    warn_below: float = WARN_BELOW

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
        return cls(**{k: c[k] for k in ("a", "b", "reject_below", "warn_below") if k in c}) if c else None


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


def fit(per_utterance: list[tuple[list[float], list[bool]]]) -> tuple[Calibration, dict]:
    """Calibration from dev: each utterance's raw word confidences and whether each word was right.

    -> (calibration, report: words, utterances, accuracy, ECE before and after, the thresholds).
    """
    raw = np.array([c for confs, _ in per_utterance for c in confs])
    correct = np.array([o for _, outcomes in per_utterance for o in outcomes])
    if len(raw) < 20 or correct.all() or not correct.any():
        raise ValueError(f"calibration needs at least 20 dev words, some right and some wrong; got {len(raw)} "
                         f"words, {int(correct.sum())} right")
    a, b = fit_platt(raw, correct)
    calibration = Calibration(a, b)
    means = [float(np.mean(calibration(np.array(confs)))) for confs, _ in per_utterance if confs]
    # Half the least confident dev utterance's mean: real speech like dev's stays well clear of it.
    calibration = Calibration(a, b, reject_below=round(0.5 * min(means), 4))
    report = {"words": int(len(raw)), "utterances": len(per_utterance), "accuracy": round(float(correct.mean()), 4),
              "ece_before": round(expected_calibration_error(raw, correct), 4),
              "ece_after": round(expected_calibration_error(calibration(raw), correct), 4),
              "least_confident_utterance": round(min(means), 4), **calibration.to_dict()}
    return calibration, report


def judge(word_confidences: list[float], calibration: Calibration | None,
          calibrated: bool = False) -> tuple[str, float | None]:
    """A stretch of audio's verdict from its word confidences (raw, or already `calibrated`) -> ("ok" |
    "probably wrong" | "not speech", the mean calibrated confidence; None when there are no words or no
    calibration)."""
    if not word_confidences or calibration is None:
        return "ok", None
    confidences = np.array(word_confidences)
    mean = float(np.mean(confidences if calibrated else calibration(confidences)))
    if mean < calibration.reject_below:
        return "not speech", mean
    return ("probably wrong" if mean < calibration.warn_below else "ok"), mean

