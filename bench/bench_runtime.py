"""The torch-free runtime against the PyTorch path: start-up to first transcript, and whole-path speed.

    python bench/bench_runtime.py [--model an4] [--seconds 3] [--minutes 10] [--repeats 5] [--threads 2]
        [--decoder greedy|beam] [--rss-minutes 60] [--workdir DIR]

1. Process start to first transcript of a --seconds file: a fresh process per run, the time from starting
   it until its transcript line is on standard output. `asr transcribe --precision fp32` (PyTorch) against
   `python -m asr.runtime` (the same as asr-lite) with the fp32 and the int8 export, the three taking turns
   in each of --repeats rounds; median (min-max).
2. Whole-path real-time factor (seconds per audio second) on a --minutes file: `transcribe(file)` in a
   process of its own after a warm-up, for the PyTorch fp32 path, the fp32 runtime and the int8 runtime, taking turns;
   median (min-max) of --long-repeats. Also the WER of each against the PyTorch transcript.
3. Peak resident memory transcribing a --rss-minutes file: each path in a fresh process (the same commands
   as in 1), its peak RSS as the kernel counts it (getrusage of the child).

The model is exported (fp32 and --int8) into --workdir first. The audio is real AN4 speech: from
../shared/data/an4 where it is there, else the repository's examples/ repeated. Without --decoder, each path
uses the model's stored decoder (for an4: beam search with its 6-gram LM).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4" / "wav" / "an4_clstk"


def make_audio(seconds: float, path: Path) -> None:
    """`seconds` of real speech: AN4 utterances one after another, with a half-second pause between them."""
    from asr.audio import load_audio

    sources = sorted(AN4.rglob("*.sph")) if AN4.is_dir() else []
    sources = sources or sorted((REPO / "examples").glob("*.wav"))
    pause = np.zeros(8000, np.float32)
    parts, total, i = [], 0, 0
    while total < seconds * 16000:
        wave = load_audio(sources[i % len(sources)])
        parts += [wave, pause]
        total += len(wave) + len(pause)
        i += 1
    soundfile.write(path, np.concatenate(parts)[: int(seconds * 16000)], 16000)


def first_transcript(command: list[str]) -> float:
    """Seconds from starting `command` until it has written a line to standard output (then it is left to end)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0 or not line.strip():
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return elapsed


def peak_rss(command: list[str]) -> float:
    """Run `command` to its end -> its peak resident set size in MB. Through a small Python parent: the child's
    ru_maxrss counts what it shared with its parent between fork and exec, which from this process (torch
    loaded) would be 800 MB whatever the command."""
    wrapper = ("import resource, subprocess, sys; null = subprocess.DEVNULL; "
               "code = subprocess.run(sys.argv[1:], stdout=null, stderr=null).returncode; "
               "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-S", "-c", wrapper, *command], cwd=REPO, capture_output=True, text=True)
    code, kilobytes = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(command)} failed ({code})")
    return int(kilobytes) / 1024  # Linux: kB


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="an4", help="bundled model name or checkpoint (default an4)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the start-up file (default 3)")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the long file (default 10)")
    p.add_argument("--repeats", type=int, default=5, help="start-up rounds (default 5)")
    p.add_argument("--long-repeats", type=int, default=3, help="rounds on the long file (default 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--decoder", choices=["greedy", "beam"], help="default: the model's stored decoder")
    p.add_argument("--rss-minutes", type=float, default=0.0, help="also peak memory on a file this long (0: not)")
    p.add_argument("--workdir", help="where the exports and audio go (default: a temporary folder)")
    args = p.parse_args()

    from asr.catalog import resolve
    from asr.export import export

    checkpoint = resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        exports = {"fp32": work / "export-fp32", "int8": work / "export-int8"}
        for name, folder in exports.items():
            export(checkpoint, folder, int8=name == "int8", overwrite=True)
        short, long = work / "short.wav", work / "long.wav"
        make_audio(args.seconds, short)
        make_audio(args.minutes * 60, long)
        decoder = ["--decoder", args.decoder] if args.decoder else []
        common = [str(short), "--threads", str(args.threads), *decoder]
        commands = {
            "PyTorch (asr transcribe, fp32)": [sys.executable, "-m", "asr", "transcribe", *common, "--model",
                                               str(checkpoint), "--precision", "fp32", "--no-progress"],
            "fp32 runtime (python -m asr.runtime)": [sys.executable, "-m", "asr.runtime", *common, "--model",
                                                     str(exports["fp32"])],
            "int8 runtime (python -m asr.runtime)": [sys.executable, "-m", "asr.runtime", *common, "--model",
                                                     str(exports["int8"])],
        }
        startup: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                startup[name].append(first_transcript(command))
        print(f"Process start to first transcript of a {args.seconds:g} s file, {args.threads} threads, "
              f"median (min-max) of {args.repeats}\n")
        print("| path | seconds | vs PyTorch |\n|---|---|---|")
        torch_median = statistics.median(next(iter(startup.values())))
        for name, times in startup.items():
            print(f"| {name} | {spread(times, '.2f')} | {statistics.median(times) / torch_median:.2f}x |")
        whole_path(long, checkpoint, exports, args)
        if args.rss_minutes:
            hour = work / "rss.wav"
            make_audio(args.rss_minutes * 60, hour)
            print(f"\nPeak resident memory transcribing {args.rss_minutes:g} min, {args.threads} threads, one "
                  "process each\n\n| path | peak RSS |\n|---|---|")
            for name, command in commands.items():
                print(f"| {name} | {peak_rss([str(hour) if c == str(short) else c for c in command]):.0f} MB |",
                      flush=True)
        sizes = {name: (folder / "encoder.onnx").stat().st_size / 1e6 for name, folder in exports.items()}
        print(f"\nencoder.onnx: fp32 {sizes['fp32']:.1f} MB, int8 {sizes['int8']:.1f} MB; "
              f"checkpoint {checkpoint.stat().st_size / 1e6:.1f} MB")


