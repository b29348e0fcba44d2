"""Peak memory and speed on long audio: a 1-minute against a 60-minute file, each run in a process of its own.

    python bench/bench_long_audio.py [--minutes 1 60] [--command TEMPLATE] [--rate 16000] [--workdir DIR]
    python bench/bench_long_audio.py --segment-only [--minutes 1 60]
    python bench/bench_long_audio.py --in-process [--minutes 1 60] [--repeats 3] [--decoder greedy|beam]

The files are real AN4 speech from ../shared/data/an4, utterances concatenated (cycling through them
when the corpus is shorter than asked) and written block by block, so the bench itself stays small.
The command template (default: `python -m asr transcribe {file} --format all --output-dir {tmp}`)
runs once per file; {file} is the audio, {tmp} a fresh empty folder. Each run's peak resident memory
comes from its own rusage (os.wait4), so runs do not mask each other.

--in-process loads the bundled model once, warms it up, and times Transcriber.transcribe on each
file (median of --repeats): the real-time factor without process startup, whose ratio shows whether
cost grows linearly with length.

--segment-only runs, instead of the command, asr.segment's read_blocks + segments in a child process
and reports its chunk count and lengths, and for comparison load_audio of the whole file.

Prints wall time, real-time factor (seconds per audio second) and peak RSS per file, and the 60/1
ratios: a bounded-memory path keeps the RSS ratio near 1 and the RTF ratio near 1 (linear time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
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
DEFAULT_COMMAND = "python -m asr transcribe {file} --format all --output-dir {tmp}"


def make_long_audio(seconds: float, path: Path, rate: int = 16_000) -> None:
    """Write `seconds` of AN4 utterances to `path` (16-bit PCM at `rate`), one utterance at a time.

    soundfile and soxr only, no asr import: torch would make this process large, and a child's peak
    RSS counts the memory of the process it was forked from.
    """
    import soxr

    files = sorted(AN4.rglob("*.sph"))
    if not files:
        sys.exit(f"error: no AN4 sphere files under {AN4}")
    need = round(seconds * rate)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        i = 0
        while need > 0:
            wave, file_rate = soundfile.read(str(files[i % len(files)]), dtype="float32")
            if file_rate != rate:
                wave = soxr.resample(wave, file_rate, rate)
            out.write(wave[:need])
            need -= len(wave[:need])
            i += 1


def run_measured(argv: list[str]) -> dict:
    """Run `argv` to its end; its wall time, peak RSS (its own, from wait4) and output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, not by Popen, to get this child's rusage
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "returncode": proc.returncode,
                "stdout": out.read(), "stderr": err.read()}


