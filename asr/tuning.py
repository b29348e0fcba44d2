"""`asr lm tune`: the LM weight and word score that minimise WER on a dev set.

The acoustic model runs once; its emissions are kept and only the beam search is repeated for each
(LM weight, word score) pair of the grid. The chosen pair can be stored in a copy of the checkpoint
(metadata "decoder"), which transcription and evaluation then use by default.

Dimensions: T output frames, V vocabulary.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from asr.data import Utterance
from asr.decoding import BeamOptions, beam_search
from asr.evaluate import model_outputs
from asr.metrics import score
from asr.model import atomic_torch_save, read_checkpoint

log = logging.getLogger(__name__)


def compute_emissions(model, features, tokenizer, utts: list[Utterance], device="cpu",
                      max_batch_seconds: float = 200.0) -> tuple[list[tuple[Utterance, torch.Tensor]], list[str]]:
    """-> ([(utterance, (T, V) float32 log-probs on the CPU)], problems with unreadable audio)."""
    by_id = {u.id: u for u in utts}
    out, problems = [], []
    for batch, log_probs, lengths in model_outputs(model, features, tokenizer, utts, max_batch_seconds,
                                                   device=device):
        problems += [message for _, message in batch.skipped]
        if batch.ids:
            log_probs = log_probs.float().cpu()
            out += [(by_id[uid], log_probs[i, : int(n)].clone())
                    for i, (uid, n) in enumerate(zip(batch.ids, lengths.tolist(), strict=True))]
    return out, problems


def decode_texts(emissions: list[torch.Tensor], tokenizer, options: BeamOptions, batch_size: int = 32) -> list[str]:
    """Beam-search texts of many utterances' emissions, padded into batches of similar length."""
    order = sorted(range(len(emissions)), key=lambda i: emissions[i].shape[0])
    texts: list[str] = [""] * len(emissions)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        lengths = torch.tensor([emissions[i].shape[0] for i in idx])
        padded = torch.nn.utils.rnn.pad_sequence([emissions[i] for i in idx], batch_first=True)
        for i, nbest in zip(idx, beam_search(padded, lengths, tokenizer, options), strict=True):
            texts[i] = tokenizer.decode(nbest[0][0]) if nbest else ""
    return texts


def grid(spec: str) -> list[float]:
    """'0,0.5,1' or 'START:STOP:STEP' (STOP included) -> values."""
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            n = int(round((stop - start) / step))
            return [round(start + k * step, 6) for k in range(n + 1)]
        return [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{spec!r} is not a list of numbers or START:STOP:STEP") from None


def tune(emissions: list[tuple[Utterance, torch.Tensor]], tokenizer, base: BeamOptions,
         lm_weights: list[float], word_scores: list[float], on_result=None) -> list[dict]:
    """WER and CER of every (LM weight, word score) pair, in grid order; `on_result(row)` after each."""
    refs = [u.text for u, _ in emissions]
    lps = [lp for _, lp in emissions]
    rows = []
    for weight in lm_weights:
        for word_score in word_scores:
            texts = decode_texts(lps, tokenizer, replace(base, lm_weight=weight, word_score=word_score))
            s = score(refs, texts)
            rows.append({"lm_weight": weight, "word_score": word_score, "wer": s.wer, "cer": s.cer})
            if on_result:
                on_result(rows[-1])
    return rows


def best_row(rows: list[dict]) -> dict:
    """Lowest WER; ties go to lower CER, then to the smaller LM weight and word score (the milder choice)."""
    return min(rows, key=lambda r: (round(r["wer"], 9), round(r["cer"], 9), r["lm_weight"], abs(r["word_score"])))


def save_settings(checkpoint: str | Path, out: str | Path, options: BeamOptions, tuned: dict) -> dict:
    """Copy `checkpoint` to `out` (atomically; it may be the same file) with the decoder settings in its
    metadata. LM and lexicon paths are stored relative to `out`'s folder, so the model folder can move
    as a whole."""
    state = read_checkpoint(checkpoint)
    settings = {k: v for k, v in asdict(options).items() if v is not None and k != "nbest"}
    settings = {"decoder": "beam", **settings}
    for key in ("lm", "lexicon"):
        if settings.get(key):
            settings[key] = os.path.relpath(Path(settings[key]).resolve(), Path(out).resolve().parent)
    if settings.get("unk_score") == float("-inf"):
        del settings["unk_score"]  # the default; JSON-unfriendly
    state.setdefault("metadata", {})["decoder"] = settings
    state["metadata"]["decoder_tuning"] = tuned
    atomic_torch_save(state, out)
    return settings