# One engine in a process of its own: `transcribe(file)` once to warm up, then timed. In one process the
# engines took turns with each other's idle threads still spinning (torch's OpenMP ones and onnxruntime's),
# which slowed whichever ran second by up to half.
_TIMED = """
import json, sys, time
kind, path, threads, audio, decoder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
if kind == "pytorch":
    import torch
    from asr.transcribe import Transcriber
    torch.set_num_threads(threads)
    engine = Transcriber.load(path, precision="fp32", decoder=decoder)
else:
    from asr.runtime import load
    engine = load(path, threads=threads, **decoder)
text = engine.transcribe(audio).text
start = time.perf_counter()
engine.transcribe(audio)
print(json.dumps({"seconds": time.perf_counter() - start, "text": text}))
"""


def whole_path(long: Path, checkpoint: Path, exports: dict, args) -> None:
    import json

    from asr.metrics import score

    decoder = json.dumps({"decoder": args.decoder} if args.decoder else {})
    engines = {"PyTorch fp32": ("pytorch", checkpoint), "fp32 runtime": ("onnx", exports["fp32"]),
               "int8 runtime": ("onnx", exports["int8"])}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    texts: dict[str, str] = {}
    for _ in range(args.long_repeats):  # taking turns, a fresh process each
        for name, (kind, path) in engines.items():
            out = subprocess.run([sys.executable, "-c", _TIMED, kind, str(path), str(args.threads), str(long), decoder],
                                 cwd=REPO, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{name} failed: {out.stderr[-1000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            seconds[name].append(result["seconds"])
            texts[name] = result["text"]
    audio = soundfile.info(long).duration
    print(f"\nWhole path on {audio / 60:.1f} min of AN4 speech (read, segment, features, encoder, decoder, word "
          f"times), {args.threads} threads, each in its own process after a warm-up, median (min-max) of "
          f"{args.long_repeats}\n")
    print("| path | RTF | speed-up over PyTorch | WER against the PyTorch transcript |\n|---|---|---|---|")
    reference = texts["PyTorch fp32"]
    for name, times in seconds.items():
        speedup = [a / b for a, b in zip(seconds["PyTorch fp32"], times, strict=True)]
        wer = score([reference], [texts[name]]).wer
        print(f"| {name} | {spread([t / audio for t in times], '.4f')} | {spread(speedup, '.2f')} | {wer:.2%} |")


if __name__ == "__main__":
    main()
