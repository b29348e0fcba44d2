"""Noisy copies of dev manifests: every utterance mixed with a stretch of one noise file at a fixed SNR.

    python recipes/english/noisy_dev.py --snr 10 --noise-dir runs/english/noise --out data/english/cache/noisy10 \
        data/english/cache/train-clean-5-dev.jsonl data/english/cache/so762-train-dev.jsonl

Writes OUT/<id>.wav and OUT/<manifest name>-snr<SNR>.jsonl for each manifest, with the noise types the
English model's stage 3 trains with (`recipes/an4/make_noise.py`). The mixing is `asr.audio.NoiseMixer`'s,
with the SNR fixed and the noise file and offset drawn from --seed, so the copies are the same on every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import soundfile
import torch

from asr.atomic import atomic_open
from asr.audio import SAMPLE_RATE, NoiseMixer, load_audio
from asr.data import read_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manifests", nargs="+", help="dev manifests to copy")
    ap.add_argument("--snr", type=float, required=True, help="signal-to-noise ratio in dB")
    ap.add_argument("--noise-dir", required=True, help="folder of noise recordings")
    ap.add_argument("--out", required=True, help="folder for the noisy audio and manifests")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mixer = NoiseMixer.from_folder(args.noise_dir, (args.snr, args.snr), 1.0)
    generator = torch.Generator().manual_seed(args.seed)
    for manifest in args.manifests:
        utts, _ = read_manifest(manifest)
        rows = []
        for u in utts:
            path = (out / f"{u.id}.wav").resolve()
            soundfile.write(path, mixer(load_audio(u.audio), generator), SAMPLE_RATE)
            rows.append({"id": u.id, "audio": str(path), "duration": u.duration, "text": u.text, "speaker": u.speaker})
        target = out / f"{Path(manifest).stem}-snr{args.snr:g}.jsonl"
        with atomic_open(target, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        print(f"wrote {target}: {len(rows)} utterances")


if __name__ == "__main__":
    main()
