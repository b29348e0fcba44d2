"""What batching segments by length buys: the whole transcription path with and without it, in one run.

    python bench/bench_batching.py [--model CKPT] [--seconds 600] [--threads 2] [--repeats 5]
        [--batch-sizes 8 16] [--windows 120 480] [--precisions fp32 bf16] [--floor-rtf X]

`Transcriber.transcribe` cuts a recording into segments at pauses and runs them through the model
`batch_size` at a time, each batch padded to its longest segment (rounded up to whole seconds). It
sorts the segments in windows of `SORT_SECONDS` of speech by length first. For each precision and
batch size, the whole path with greedy decoding on --seconds of real AN4 speech, with the segments in
time order (as before the sorting: consecutive segments batched together) and sorted within windows of
each of --windows seconds: median (min-max) real-time factor over --repeats, all settings taking turns
within each repeat; the share of the model's input frames that are padding; the speed-up over time
order within the same repeat; with --floor-rtf, the real-time factor over the fp32 encoder floor
(bench_floor.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from bench_breakdown import SEGMENTING  # bench/ is on the path when a script there runs
from bench_inference import make_audio, spread, timed

from asr import batching
from asr.audio import FeatureConfig
from asr.batching import batches_by_length, padded_frames, speech_windows
from asr.decoding import greedy_decode
from asr.segment import segments
from asr.transcribe import Transcriber


def in_time_order(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive segments batched together: the batching before segments were sorted by length."""
    return [list(range(i, min(i + batch_size, len(lengths)))) for i in range(0, len(lengths), batch_size)]


def padding_share(chunks: list, batch_size: int, window: float | None) -> float:
    """Share of the padded batches' frames that are padding, batching as Transcriber.transcribe does
    (window None: in time order)."""
    real = padded = 0
    for part, _ in speech_windows(chunks, window or batching.SORT_SECONDS):
        frames = [1 + len(c.audio) // FeatureConfig().hop_length for c in part]  # as FeatureExtractor.log_mel
        for batch in (in_time_order if window is None else batches_by_length)(frames, batch_size):
            real += sum(frames[i] for i in batch)
            padded += padded_frames(max(frames[i] for i in batch)) * len(batch)
    return 1 - real / padded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    p.add_argument("--windows", type=float, nargs="+", default=[120.0, batching.SORT_SECONDS],
                   help="seconds of speech sorted together")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--floor-rtf", type=float, help="fp32 encoder floor RTF (bench_floor.py)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sort, default_window = batching.batches_by_length, batching.SORT_SECONDS
    windows = [None, *args.windows]  # None: time order
    models = {name: Transcriber.load(args.model, decode=greedy_decode, precision=name) for name in args.precisions}
    settings = [(name, size, window) for name in args.precisions for size in args.batch_sizes for window in windows]
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    texts: dict[tuple, str] = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audio.wav"
        make_audio(args.seconds, path)
        chunks = list(segments(models[args.precisions[0]]._blocks(path, None, []), **SEGMENTING))
        for t in models.values():
            t.transcribe(path)  # warm-up
        try:
            for _ in range(args.repeats):
                for name, size, window in settings:
                    batching.batches_by_length = in_time_order if window is None else sort
                    models[name].sort_seconds = window or default_window
                    run = lambda t=models[name], size=size: t.transcribe(path, batch_size=size)  # noqa: E731
                    seconds, result = timed(run, 1)
                    times[name, size, window].append(seconds)
                    texts[name, size, window] = result.text
        finally:
            batching.batches_by_length = sort
    n = args.seconds
    speech = sum(1 for c in chunks if not c.silent)
    print(f"{n:.0f} s of AN4 speech in {speech} segments, greedy, {args.threads} threads, "
          f"median (min-max) of {args.repeats}\n")
    print("| precision | batch | order | padding | whole path RTF | speed-up over time order | x fp32 floor |")
    print("|---|---|---|---|---|---|---|")
    for name, size, window in settings:
        order = "time" if window is None else f"by length, {window:g} s windows"
        speedup = [a / b for a, b in zip(times[name, size, None], times[name, size, window], strict=True)]
        floor = spread([s / n / args.floor_rtf for s in times[name, size, window]], ".2f") if args.floor_rtf else ""
        print(f"| {name} | {size} | {order} | {100 * padding_share(chunks, size, window):.0f} % "
              f"| {spread([s / n for s in times[name, size, window]], '.5f')} | {spread(speedup, '.2f')} | {floor} |")
    for name in args.precisions:
        same = len({texts[s] for s in settings if s[0] == name}) == 1
        print(f"\n{name}: the transcript is {'the same' if same else 'NOT the same'} for every batch size and order")


if __name__ == "__main__":
    main()