def _command(template: str, file: Path, tmp: Path) -> list[str]:
    argv = [a.format(file=file, tmp=tmp) for a in shlex.split(template)]
    if argv and argv[0] == "python":
        argv[0] = sys.executable  # this environment's interpreter
    return argv


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _report(name: str, runs: dict[float, dict]) -> None:
    print(f"{name}:")
    for minutes, r in runs.items():
        extra = "" if r["returncode"] == 0 else f"   FAILED (exit {r['returncode']}): {_last_line(r['stderr'])}"
        print(f"  {minutes:5.0f} min   wall {r['wall_s']:8.2f} s   RTF {r['wall_s'] / (60 * minutes):.4f}   "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB{extra}")
        s = r.get("stats")
        if s and "chunks" in s:
            print(f"           {s['chunks']} chunks ({s['forced_cuts']} forced cuts), length median "
                  f"{s['median_s']:.1f} s, min {s['min_s']:.1f} s, max {s['max_s']:.1f} s; the segmenter held "
                  f"at most {s['max_buffered_s']:.1f} s of audio")
        if s:
            print(f"           in the child: {s['seconds']:.2f} s to read{' and segment' if 'chunks' in s else ''} "
                  f"(RTF {s['seconds'] / (60 * minutes):.5f}); "
                  f"RSS {s['rss_after_imports_mb']:.1f} MB after imports, {s['rss_peak_mb']:.1f} MB at the end "
                  f"(+{s['rss_peak_mb'] - s['rss_after_imports_mb']:.1f} MB)")
    if len(runs) >= 2:
        (m0, a), (m1, b) = list(runs.items())[0], list(runs.items())[-1]
        rtf = (b["wall_s"] / m1) / (a["wall_s"] / m0)
        print(f"  {m1:g} min / {m0:g} min:   RTF ratio {rtf:.2f}   peak RSS ratio "
              f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}")
        if a.get("stats") and b.get("stats"):  # without the fixed cost of starting Python and importing torch
            sa, sb = a["stats"], b["stats"]
            grow_a, grow_b = (s["rss_peak_mb"] - s["rss_after_imports_mb"] for s in (sa, sb))
            print(f"  in the child:   RTF ratio {(sb['seconds'] / m1) / (sa['seconds'] / m0):.2f}   "
                  f"RSS growth {grow_a:.1f} MB -> {grow_b:.1f} MB")


# --- the child processes of --segment-only ----------------------------------------------------------


def _worker(mode: str, path: str) -> None:
    from asr.audio import load_audio
    from asr.segment import read_blocks, segments

    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == "load":
        audio = load_audio(path)
        stats = {"samples": len(audio)}
    else:
        seg = segments(read_blocks(path))
        lengths = [c.end - c.start for c in seg]
        stats = {"chunks": len(lengths), "forced_cuts": seg.forced_cuts, "median_s": statistics.median(lengths),
                 "min_s": min(lengths), "max_s": max(lengths), "mean_s": float(np.mean(lengths)),
                 "max_buffered_s": seg.max_buffered_seconds}
    # The process's own peak before exit: torch's interpreter shutdown adds a constant ~0.1 GB after it.
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats.update(seconds=time.perf_counter() - t0, rss_after_imports_mb=rss_after_imports, rss_peak_mb=rss_peak)
    print(json.dumps(stats))


def _in_process(files: dict[float, Path], repeats: int, threads: int, decoder: str | None) -> None:
    """RTF of Transcriber.transcribe on each file in one process (model loaded and warmed up once)."""
    import torch

    from asr.transcribe import Transcriber

    torch.set_num_threads(threads)
    t = Transcriber.load(decoder={"decoder": decoder} if decoder else None)
    t.transcribe(next(iter(files.values())))  # warm-up: first-call allocations, LM loading
    # Files alternate within each repeat, so that the machine's load drifts over all of them alike.
    times: dict[float, list[float]] = {m: [] for m in files}
    results = {}
    for _ in range(repeats):
        for minutes, path in files.items():
            t0 = time.perf_counter()
            results[minutes] = t.transcribe(path)
            times[minutes].append(time.perf_counter() - t0)
    rtf = {}
    for minutes, result in results.items():
        median = statistics.median(times[minutes])
        rtf[minutes] = median / result.duration
        print(f"{minutes:>7g} min   median {median:8.2f} s of {repeats}   RTF {rtf[minutes]:.5f}   "
              f"{len(result.segments)} segments, {len(result.words)} words")
    first, last = min(rtf), max(rtf)
    print(f"  {last:g} min / {first:g} min: RTF ratio {rtf[last] / rtf[first]:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0], help="file lengths (default 1 60)")
    p.add_argument("--command", default=DEFAULT_COMMAND, help=f"command template (default: {DEFAULT_COMMAND})")
    p.add_argument("--segment-only", action="store_true", help="read and segment with asr.segment, no model")
    p.add_argument("--rate", type=int, default=16_000, help="sample rate of the files written (default 16000)")
    p.add_argument("--workdir", help="keep the audio files here and reuse them (default: a temporary folder)")
    p.add_argument("--in-process", action="store_true",
                   help="time Transcriber.transcribe on each file in this process (no startup, warmed up)")
    p.add_argument("--repeats", type=int, default=3, help="--in-process: runs per file, median (default 3)")
    p.add_argument("--threads", type=int, default=2, help="--in-process: torch threads (default 2)")
    p.add_argument("--decoder", choices=["greedy", "beam"], help="--in-process: override the model's decoder")
    p.add_argument("--worker", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        files = {}
        for minutes in args.minutes:
            files[minutes] = workdir / f"an4-{minutes:g}min-{args.rate}hz.wav"
            if not files[minutes].exists():
                t0 = time.perf_counter()
                make_long_audio(60 * minutes, files[minutes], args.rate)
                print(f"wrote {files[minutes]} ({time.perf_counter() - t0:.1f} s)")
        if args.in_process:
            _in_process(files, args.repeats, args.threads, args.decoder)
        elif args.segment_only:
            for mode, name in [("segment", "read_blocks + segments"), ("load", "load_audio (whole file)")]:
                runs = {}
                for minutes, path in files.items():
                    runs[minutes] = r = run_measured([sys.executable, __file__, "--worker", mode, str(path)])
                    if r["returncode"] == 0:
                        r["stats"] = json.loads(r["stdout"].strip().splitlines()[-1])
                _report(name, runs)
        else:
            runs = {}
            for minutes, path in files.items():
                with tempfile.TemporaryDirectory() as tmp:
                    runs[minutes] = run_measured(_command(args.command, path, Path(tmp)))
            _report(args.command, runs)


if __name__ == "__main__":
    main()
