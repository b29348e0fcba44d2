"""Word and character error rates with their substitutions, deletions and insertions.

Both sides pass through the same `normalize_text` before alignment, so case and punctuation never
count as errors. Alignment is jiwer's (Levenshtein with backtrace).
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass

from asr.text import normalize_text


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
        """Errors per reference unit; with no reference at all, 1.0 if anything was inserted, else 0.0."""
        if self.ref_len == 0:
            return float(self.errors > 0)
        return self.errors / self.ref_len

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
