"""Where transcription time goes: `asr transcribe` of a file split into its stages, for a short and a long file.

    python bench/bench_breakdown.py [--model CKPT] [--seconds 5 600] [--threads 2] [--repeats 5]
                                    [--decoder greedy] [--floor-rtf X]
    python bench/bench_breakdown.py   # the measurement: 5 s and 10 min, bundled model, beam + LM, 2 threads, 5 runs

Take it on an otherwise idle machine: with other processes on the cores, two torch threads wait on
each other and the figures scatter by several times.

Stages, each timed --repeats times (median, min, max):

- Python start (`python -c pass`) and the imports `asr transcribe` needs (torch, asr.transcribe,
  asr.decoding: a child importing them, minus Python start);
- model load (Transcriber.load) and the decoder's construction (beam search: reading the LM and
  building the lexicon, which happens at the first decode), in a fresh child each time, as in a run;
- in this process, with the model loaded and warmed up, the steps of Transcriber.transcribe one
  after the other on the whole file: audio read + resampling + segmentation (no model), log-mel
  features of every segment, the encoder over batches of 8 segments grouped and padded as
  Transcriber does, the decoder over those emissions; then `write_outputs` in all formats;
- the in-process Transcriber.transcribe of the file (the sum of the four steps should be close),
  and the end-to-end `asr transcribe FILE --format all --output-dir TMP --threads N` in a child
  (the sum of all stages should be close).

Also the wall time of `asr transcribe` on a 3-second file, printing its text: from process start to
the first transcript. The audio is real AN4 speech (bench_inference.make_audio). Tables are Markdown
for BENCHMARKS.md. --floor-rtf (the encoder-alone real-time factor, from another bench) adds the
whole path's real-time factor divided by it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_inference import make_audio, timed  # bench/ is on the path when a script there runs

from asr.batching import SORT_SECONDS, batches_by_length, speech_windows
from asr.model import SUBSAMPLING
from asr.outputs import FORMATS, SubtitleOptions, write_outputs
from asr.segment import segments
from asr.transcribe import Transcriber, pad_batch

REPO = Path(__file__).resolve().parents[1]
BATCH = 8  # Transcriber.transcribe's default batch size
# Transcriber.transcribe's default segmentation (overlap: min(2, min_segment_seconds / 2)).
SEGMENTING = {"max_seconds": 30.0, "min_seconds": 1.0, "overlap_seconds": 0.5, "split_pause_seconds": 0.5}
STAGES = {"start": "Python start (`python -c pass`)",
          "imports": "imports (torch, asr.transcribe, asr.decoding)",
          "load": "model load (`Transcriber.load`)",
          "decoder": "decoder construction (LM + lexicon, at the first decode)",
          "read": "audio read + resampling + segmentation",
          "features": "log-mel features",
          "encoder": f"encoder (batches of {BATCH} by length, padded)",
          "decoding": "decoding",
          "write": f"writing ({len(FORMATS)} formats)"}


def wall(argv: list[str]) -> float:
    """Seconds `argv` takes to run to its end in a child process (which must succeed)."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[-1000:]}")
    return seconds


def decoder_settings(args) -> dict | None:
    return {"decoder": args.decoder} if args.decoder else None


def load_worker(args) -> None:
    """In a fresh child: Transcriber.load, then the decoder's first call, which builds it (LM, lexicon)."""
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    t = Transcriber.load(args.model, decoder=decoder_settings(args))
    t1 = time.perf_counter()
    vocab = len(t.tokenizer.tokens)
    t.decode(torch.full((1, 8, vocab), -math.log(vocab)), torch.tensor([8]), t.tokenizer)
    print(json.dumps({"load": t1 - t0, "decoder": time.perf_counter() - t1, "settings": t.decoder_settings}))


def stage_steps(t: Transcriber, path: Path, times: dict[str, list[float]]):
    """One pass of Transcriber.transcribe's steps on `path`, each step on the whole file, timed into `times`."""
    s, chunks = timed(lambda: list(segments(t._blocks(path, None, []), **SEGMENTING)), 1)
    times["read"].append(s)
    batches = []  # as Transcriber.transcribe batches them: by length within windows of speech
    for window, _ in speech_windows(chunks, SORT_SECONDS):
        batches += [[window[i] for i in b] for b in batches_by_length([len(c.audio) for c in window], BATCH)]
    s, feats = timed(lambda: [[t.features(c.audio) for c in batch] for batch in batches], 1)
    times["features"].append(s)

    s, emissions = timed(lambda: [t.model(*pad_batch(fs)) for fs in feats], 1)  # as Transcriber._decode_chunks
    times["encoder"].append(s)
    frame_seconds = t.features.config.frame_seconds * SUBSAMPLING
    s, _ = timed(lambda: [list(t.decode(lp, n, t.tokenizer, frame_seconds)) for lp, n in emissions], 1)
    times["decoding"].append(s)
    return len(chunks), sum(len(b) for b in batches), len(batches)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} CPUs"


