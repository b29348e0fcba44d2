"""Word times and confidences from a CTC path: which frames each token occupies, grouped into words.

Word times come from the CTC alignment of the final token sequence: the best path itself for greedy,
`torchaudio.functional.forced_align` for beam search. Each token occupies the run of frames where the
path emits it; a word runs from the first frame of its first token to the end of its last token's
run. Times use the model's output frame rate (feature hop x subsampling).

Dimensions: T output frames, V vocabulary (blank = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.text import BLANK


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
