"""CTC decoding: (log-probs, lengths) -> hypotheses with text, tokens and word times.

Dimensions: B batch, T output frames, V vocabulary (blank = 0).
Every decoder is a plain function ``decode(log_probs, lengths, tokenizer, frame_seconds)`` returning
one ``Hypothesis`` per utterance, so decoders are interchangeable.
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
    confidence: float  # mean posterior of the word's emitted tokens, 0..1


@dataclass
class Hypothesis:
    text: str
    tokens: list[int]
    frames: list[int]  # output frame at which each token was emitted
    words: list[Word] = field(default_factory=list)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer,
                  frame_seconds: float = 0.04) -> list[Hypothesis]:
    """Best path: argmax per frame, merge repeats, drop blanks. Batched over B."""
    best_logp, best = log_probs.detach().max(dim=-1)  # (B, T), (B, T)
    b, t = best.shape
    valid = torch.arange(t, device=best.device)[None, :] < lengths.to(best.device)[:, None]
    prev = torch.nn.functional.pad(best, (1, 0), value=BLANK)[:, :-1]
    emit = valid & (best != BLANK) & (best != prev)  # (B, T)
    best, best_logp, emit = best.cpu(), best_logp.float().cpu(), emit.cpu()
    hyps = []
    for i in range(b):
        frames = emit[i].nonzero().squeeze(1).tolist()
        tokens = best[i, frames].tolist()
        probs = best_logp[i, frames].exp().tolist()
        hyps.append(_hypothesis(tokens, frames, probs, tokenizer, frame_seconds))
    return hyps


def _hypothesis(tokens, frames, probs, tokenizer, frame_seconds) -> Hypothesis:
    text = tokenizer.decode(tokens)
    return Hypothesis(text, tokens, frames, _words(tokens, frames, probs, tokenizer, frame_seconds))


def _words(tokens, frames, probs, tokenizer, frame_seconds) -> list[Word]:
    """Group tokens into words at word boundaries: a space token, or a BPE piece starting with '▁'.

    A word spans from its first token's frame to one frame past its last token's frame. (The
    forced-alignment timestamps of the decoding issue refine this; the spans here are what the
    greedy path itself says.)
    """
    words: list[Word] = []
    current: list[int] = []

    def flush():
        if current:
            ids = [tokens[j] for j in current]
            text = tokenizer.decode(ids).strip()
            if text:
                conf = sum(probs[j] for j in current) / len(current)
                start, end = frames[current[0]] * frame_seconds, (frames[current[-1]] + 1) * frame_seconds
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