def cell(times: list[float]) -> str:
    """median (min-max) in seconds."""
    return f"{statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (default: the bundled model)")
    p.add_argument("--seconds", type=float, nargs="+", default=[5.0, 600.0], help="file lengths (default 5 600)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--decoder", choices=["greedy", "beam"], help="override the model's stored decoder")
    p.add_argument("--floor-rtf", type=float, help="encoder-alone real-time factor, to divide the whole path's by")
    p.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load_worker:
        load_worker(args)
        return
    torch.set_num_threads(args.threads)
    flags = (["--model", args.model] if args.model else []) + (["--decoder", args.decoder] if args.decoder else [])
    cli = [sys.executable, "-m", "asr", "transcribe", "--threads", str(args.threads), *flags]
    n = args.repeats

    fixed: dict[str, list[float]] = {k: [] for k in ("start", "imports", "load", "decoder", "first")}
    per_file = {sec: {k: [] for k in ("read", "features", "encoder", "decoding", "transcribe", "write", "e2e")}
                for sec in args.seconds}
    counts = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = {sec: d / f"an4-{sec:g}s.wav" for sec in args.seconds}
        for sec, path in [*files.items(), (3.0, d / "an4-3s.wav")]:
            make_audio(sec, path)

        for _ in range(n):  # the fixed costs, each in fresh children
            start = wall([sys.executable, "-c", "pass"])
            fixed["start"].append(start)
            fixed["imports"].append(wall([sys.executable, "-c", "import torch, asr.transcribe, asr.decoding"]) - start)
            out = subprocess.run([sys.executable, __file__, "--load-worker", "--threads", str(args.threads), *flags],
                                 cwd=REPO, capture_output=True, text=True, check=True).stdout
            child = json.loads(out.strip().splitlines()[-1])
            fixed["load"].append(child["load"])
            fixed["decoder"].append(child["decoder"])
            fixed["first"].append(wall([*cli, str(d / "an4-3s.wav")]))

        t = Transcriber.load(args.model, decoder=decoder_settings(args))
        for path in files.values():  # warm-up: builds the decoder; a fresh process's first forward is slow
            t.transcribe(path)
        for _ in range(n):  # files and stages alternate within each repeat, so load drifts over all alike
            for sec, path in files.items():
                times = per_file[sec]
                with torch.inference_mode():
                    counts[sec] = stage_steps(t, path, times)
                s, transcript = timed(lambda: t.transcribe(path), 1)  # noqa: B023 -- called at once
                times["transcribe"].append(s)
                times["write"].append(timed(lambda: write_outputs(transcript, d / "out" / "audio", list(FORMATS),  # noqa: B023
                                                                  SubtitleOptions()), 1)[0])
                with tempfile.TemporaryDirectory() as out_dir:
                    times["e2e"].append(wall([*cli, str(path), "--format", "all", "--output-dir", out_dir]))

    med = statistics.median
    print(f"Machine: {machine()}; threads {args.threads}; model {args.model or 'bundled'} "
          f"({getattr(t, 'precision', 'fp32')}); decoder {json.dumps(t.decoder_settings)}; "
          f"median (min-max) of {n} runs, seconds.\n")
    for sec, (chunks, speech, batches) in counts.items():
        print(f"- {sec:g} s file: {chunks} segments ({chunks - speech} silent), {batches} batches")
    print()
    head = " | ".join(f"{sec:g} s file | share" for sec in args.seconds)
    print(f"| stage | {head} |\n|---|{'---|---|' * len(args.seconds)}")
    for key, name in STAGES.items():
        row = []
        for sec in args.seconds:
            times = fixed.get(key) or per_file[sec][key]
            row.append(f"{cell(times)} | {100 * med(times) / med(per_file[sec]['e2e']):.0f} %")
        print(f"| {name} | {' | '.join(row)} |")

    def total(sec, keys):
        return f"{sum(med(fixed.get(k) or per_file[sec][k]) for k in keys):.3f}"

    steps = ["read", "features", "encoder", "decoding"]
    rows = [("sum of read .. decoding (medians)", lambda sec: total(sec, steps)),
            ("in-process `Transcriber.transcribe`", lambda sec: cell(per_file[sec]["transcribe"])),
            ("sum of all stages (medians)", lambda sec: total(sec, STAGES)),
            ("end-to-end `asr transcribe --format all` (child)", lambda sec: cell(per_file[sec]["e2e"])),
            ("end-to-end minus all stages (CLI, first model call, exit)",
             lambda sec: f"{med(per_file[sec]['e2e']) - float(total(sec, STAGES)):.3f}")]
    for name, value in rows:
        print(f"| **{name}** | {' | '.join(f'{value(sec)} |' for sec in args.seconds)} |")

    floor = f" | ÷ floor RTF {args.floor_rtf:g} (e2e, in-process)" if args.floor_rtf else ""
    print(f"\n| file | audio s | RTF end-to-end | RTF in-process{floor} |\n|---|---|---|---|{'---|' if floor else ''}")
    for sec in args.seconds:
        e2e, inproc = med(per_file[sec]["e2e"]) / sec, med(per_file[sec]["transcribe"]) / sec
        ratio = f" | {e2e / args.floor_rtf:.1f}, {inproc / args.floor_rtf:.2f}" if floor else ""
        print(f"| {sec:g} s | {sec:g} | {e2e:.4f} | {inproc:.5f}{ratio} |")
    print(f"\nProcess start to first transcript, `asr transcribe` of a 3 s file (text to stdout): "
          f"{cell(fixed['first'])} s.")


if __name__ == "__main__":
    main()
