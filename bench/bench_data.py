"""Data loading and corpus scanning speed.

    python bench/bench_data.py loading [--manifest data/an4/an4-train.jsonl] [--workers 2] [--repeats 3]
                                       [--speed-perturb] [--rir-dir DIR]
    python bench/bench_data.py scan [--files 30000]

`loading`: the training DataLoader (audio read, SpecAugment, optionally speed perturbation and rooms
from DIR's impulse responses, log-mel, padding) over a manifest with no model attached: audio-seconds
delivered per wall second, median of several passes. Compare with `audio_seconds_per_second` in a
training run's metrics.jsonl.

`scan`: writes a LibriSpeech-shaped tree of tiny FLAC files (speaker/chapter/utt.flac with
.trans.txt files) to a temporary folder and times `scan_librispeech` on it, against the time
spent reading the file headers alone (soundfile.info), in the same run; then a rescan that takes
the durations from the manifest the first scan wrote.
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


def bench_loading(args) -> None:
    from asr.audio import FeatureExtractor, Reverberator, SpecAugment, SpeedPerturb
    from asr.data import BucketBatchSampler, SpeechDataset, collate, read_manifest
    from asr.text import CharTokenizer

    utts, _ = read_manifest(args.manifest)
    features = FeatureExtractor(mean=torch.zeros(80), std=torch.ones(80))
    augment = [SpeedPerturb()] if args.speed_perturb else []
    augment += [Reverberator.from_folder(args.rir_dir)] if args.rir_dir else []
    dataset = SpeechDataset(utts, features, CharTokenizer(), SpecAugment(), wave_augment=augment)
    sampler = BucketBatchSampler([u.duration for u in utts], 40.0)
    audio = sum(u.duration for u in utts)
    rates = []
    for epoch in range(args.repeats):
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                             num_workers=args.workers)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        rates.append(audio / (time.perf_counter() - t0))
    on = {True: "on", False: "off"}
    print(f"loading {len(utts)} utterances ({audio / 60:.1f} min), {args.workers} workers, "
          f"speed perturbation {on[args.speed_perturb]}, rooms {on[bool(args.rir_dir)]}: "
          f"median {statistics.median(rates):.0f} "
          f"audio-seconds/s over {args.repeats} passes ({', '.join(f'{r:.0f}' for r in rates)})")


def bench_scan(args) -> None:
    from asr.corpora import scan_librispeech

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "LibriSpeech" / "train-clean-100"
        wave = (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32)  # 0.1 s
        per_chapter, made = 50, 0
        t0 = time.perf_counter()
        while made < args.files:
            speaker, chapter = made // (per_chapter * 10), (made // per_chapter) % 10
            folder = root / str(speaker) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            lines = []
            for k in range(min(per_chapter, args.files - made)):
                uid = f"{speaker}-{chapter}-{k:04d}"
                soundfile.write(folder / f"{uid}.flac", wave, 16000)
                lines.append(f"{uid} SOME WORDS HERE")
                made += 1
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        print(f"wrote {made} files in {time.perf_counter() - t0:.1f} s")
        flacs = sorted(root.rglob("*.flac"))
        t0 = time.perf_counter()
        for f in flacs:
            soundfile.info(str(f))
        headers = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = scan_librispeech(Path(d))
        scan = time.perf_counter() - t0
        n = sum(len(v) for v in found.values())
        print(f"scan_librispeech: {n} utterances in {scan:.2f} s ({n / scan:.0f} files/s); "
              f"reading the {len(flacs)} headers alone, one thread: {headers:.2f} s; ratio {scan / headers:.2f}")
        from asr.data import write_manifest

        write_manifest(Path(d) / "train-clean-100.jsonl", found["train-clean-100"])
        t0 = time.perf_counter()
        scan_librispeech(Path(d), cache_dir=Path(d))
        print(f"rescan with the manifest as duration cache: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    lo = sub.add_parser("loading")
    lo.add_argument("--manifest", default="data/an4/an4-train.jsonl")
    lo.add_argument("--workers", type=int, default=2)
    lo.add_argument("--repeats", type=int, default=3)
    lo.add_argument("--speed-perturb", action="store_true")
    lo.add_argument("--rir-dir", metavar="DIR", help="play every utterance in a room from DIR's impulse responses")
    sc = sub.add_parser("scan")
    sc.add_argument("--files", type=int, default=30_000)
    args = p.parse_args()
    torch.set_num_threads(1)
    bench_loading(args) if args.what == "loading" else bench_scan(args)


if __name__ == "__main__":
    main()
