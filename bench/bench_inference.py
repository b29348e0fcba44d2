"""Inference speed of the whole path against the model forward alone, on the same audio in one run.

    python bench/bench_inference.py [--model CKPT] [--seconds 60] [--threads 2] [--repeats 5]

Prints the median over repeats of: read+features, model forward, greedy decoding, and the whole
path (Transcriber.transcribe on the file), each as a real-time factor (seconds per audio second).
The audio is real AN4 speech from ../shared/data concatenated to the requested length.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from asr.audio import load_audio
from asr.decoding import greedy_decode
from asr.model import SUBSAMPLING
from asr.transcribe import Transcriber

AN4 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "an4" / "wav" / "an4_clstk"


def make_audio(seconds: float, path: Path) -> None:
    chunks, total = [], 0
    for f in sorted(AN4.rglob("*.sph")):
        wave = load_audio(f)
        chunks.append(wave)
        total += len(wave)
        if total >= seconds * 16000:
            break
    soundfile.write(path, np.concatenate(chunks)[: int(seconds * 16000)], 16000)


def timings(fn, repeats: int) -> tuple[list[float], object]:
    """Seconds of each of `repeats` calls, and the last call's result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last call's result."""
    times, out = timings(fn, repeats)
    return statistics.median(times), out


def spread(values: list[float], fmt: str) -> str:
    """'median (min-max)' of `values`."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t = Transcriber.load(args.model, decode=greedy_decode)  # the greedy path, whatever the model stores
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audio.wav"
        make_audio(args.seconds, path)
        t.transcribe(path)  # warm-up
        feat_s, feats = timed(lambda: t.features(load_audio(path)), args.repeats)
        lengths = torch.tensor([feats.shape[0]])
        with torch.inference_mode():
            model_s, (lp, out_len) = timed(lambda: t.model(feats.unsqueeze(0), lengths), args.repeats)
        frame = t.features.config.frame_seconds * SUBSAMPLING
        greedy_s, _ = timed(lambda: greedy_decode(lp, out_len, t.tokenizer, frame), args.repeats)
        whole_s, _ = timed(lambda: t.transcribe(path), args.repeats)
    n = args.seconds
    print(f"audio {n:.0f} s, {args.threads} threads, median of {args.repeats}")
    for name, s in [("read+features", feat_s), ("model forward", model_s), ("greedy decoding", greedy_s),
                    ("whole path", whole_s)]:
        print(f"  {name:<16} {s:8.3f} s   RTF {s / n:.4f}")
    print(f"  whole path / model forward: {whole_s / model_s:.2f}x")


if __name__ == "__main__":
    main()
