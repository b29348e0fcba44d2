"""Decode a manifest with a model and score it: used by validation during training and `asr evaluate`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.atomic import atomic_write_text
from asr.data import BucketBatchSampler, SpeechDataset, Utterance, collate
from asr.decoding import Hypothesis, greedy_decode
from asr.metrics import char_errors, score, word_errors
from asr.model import SUBSAMPLING
from asr.monitor import blank_ratio

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    utterance: Utterance
    hypothesis: Hypothesis | None  # None when the audio could not be read
    error: str | None = None


@torch.inference_mode()
def decode_utterances(model, features, tokenizer, utts: list[Utterance], max_batch_seconds: float = 200.0,
                      workers: int = 0, device: str | torch.device = "cpu",
                      frame_counts: dict | None = None, decode=greedy_decode) -> list[Decoded]:
    """Decode every utterance (greedy unless `decode` says otherwise), in duration-sorted batches;
    unreadable audio is kept as an error.

    With `frame_counts`, adds the output frames seen ("frames") and those whose best symbol is the
    blank ("blank") to it: the blank ratio that training watches for collapse.
    """
    model.eval()
    dataset = SpeechDataset(utts, features, tokenizer)
    sampler = BucketBatchSampler([u.duration for u in utts], max_batch_seconds, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    frame_seconds = features.config.frame_seconds * SUBSAMPLING
    by_id = {u.id: u for u in utts}
    results: dict[str, Decoded] = {}
    for batch in loader:
        for uid, message in batch.skipped:
            results[uid] = Decoded(by_id[uid], None, message)
        if batch.ids:
            log_probs, out_lengths = model(batch.feats.to(device), batch.lengths.to(device))
            hyps = decode(log_probs, out_lengths, tokenizer, frame_seconds)
            if frame_counts is not None:
                frames = int(out_lengths.sum())
                frame_counts["frames"] = frame_counts.get("frames", 0) + frames
                frame_counts["blank"] = frame_counts.get("blank", 0) + blank_ratio(log_probs, out_lengths) * frames
            for uid, hyp in zip(batch.ids, hyps, strict=True):
                results[uid] = Decoded(by_id[uid], hyp)
    return [results[u.id] for u in utts]


def summarize(decoded: list[Decoded], decode_seconds: float) -> tuple[dict, list[dict]]:
    """-> (summary, per-utterance rows) in the `asr evaluate` output format."""
    ok = [d for d in decoded if d.hypothesis is not None]
    s = score([d.utterance.text for d in ok], [d.hypothesis.text for d in ok])
    summary = {
        **s.to_dict(),
        "audio_seconds": round(sum(d.utterance.duration for d in ok), 3),
        "decode_seconds": round(decode_seconds, 3),
        "skipped": [d.error for d in decoded if d.hypothesis is None],
    }
    summary["real_time_factor"] = round(decode_seconds / max(summary["audio_seconds"], 1e-9), 5)
    rows = []
    for d in ok:
        w = word_errors(d.utterance.text, d.hypothesis.text)
        c = char_errors(d.utterance.text, d.hypothesis.text)
        rows.append({
            "id": d.utterance.id, "audio": d.utterance.audio, "duration": d.utterance.duration,
            "speaker": d.utterance.speaker, "reference": d.utterance.text, "hypothesis": d.hypothesis.text,
            "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions,
            "ref_words": w.ref_len, "wer": round(w.rate, 4), "cer": round(c.rate, 4),
        })
    return summary, rows


def evaluate(model, features, tokenizer, utts: list[Utterance], output_dir: str | Path,
             device: str | torch.device = "cpu", extra: dict | None = None, decode=greedy_decode) -> dict:
    """Decode, score, and write `summary.json` and `utterances.jsonl` (atomically) to `output_dir`."""
    start = time.perf_counter()
    decoded = decode_utterances(model, features, tokenizer, utts, device=device, decode=decode)
    summary, rows = summarize(decoded, time.perf_counter() - start)
    summary.update(extra or {})
    output_dir = Path(output_dir)
    atomic_write_text(output_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(output_dir / "utterances.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return summary
