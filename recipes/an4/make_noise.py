"""Write a folder of noise recordings for `asr train --noise-dir`, made from nothing but the training data.

No noise corpus (MUSAN and the like) can be downloaded where this recipe runs, so the noise is built:
- white, pink (1/f) and brown (1/f^2) noise, the stationary hiss and rumble of cheap microphones and rooms;
- mains hum, 50 and 60 Hz with harmonics;
- babble: several training utterances summed at random offsets, the classic stand-in for people talking
  in the background.

Usage: python recipes/an4/make_noise.py --manifest data/an4/an4-train.jsonl --out data/an4-noise
Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile

from asr.atomic import atomic_open
from asr.audio import SAMPLE_RATE, load_audio
from asr.data import read_manifest


def colored(rng: np.random.Generator, seconds: float, exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    spectrum /= freqs ** (exponent / 2)
    spectrum[freqs < 20] = 0  # no DC or sub-audio drift
    return np.fft.irfft(spectrum, n)


def hum(rng: np.random.Generator, seconds: float, mains: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
               for k in range(1, 8)) + 0.05 * rng.standard_normal(len(t))


def babble(rng: np.random.Generator, seconds: float, waves: list[np.ndarray], talkers: int) -> np.ndarray:
    out = np.zeros(int(seconds * SAMPLE_RATE))
    for _ in range(talkers):
        pos = 0
        while pos < len(out):  # one talker: utterances back to back with short gaps
            w = waves[rng.integers(len(waves))]
            w = w / (np.sqrt(np.mean(w**2)) + 1e-9)
            take = min(len(w), len(out) - pos)
            out[pos:pos + take] += w[:take]
            pos += take + int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", required=True, help="training manifest whose audio makes the babble")
    ap.add_argument("--out", required=True, help="folder to write the noise .wav files to")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each noise file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    utts, _ = read_manifest(args.manifest)
    chosen = rng.choice(len(utts), size=min(200, len(utts)), replace=False)
    waves = [load_audio(utts[i].audio) for i in chosen]
    noises = {"white": colored(rng, args.seconds, 0), "pink": colored(rng, args.seconds, 1),
              "brown": colored(rng, args.seconds, 2), "hum-50hz": hum(rng, args.seconds, 50),
              "hum-60hz": hum(rng, args.seconds, 60)}
    for talkers in (3, 5, 8):
        noises[f"babble-{talkers}"] = babble(rng, args.seconds, waves, talkers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, noise in noises.items():
        noise = 0.5 * noise / np.max(np.abs(noise))  # the mixer sets the level; this only avoids clipping
        with atomic_open(out / f"{name}.wav") as f:
            soundfile.write(f, noise.astype(np.float32), SAMPLE_RATE, format="WAV", subtype="PCM_16")
        print(f"{out / name}.wav")


if __name__ == "__main__":
    main()
