"""Reduced precision for inference: speed of the whole transcription path and WER, fp32 against bf16 and int8.

    python bench/bench_precision.py [--model CKPT] [--seconds 60] [--threads 2] [--repeats 5] [--batch-size 8]
        [--floor-rtf X]

For each of fp32, bf16 (autocast) and int8 (dynamic quantisation of the LSTMs and linear layers; see
asr.model.for_inference):
- the whole path, `Transcriber.transcribe` of --seconds of real AN4 speech with greedy decoding, and
  the model forward alone on the same audio as one sequence: median (min-max) of --repeats, the
  precisions taking turns within each repeat so that machine load hits them alike; the speed-up over
  fp32 of the same repeat; with --floor-rtf (the fp32 encoder floor from bench_floor.py), the whole
  path's real-time factor divided by it;
- WER and CER on the AN4 dev manifest, greedy and with the model's stored beam search + LM settings.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from bench_inference import make_audio, spread, timed  # bench/ is on the path when a script there runs

from asr.audio import load_audio
from asr.catalog import resolve
from asr.decoding import decoder_from_settings, greedy_decode
from asr.evaluate import decode_utterances
from asr.metrics import score
from asr.train import load_utterances
from asr.transcribe import Transcriber

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16", "int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="an4",
                   help="bundled model name or checkpoint (default: an4, as in BENCHMARKS.md)")
    p.add_argument("--manifest", default=str(REPO / "data" / "an4" / "an4-dev.jsonl"))
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8, help="segments per model batch (Transcriber.transcribe)")
    p.add_argument("--floor-rtf", type=float, help="fp32 encoder floor RTF (bench_floor.py)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: Transcriber.load(args.model, decode=greedy_decode, precision=name) for name in PRECISIONS}
    whole: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    forward: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audio.wav"
        make_audio(args.seconds, path)
        feats = models["fp32"].features(load_audio(path)).unsqueeze(0)
        lengths = torch.tensor([feats.shape[1]])
        for t in models.values():
            t.transcribe(path)  # warm-up
        for _ in range(args.repeats):
            for name, t in models.items():
                whole[name].append(timed(lambda t=t: t.transcribe(path, batch_size=args.batch_size), 1)[0])
                with torch.inference_mode():
                    forward[name].append(timed(lambda t=t: t.model(feats, lengths), 1)[0])
    n = args.seconds
    print(f"{n:.0f} s of AN4 speech, greedy, {args.threads} threads, median (min-max) of {args.repeats}\n")
    print("| precision | whole path RTF | speed-up over fp32 | model forward RTF | whole / floor |")
    print("|---|---|---|---|---|")
    for name in PRECISIONS:
        speedup = [f / s for f, s in zip(whole["fp32"], whole[name], strict=True)]
        floor = spread([s / n / args.floor_rtf for s in whole[name]], ".2f") if args.floor_rtf else ""
        print(f"| {name} | {spread([s / n for s in whole[name]], '.5f')} | {spread(speedup, '.2f')} "
              f"| {spread([s / n for s in forward[name]], '.5f')} | {floor} |")

    utts = load_utterances([args.manifest], "benchmark")
    refs = [u.text for u in utts]
    print(f"\n{len(utts)} utterances of {args.manifest}\n")
    print("| precision | greedy WER | greedy CER | beam + LM WER | beam + LM CER |\n|---|---|---|---|---|")
    stored = models["fp32"].metadata.get("decoder")
    beam = decoder_from_settings(stored, base_dir=resolve(args.model).parent) if stored else None
    for name, t in models.items():
        cells = []
        for decode in (greedy_decode, beam):
            if decode is None:
                cells += ["", ""]
                continue
            decoded = decode_utterances(t.model, t.features, t.tokenizer, utts, decode=decode)
            s = score(refs, [x.hypothesis.text if x.hypothesis else "" for x in decoded])
            cells += [f"{100 * s.wer:.2f} %", f"{100 * s.cer:.2f} %"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
