"""Word times and confidences from a CTC path: which frames each token occupies, grouped into words.

Word times come from the CTC alignment of the final token sequence: the best path itself for greedy,
`torchaudio.functional.forced_align` for beam search. Each token occupies the run of frames where the
path emits it; a word runs from the first frame of its first token to the end of its last token's
run. Times use the model's output frame rate (feature hop x subsampling).

Those spans are where the model decided, not where the sound is: a CTC model emits a token as a
spike of a frame or two, mostly near the start of its sound, and a bidirectional one often puts a
segment's first spike on frame 0 and its last on the final frame, in the silence around the speech.
`fit_to_speech` moves each word onto the sound it covers (`asr.segment.speech_frames`).

Dimensions: T output frames, V vocabulary (blank = 0).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from asr.text import BLANK

if TYPE_CHECKING:  # torch is imported where it is used: asr.outputs and asr.runtime use this module without it
    import torch


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float
    confidence: float  # mean posterior of the word's tokens over their aligned frames, 0..1


@dataclass
class Hypothesis:
    text: str
    tokens: list[int]
    frames: list[int]  # first output frame of each token on the alignment
    words: list[Word] = field(default_factory=list)
    score: float | None = None  # beam search's total score (acoustic + weighted LM + word scores)
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the rest of the n-best: (text, score)


def fits(tokens: list[int], frames: int) -> bool:
    """Whether a CTC path of `frames` can spell `tokens` (a repeated token needs a blank between)."""
    return len(tokens) + sum(a == b for a, b in zip(tokens, tokens[1:], strict=False)) <= frames


def align(log_probs: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """(T,) frame labels of the best CTC path that spells `tokens` (all blank when there are none)."""
    import torch

    if not tokens:
        return torch.zeros(log_probs.shape[0], dtype=torch.long)
    from asr import torchaudio_api

    labels, _ = torchaudio_api.functional().forced_align(
        log_probs.unsqueeze(0), torch.tensor([tokens], dtype=torch.int32),
        torch.tensor([log_probs.shape[0]]), torch.tensor([len(tokens)]), blank=BLANK)
    return labels[0].long()


def from_path(path: torch.Tensor, log_probs: torch.Tensor, tokenizer, frame_seconds: float) -> Hypothesis:
    """Hypothesis from a CTC path (T,) of frame labels: a token per run of equal non-blank labels,
    its span that run, its confidence the mean posterior of its label over the run."""
    import torch

    change = torch.ones_like(path, dtype=torch.bool)
    change[1:] = path[1:] != path[:-1]
    starts = change.nonzero().squeeze(1)
    ends = torch.cat([starts[1:], torch.tensor([len(path)])])
    keep = path[starts] != BLANK
    starts, ends = starts[keep].tolist(), ends[keep].tolist()
    tokens = path[starts].tolist() if starts else []
    probs = log_probs.gather(1, path.unsqueeze(1)).squeeze(1).exp()  # (T,) posterior of the path's label
    confs = [float(probs[s:e].mean()) for s, e in zip(starts, ends, strict=True)]
    text = tokenizer.decode(tokens)
    words = _words(tokens, list(zip(starts, ends, strict=True)), confs, tokenizer, frame_seconds)
    return Hypothesis(text, tokens, starts, words)


def _words(tokens, spans, confs, tokenizer, frame_seconds) -> list[Word]:
    """Group tokens into words at word boundaries: a space token, or a BPE piece starting with '▁'."""
    words: list[Word] = []
    current: list[int] = []

    def flush():
        if current:
            text = tokenizer.decode([tokens[j] for j in current]).strip()
            if text:
                conf = sum(confs[j] for j in current) / len(current)
                start, end = spans[current[0]][0] * frame_seconds, spans[current[-1]][1] * frame_seconds
                words.append(Word(text, round(start, 3), round(end, 3), round(conf, 4)))
            current.clear()

    for j, tok in enumerate(tokens):
        piece = tokenizer.tokens[tok]
        if piece == " ":
            flush()
            continue
        if piece.startswith("\u2581"):
            flush()
        current.append(j)
    flush()
    return words


def fit_to_speech(words: list[Word], emitted: list[int], speech: np.ndarray, frame_seconds: float) -> list[Word]:
    """`words` (times from the CTC path) moved onto the sound they cover. `emitted`: the first frame of
    every token the path emits, word separators included (`Hypothesis.frames`); `speech` (T,): which
    frames hold sound (`asr.segment.speech_frames`).

    A word starts with the stretch of sound that holds its first token on sound (tokens on silence,
    such as a first spike on frame 0, say nothing about where it is) and reaches back through sound to
    the previous word's end; it ends at its last sound frame, or on through sound up to the next token
    the path emits (in a character model the space after a word marks its end well), the last word to
    the end. A word with no token on sound takes the last stretch of sound between the previous word
    and itself (a last spike put on the final frame), else the last before the next token. Without
    sound anywhere near (a noise the model took for a word), its times stay as the path has them.
    """
    n, result, prev_end = len(speech), [], 0
    frames = sorted(f for f in emitted if f < n)
    for i, w in enumerate(words):
        s = min(max(round(w.start / frame_seconds), prev_end), n)
        e = min(max(round(w.end / frame_seconds), s + 1), n)
        first, k = bisect.bisect_left(frames, s), bisect.bisect_left(frames, e)
        limit = frames[k] if k < len(frames) and i + 1 < len(words) else n
        span = _place(speech, frames[first:k], s, e, prev_end, limit)
        if span is None:
            result.append(w)
            prev_end = max(prev_end, e)
            continue
        result.append(replace(w, start=round(span[0] * frame_seconds, 3), end=round(span[1] * frame_seconds, 3)))
        prev_end = span[1]
    return result


def _place(speech: np.ndarray, tokens: list[int], s: int, e: int, lo: int, hi: int) -> tuple[int, int] | None:
    """Frames [start, end) of the sound of a word whose tokens start on frames `tokens` within [s, e),
    kept within [lo, hi): see `fit_to_speech`. None when no sound is near."""
    voiced = [f for f in tokens if speech[f]]
    if voiced:
        s = voiced[0]
        e = s + 1 + int(np.flatnonzero(speech[s:e])[-1])
        while s > lo and speech[s - 1]:
            s -= 1
        while e < hi and speech[e]:
            e += 1
        return s, e
    run = _runs(speech, lo, s)[-1:] or _runs(speech, e, hi)[-1:]
    return run[0] if run else None


def _runs(speech: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
    """The stretches [a, b) of consecutive sound frames within [lo, hi), in order."""
    if hi <= lo:
        return []
    edges = np.diff(np.concatenate([[0], speech[lo:hi].astype(np.int8), [0]]))
    return [(lo + int(a), lo + int(b)) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1),
                                                        strict=True)]
