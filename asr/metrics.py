"""Word and character error rates with their substitutions, deletions and insertions.

Both sides pass through the same `normalize_text` before alignment, so case and punctuation never
count as errors. Alignment is jiwer's (Levenshtein with backtrace).

`align_words` also returns that alignment as a list of chunks, each
``{"op": "equal" | "substitute" | "delete" | "insert", "ref": [words], "hyp": [words]}``: joining the
chunks' "ref" words gives the normalised reference, their "hyp" words the normalised hypothesis; a
"substitute" chunk pairs its words one to one, "delete" has no "hyp" words and "insert" no "ref" words.

`bootstrap_rates` resamples utterances with replacement (Efron's bootstrap) to give the spread of a
corpus error rate, for a confidence interval of one system or a paired comparison of several.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass

import numpy as np

from asr.text import normalize_text


def error_rate(errors: int, ref_len: int) -> float:
    """Errors per reference unit; with no reference at all, 1.0 if anything was inserted, else 0.0."""
    if ref_len == 0:
        return float(errors > 0)
    return errors / ref_len


@dataclass
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return error_rate(self.errors, self.ref_len)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    return _errors(normalize_text(reference).split(), normalize_text(hypothesis).split())


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Character errors over the normalised strings, spaces included (as in most CER reports)."""
    return _errors(list(normalize_text(reference)), list(normalize_text(hypothesis)))


def _errors(ref: list[str], hyp: list[str]) -> ErrorCounts:
    if not ref or not hyp:  # jiwer needs a non-empty sequence on each side
        return ErrorCounts(0, len(ref), len(hyp), len(ref))
    import jiwer

    # jiwer aligns lists of words; joining units with spaces works for characters too
    # because normalised characters never contain a space of their own except " " itself.
    ref_s, hyp_s = " ".join(_escape(ref)), " ".join(_escape(hyp))
    out = jiwer.process_words(ref_s, hyp_s)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(ref))


def align_words(reference: str, hypothesis: str) -> tuple[ErrorCounts, list[dict]]:
    """-> (word errors, alignment chunks as described in the module docstring)."""
    ref, hyp = normalize_text(reference).split(), normalize_text(hypothesis).split()
    if not ref or not hyp:  # jiwer needs a non-empty sequence on each side
        chunks = [{"op": "delete", "ref": ref, "hyp": []}] if ref else []
        chunks += [{"op": "insert", "ref": [], "hyp": hyp}] if hyp else []
        return ErrorCounts(0, len(ref), len(hyp), len(ref)), chunks
    import jiwer

    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    ref, hyp = out.references[0], out.hypotheses[0]
    chunks = [{"op": c.type, "ref": ref[c.ref_start_idx:c.ref_end_idx], "hyp": hyp[c.hyp_start_idx:c.hyp_end_idx]}
              for c in out.alignments[0]]
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(ref)), chunks


def _escape(units: list[str]) -> list[str]:
    return ["<sp>" if u == " " else u for u in units]


@dataclass
class ScoreSummary:
    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    ref_chars: int
    utterances: int

    def to_dict(self) -> dict:
        return asdict(self)


def score(references: list[str], hypotheses: list[str]) -> ScoreSummary:
    """Corpus-level WER and CER (errors summed over utterances, divided by reference length)."""
    words, chars = ErrorCounts(), ErrorCounts()
    for ref, hyp in zip(references, hypotheses, strict=True):
        words += word_errors(ref, hyp)
        chars += char_errors(ref, hyp)
    return ScoreSummary(
        wer=words.rate, cer=chars.rate,
        substitutions=words.substitutions, deletions=words.deletions, insertions=words.insertions,
        ref_words=words.ref_len, ref_chars=chars.ref_len, utterances=len(references),
    )


def bootstrap_rates(errors, ref_len, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Corpus error rates of `resamples` bootstrap resamples of the utterances.

    errors, ref_len: (U,) or (U, S) per-utterance counts of U utterances for S systems. Every resample
    draws U utterance indices with replacement, the same ones for every system (a paired bootstrap),
    and its rate is the sum of errors over the sum of reference lengths, as for the whole corpus.
    -> (resamples, S) rates, or (resamples,) for 1-D input. The same seed gives the same resamples.
    """
    errors, ref_len = np.asarray(errors, dtype=np.int64), np.asarray(ref_len, dtype=np.int64)
    one_system = errors.ndim == 1
    if one_system:
        errors, ref_len = errors[:, None], ref_len[:, None]  # (U, 1)
    n = len(errors)
    if n == 0:
        rates = np.zeros((resamples, errors.shape[1]))
        return rates[:, 0] if one_system else rates
    rng = np.random.default_rng(seed)
    block = max(1, 2_000_000 // n)  # resamples drawn at a time, so memory stays bounded for large test sets
    rates = []
    for start in range(0, resamples, block):
        idx = rng.integers(0, n, size=(min(block, resamples - start), n))  # (R, U)
        e, r = errors[idx].sum(axis=1), ref_len[idx].sum(axis=1)  # (R, S)
        # as error_rate: with no reference words at all, any error is a rate of 1
        rates.append(np.where(r > 0, e / np.maximum(r, 1), (e > 0).astype(float)))
    rates = np.concatenate(rates)
    return rates[:, 0] if one_system else rates


def bootstrap_ci(errors, ref_len, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the corpus error rate."""
    rates = bootstrap_rates(errors, ref_len, resamples, seed)
    low, high = np.percentile(rates, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)
