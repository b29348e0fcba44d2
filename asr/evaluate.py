"""Decode a manifest with a model and score it: used by validation during training and `asr evaluate`.

`asr evaluate` writes two files to its output folder.

summary.json: corpus WER and CER with substitutions/deletions/insertions, `ser` (sentence error rate:
the share of utterances with any word error), `wer_ci95` ([low, high], a percentile bootstrap over
utterances: BOOTSTRAP_RESAMPLES resamples with a fixed seed, so the same results give the same
interval), `by_speaker` ({speaker: {wer, errors, ref_words, utterances}}, utterances without a
speaker left out), `by_duration` (the same per duration bucket, only non-empty buckets: "<2 s",
"2-5 s", "5-10 s", "10-20 s", ">=20 s", each including its lower edge), `worst` (the utterances with
the most word errors, ties broken by WER: id, wer, errors, reference, hypothesis), the audio and
decoding seconds and the real-time factor, and `skipped` (unreadable audio).

utterances.jsonl: one row per scored utterance: id, audio, duration, speaker, reference, hypothesis,
substitutions, deletions, insertions, `errors` (their sum), ref_words, wer, cer, and `alignment`: the
word alignment of the normalised texts as chunks ``{"op": "equal" | "substitute" | "delete" | "insert",
"ref": [words], "hyp": [words]}`` (see `asr.metrics.align_words`).

`compare_results` reads two such folders and tests whether their WERs differ (paired bootstrap).
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.alignment import Hypothesis
from asr.atomic import atomic_write_text
from asr.data import BucketBatchSampler, SpeechDataset, Utterance, collate
from asr.decoding import greedy_decode
from asr.errors import InputError
from asr.metrics import ErrorCounts, align_words, bootstrap_ci, bootstrap_rates, char_errors, error_rate, score
from asr.model import SUBSAMPLING
from asr.monitor import blank_ratio

log = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
DURATION_EDGES = (2.0, 5.0, 10.0, 20.0)  # seconds: buckets <2, 2-5, 5-10, 10-20, >=20


@dataclass
class Decoded:
    utterance: Utterance
    hypothesis: Hypothesis | None  # None when the audio could not be read
    error: str | None = None


@torch.inference_mode()
def model_outputs(model, features, tokenizer, utts: list[Utterance], max_batch_seconds: float = 200.0,
                  workers: int = 0, device: str | torch.device = "cpu"):
    """Run the model over utterances in duration-sorted batches: yields (batch, log_probs (B, T', V),
    output lengths (B,)); a batch whose every item was unreadable yields None for both tensors."""
    model.eval()
    dataset = SpeechDataset(utts, features, tokenizer)
    sampler = BucketBatchSampler([u.duration for u in utts], max_batch_seconds, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    for batch in loader:
        if not batch.ids:
            yield batch, None, None
            continue
        log_probs, out_lengths = model(batch.feats.to(device), batch.lengths.to(device))
        yield batch, log_probs, out_lengths


@torch.inference_mode()
def decode_utterances(model, features, tokenizer, utts: list[Utterance], max_batch_seconds: float = 200.0,
                      workers: int = 0, device: str | torch.device = "cpu",
                      frame_counts: dict | None = None, decode=greedy_decode) -> list[Decoded]:
    """Decode every utterance (greedy unless `decode` says otherwise), in duration-sorted batches;
    unreadable audio is kept as an error.

    With `frame_counts`, adds the output frames seen ("frames") and those whose best symbol is the
    blank ("blank") to it: the blank ratio that training watches for collapse.
    """
    frame_seconds = features.config.frame_seconds * SUBSAMPLING
    by_id = {u.id: u for u in utts}
    results: dict[str, Decoded] = {}
    for batch, log_probs, out_lengths in model_outputs(model, features, tokenizer, utts, max_batch_seconds,
                                                       workers, device):
        for uid, message in batch.skipped:
            results[uid] = Decoded(by_id[uid], None, message)
        if batch.ids:
            hyps = decode(log_probs, out_lengths, tokenizer, frame_seconds)
            if frame_counts is not None:
                frames = int(out_lengths.sum())
                frame_counts["frames"] = frame_counts.get("frames", 0) + frames
                frame_counts["blank"] = frame_counts.get("blank", 0) + blank_ratio(log_probs, out_lengths) * frames
            for uid, hyp in zip(batch.ids, hyps, strict=True):
                results[uid] = Decoded(by_id[uid], hyp)
    return [results[u.id] for u in utts]


def summarize(decoded: list[Decoded], decode_seconds: float, worst: int = 10) -> tuple[dict, list[dict]]:
    """-> (summary, per-utterance rows) in the `asr evaluate` output format (see the module docstring)."""
    ok = [d for d in decoded if d.hypothesis is not None]
    s = score([d.utterance.text for d in ok], [d.hypothesis.text for d in ok])
    rows = [_row(d) for d in ok]
    errors, ref_words = [r["errors"] for r in rows], [r["ref_words"] for r in rows]
    summary = {
        **s.to_dict(),
        "ser": sum(e > 0 for e in errors) / max(len(rows), 1),
        "wer_ci95": [round(x, 5) for x in bootstrap_ci(errors, ref_words, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)],
        "by_speaker": _wer_by(rows, lambda r: r["speaker"]),
        "by_duration": _wer_by(rows, _duration_bucket, _duration_buckets()),
        "worst": [{k: r[k] for k in ("id", "wer", "errors", "reference", "hypothesis")}
                  for r in sorted(rows, key=lambda r: (-r["errors"], -r["wer"]))[:worst] if r["errors"] > 0],
        "audio_seconds": round(sum(d.utterance.duration for d in ok), 3),
        "decode_seconds": round(decode_seconds, 3),
        "skipped": [d.error for d in decoded if d.hypothesis is None],
    }
    summary["real_time_factor"] = round(decode_seconds / max(summary["audio_seconds"], 1e-9), 5)
    return summary, rows


def _row(d: Decoded) -> dict:
    w, alignment = align_words(d.utterance.text, d.hypothesis.text)
    c = char_errors(d.utterance.text, d.hypothesis.text)
    return {
        "id": d.utterance.id, "audio": d.utterance.audio, "duration": d.utterance.duration,
        "speaker": d.utterance.speaker, "reference": d.utterance.text, "hypothesis": d.hypothesis.text,
        "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions,
        "errors": w.errors, "ref_words": w.ref_len, "wer": round(w.rate, 4), "cer": round(c.rate, 4),
        "alignment": alignment,
    }


def _duration_buckets() -> list[str]:
    e = DURATION_EDGES
    return [f"<{e[0]:g} s", *(f"{lo:g}-{hi:g} s" for lo, hi in zip(e, e[1:], strict=False)), f">={e[-1]:g} s"]


def _duration_bucket(row: dict) -> str:
    return _duration_buckets()[bisect.bisect_right(DURATION_EDGES, row["duration"])]  # lower edge included


def _wer_by(rows: list[dict], key, order: list[str] | None = None) -> dict:
    """{group: {wer, errors, ref_words, utterances}} of the non-empty groups, sorted by name or by `order`;
    rows whose key is None are left out."""
    groups: dict[str, ErrorCounts] = {}
    counts: dict[str, int] = {}
    for r in rows:
        k = key(r)
        if k is not None:
            groups[k] = groups.get(k, ErrorCounts()) + ErrorCounts(r["substitutions"], r["deletions"],
                                                                   r["insertions"], r["ref_words"])
            counts[k] = counts.get(k, 0) + 1
    names = sorted(groups, key=order.index if order else None)
    return {k: {"wer": round(groups[k].rate, 5), "errors": groups[k].errors, "ref_words": groups[k].ref_len,
                "utterances": counts[k]} for k in names}


def evaluate(model, features, tokenizer, utts: list[Utterance], output_dir: str | Path,
             device: str | torch.device = "cpu", extra: dict | None = None, decode=greedy_decode,
             worst: int = 10) -> dict:
    """Decode, score, and write `summary.json` and `utterances.jsonl` (atomically) to `output_dir`."""
    start = time.perf_counter()
    decoded = decode_utterances(model, features, tokenizer, utts, device=device, decode=decode)
    summary, rows = summarize(decoded, time.perf_counter() - start, worst)
    summary.update(extra or {})
    output_dir = Path(output_dir)
    atomic_write_text(output_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(output_dir / "utterances.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return summary


def report_lines(summary: dict, worst: int = 5, speakers: int = 10) -> list[str]:
    """What `asr evaluate` prints after the WER line: SER and the WER's confidence interval, the worst
    utterances (reference and hypothesis normalised alike, as the WER compares them: a corpus's upper-case
    reference beside a lower-case hypothesis looked like errors of case), and the WER by speaker (the
    `speakers` with the most errors) and by duration."""
    from asr.text import normalize_text

    low, high = summary["wer_ci95"]
    lines = [f"SER {100 * summary['ser']:.2f} % (utterances with any word error)  "
             f"WER 95 % CI [{100 * low:.2f}, {100 * high:.2f}] % (bootstrap over utterances)"]
    if summary["worst"][:worst]:
        lines.append(f"worst {count_noun(len(summary['worst'][:worst]), 'utterance')} (errors, WER):")
        for w in summary["worst"][:worst]:
            lines += [f"  {w['id']}  {count_noun(w['errors'], 'error')}, WER {100 * w['wer']:.0f} %",
                      f"    ref: {_clip(normalize_text(w['reference']))}",
                      f"    hyp: {_clip(normalize_text(w['hypothesis']))}"]
    by_speaker = sorted(summary["by_speaker"].items(), key=lambda kv: (-kv[1]["errors"], kv[0]))
    if by_speaker:
        shown = "" if len(by_speaker) <= speakers else f", the {speakers} with the most errors of {len(by_speaker)}"
        lines.append(f"WER by speaker{shown}:")
        lines += [f"  {name:<16} {100 * g['wer']:6.2f} %  ({count_noun(g['errors'], 'error')} / "
                  f"{count_noun(g['ref_words'], 'word')}, {count_noun(g['utterances'], 'utterance')})"
                  for name, g in by_speaker[:speakers]]
    lines.append("WER by duration: " + "  ".join(f"{name} {100 * g['wer']:.2f} % ({count_noun(g['utterances'], 'utt')})"
                                                 for name, g in summary["by_duration"].items()))
    return lines


def count_noun(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def read_results(folder: str | Path) -> dict[str, dict]:
    """The utterances.jsonl of an `asr evaluate` output folder -> {id: {errors, ref_words, reference}}."""
    path = Path(folder) / "utterances.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: not found (is {folder} an `asr evaluate` output folder?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    rows: dict[str, dict] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            uid = str(r["id"])
            errors = int(r["substitutions"]) + int(r["deletions"]) + int(r["insertions"])
            row = {"errors": errors, "ref_words": int(r["ref_words"]), "reference": r.get("reference")}
        except json.JSONDecodeError:
            raise InputError(f"{path}, line {n}: not valid JSON") from None
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}, line {n}: needs id, substitutions, deletions, insertions "
                             "and ref_words") from None
        if uid in rows:
            raise InputError(f"{path}, line {n}: utterance {uid!r} appears twice")
        rows[uid] = row
    return rows


def compare_results(dir_a: str | Path, dir_b: str | Path, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> dict:
    """Is the WER of results B different from that of results A? A paired bootstrap over the utterances
    both have (Bisani & Ney, 2004): every resample draws the same utterances for both systems.

    `b_better_share` is the share of resamples where B has the lower WER (their "probability of
    improvement"); `p_value` is two-sided, twice the smaller tail share around a difference of zero;
    `better` names the better system when p < 0.05, else None.
    """
    a, b = read_results(dir_a), read_results(dir_b)
    common = [uid for uid in a if uid in b]
    if not common:
        raise InputError(f"{dir_a} and {dir_b}: no utterance ids in common")
    errors = np.array([[a[u]["errors"], b[u]["errors"]] for u in common])  # (U, 2)
    ref_words = np.array([[a[u]["ref_words"], b[u]["ref_words"]] for u in common])  # (U, 2)
    wer_a, wer_b = (error_rate(int(e), int(r)) for e, r in zip(errors.sum(0), ref_words.sum(0), strict=True))
    rates = bootstrap_rates(errors, ref_words, resamples, seed)  # (R, 2)
    diffs = rates[:, 1] - rates[:, 0]
    low, high = np.percentile(diffs, [2.5, 97.5])
    b_not_better, a_not_better = float(np.mean(diffs >= 0)), float(np.mean(diffs <= 0))
    p_value = min(1.0, 2 * min(b_not_better, a_not_better))
    return {
        "a": str(dir_a), "b": str(dir_b), "utterances": len(common),
        "only_in_a": len(a) - len(common), "only_in_b": len(b) - len(common),
        "references_differ": sum(a[u]["reference"] != b[u]["reference"] for u in common),
        "wer_a": wer_a, "wer_b": wer_b, "difference": wer_b - wer_a,
        "difference_ci95": [float(low), float(high)],
        "b_better_share": float(np.mean(diffs < 0)), "p_value": p_value, "significant": p_value < 0.05,
        "better": None if p_value >= 0.05 else "B" if b_not_better < a_not_better else "A",
        "resamples": resamples, "seed": seed,
    }


def comparison_lines(c: dict) -> list[str]:
    """What `asr evaluate --compare A B` prints, ending with the verdict."""
    lines = [f"A {c['a']}: WER {100 * c['wer_a']:.2f} %", f"B {c['b']}: WER {100 * c['wer_b']:.2f} %",
             f"on the {count_noun(c['utterances'], 'utterance')} both have ({c['only_in_a']} only in A, "
             f"{c['only_in_b']} only in B)"]
    if c["references_differ"]:
        n = c["references_differ"]
        lines.append(f"warning: {count_noun(n, 'utterance')} {'has' if n == 1 else 'have'} different references "
                     "in A and B")
    low, high = c["difference_ci95"]
    lines += [f"B - A: {100 * c['difference']:+.2f} points, 95 % CI [{100 * low:+.2f}, {100 * high:+.2f}]; "
              f"B better in {100 * c['b_better_share']:.1f} % of {c['resamples']} paired bootstrap resamples, "
              f"p = {c['p_value']:.3f}"]
    if c["better"] == "B":
        lines.append("B is better than A (significant at 95 %)")
    elif c["better"] == "A":
        lines.append("A is better than B (significant at 95 %)")
    else:
        lines.append("no significant difference")
    return lines
