"""Training throughput on CPU and where the step time goes.

    python bench/bench_train.py throughput [--presets small base] [--steps 20] [--threads 2]

`throughput`: the real training step (AN4 batches of --max-batch-seconds from the DataLoader with
one worker, SpecAugment, forward, CTC loss, backward, clipping, AdamW) for each preset. It reports
audio-seconds trained per second and the share of the step spent outside the model's forward and
backward passes (waiting for data, the loss, clipping, the optimizer), medians over the steps
after a warm-up. (FLOPs per preset: bench/bench_floor.py.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from asr.model import Model, preset_config


def _endless(loader):
    """The loader's batches epoch after epoch, so a manifest of fewer batches than steps still serves them all."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            sys.exit("error: the manifest gives no batch (no utterance within the duration limits?)")


def throughput(args) -> None:
    from asr.audio import FeatureExtractor, SpecAugment
    from asr.data import BucketBatchSampler, SpeechDataset, collate, read_manifest
    from asr.text import CharTokenizer
    from asr.train import ctc_loss

    utts, _ = read_manifest(args.manifest)
    tok = CharTokenizer()
    dataset = SpeechDataset(utts, FeatureExtractor(mean=torch.zeros(80), std=torch.ones(80)), tok, SpecAugment())
    sampler = BucketBatchSampler([u.duration for u in utts], args.max_batch_seconds)
    for name in args.presets:
        torch.manual_seed(0)
        model = Model(preset_config(name, tok.vocab_size)).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = _endless(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                                      num_workers=1))
        rates, outside = [], []
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            batch = next(loader)
            t1 = time.perf_counter()
            log_probs, out_lengths = model(batch.feats, batch.lengths)
            t2 = time.perf_counter()
            loss = ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths)
            t3 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t4 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            t5 = time.perf_counter()
            if i >= args.warmup:
                audio = float(batch.lengths.sum()) * 0.01
                rates.append(audio / (t5 - t0))
                outside.append(1 - ((t2 - t1) + (t4 - t3)) / (t5 - t0))
        print(f"{name}: {statistics.median(rates):.1f} audio-seconds/s, outside forward/backward "
              f"{100 * statistics.median(outside):.1f} % (median of {args.steps} steps, {args.threads} threads, "
              f"batches of {args.max_batch_seconds:.0f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--presets", nargs="+", default=["small", "base"])
    t.add_argument("--manifest", default="data/an4/an4-train.jsonl")
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--max-batch-seconds", type=float, default=40.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    throughput(args)


if __name__ == "__main__":
    main()
