"""CTC decoding: (log-probs, lengths) -> hypotheses with text, tokens and word times.

Dimensions: B batch, T output frames, V vocabulary (blank = 0).
Every decoder is a plain function ``decode(log_probs, lengths, tokenizer, frame_seconds)`` returning
one ``Hypothesis`` per utterance, so decoders are interchangeable.
"""

from __future__ import annotations

import functools
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


def beam_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer, frame_seconds: float = 0.04,
                beam_size: int = 50, beam_threshold: float = 50.0) -> list[Hypothesis]:
    """Lexicon-free CTC beam search (flashlight-text through torchaudio), without a language model.

    Hypotheses that reach the same prefix are merged by summing their probabilities (log_add), as
    CTC defines a label sequence's probability, rather than keeping the better of the two.

    The search returns tokens only; where each token is emitted comes from CTC forced alignment of
    that token sequence (the Viterbi path), so words get times and confidences exactly as on the
    greedy path. With beam_size=1 the result equals `greedy_decode` (a test checks it).
    """
    decoder = _beam_decoder(tuple(tokenizer.tokens), beam_size, beam_threshold)
    emissions = log_probs.detach().float().cpu().contiguous()
    results = decoder(emissions, lengths.detach().cpu().to(torch.int32))
    sil = _silence_token(tokenizer.tokens)
    hyps = []
    for i, nbest in enumerate(results):
        tokens = [t for t in nbest[0].tokens.tolist() if t != BLANK] if nbest else []
        while tokens and tokens[0] == sil:  # the search brackets every hypothesis with silence
            tokens.pop(0)
        while tokens and tokens[-1] == sil:
            tokens.pop()
        frames, probs = _align(emissions[i, : int(lengths[i])], tokens)
        hyps.append(_hypothesis(tokens, frames, probs, tokenizer, frame_seconds))
    return hyps


def make_decoder(name: str = "greedy", beam_size: int = 50):
    """-> decode(log_probs, lengths, tokenizer, frame_seconds) for `--decoder greedy|beam`."""
    if name == "greedy":
        return greedy_decode
    if name == "beam":
        return functools.partial(beam_decode, beam_size=beam_size)
    raise ValueError(f"unknown decoder {name!r}: greedy or beam")


def _silence_token(tokens) -> int:
    """flashlight needs a word-separator token: the space for characters; for BPE, whose pieces carry
    their own word boundary, the unknown piece, which a trained model never emits."""
    return tokens.index(" ") if " " in tokens else 1


@functools.lru_cache(maxsize=8)
def _beam_decoder(tokens: tuple[str, ...], beam_size: int, beam_threshold: float):
    from torchaudio.models.decoder import ctc_decoder

    return ctc_decoder(lexicon=None, tokens=list(tokens), lm=None, nbest=1, beam_size=beam_size,
                       beam_threshold=beam_threshold, blank_token=tokens[BLANK],
                       sil_token=tokens[_silence_token(tokens)], log_add=True)


def _align(log_probs: torch.Tensor, tokens: list[int]) -> tuple[list[int], list[float]]:
    """Frame where each token starts on the best CTC path that spells `tokens`, and its posterior there."""
    if not tokens:
        return [], []
    import torchaudio.functional

    labels, scores = torchaudio.functional.forced_align(
        log_probs.unsqueeze(0), torch.tensor([tokens], dtype=torch.int32),
        torch.tensor([log_probs.shape[0]]), torch.tensor([len(tokens)]), blank=BLANK)
    labels, scores = labels[0], scores[0]
    prev = torch.nn.functional.pad(labels, (1, 0), value=BLANK)[:-1]
    starts = ((labels != BLANK) & (labels != prev)).nonzero().squeeze(1)  # same rule as greedy's emissions
    return starts.tolist(), scores[starts].exp().tolist()


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
