"""Write a folder of audio that holds no speech, to check that a model gives no words for it.

Kinds (each file 3-8 s, at a random level between -35 and -10 dBFS):
- noise: white, pink and brown noise, mains hum, and their sum;
- music-like: a held tone, a chord, and a melody (notes of a scale with harmonics and a decay, one after
  another, as a plucked or struck instrument plays them), alone and over soft noise;
- silence: digital zero, and a near-silent hiss (-60 dBFS).

Usage: python recipes/english/nonspeech.py --out data/nonspeech --count 4 --seed 0
  -> OUT/<kind>-<n>.wav (16 kHz mono 16-bit) and OUT/manifest.jsonl (empty transcripts: the truth is "no words").
Deterministic for a given --seed; the tests use another seed than the measurement in MODEL.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile

RATE = 16_000


def _colored(rng, n: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    freqs[0] = freqs[1]
    spectrum /= freqs ** (exponent / 2)
    spectrum[freqs < 20] = 0
    return np.fft.irfft(spectrum, n)


def _note(rng, n: int, freq: float) -> np.ndarray:
    t = np.arange(n) / RATE
    harmonics = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 6))
    return harmonics * np.exp(-t * rng.uniform(1.5, 5.0)) * np.minimum(1, t / 0.01)  # attack, then decay


def _melody(rng, n: int) -> np.ndarray:
    scale = 220 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    out, pos = np.zeros(n), 0
    while pos < n:
        length = int(rng.uniform(0.15, 0.6) * RATE)
        take = min(length, n - pos)
        out[pos:pos + take] += _note(rng, take, rng.choice(scale) * rng.choice([1, 2]))
        pos += take
    return out


def signal(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """One non-speech signal of `kind` at unit RMS (silence: zeros or a faint hiss)."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        x = _colored(rng, n, 1.0 if kind == "pink" else 2.0)
    elif kind == "hum":
        mains = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * mains * k * t) for k in range(1, 8))
    elif kind == "noise-mix":
        x = sum(signal(k, rng, seconds) for k in ("white", "pink", "brown", "hum"))
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(200, 1000) * t)
    elif kind == "chord":
        root = rng.uniform(180, 400)
        x = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.25, 1.5))  # a major triad, held
    elif kind == "melody":
        x = _melody(rng, n)
    elif kind == "melody-noisy":
        x = _unit(_melody(rng, n)) + 0.1 * _unit(_colored(rng, n, 1.0))  # 20 dB above soft pink noise
    elif kind == "zero":
        return np.zeros(n)
    elif kind == "hiss":
        return 10 ** (-60 / 20) * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return _unit(x)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


KINDS = ("white", "pink", "brown", "hum", "noise-mix", "tone", "chord", "melody", "melody-noisy", "zero", "hiss")


def write(out: Path, count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in KINDS:
        for k in range(count):
            seconds = float(rng.uniform(3, 8))
            x = signal(kind, rng, seconds)
            if kind not in ("zero", "hiss"):
                x = x * 10 ** (rng.uniform(-35, -10) / 20)
            path = out / f"{kind}-{k}.wav"
            soundfile.write(str(path), np.clip(x, -1, 1).astype(np.float32), RATE, subtype="PCM_16")
            rows.append({"id": f"{kind}-{k}", "audio": path.name, "duration": round(seconds, 3), "text": "",
                         "kind": kind})
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--count", type=int, default=4, help="files of each kind")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rows = write(args.out, args.count, args.seed)
    print(f"{args.out}: {len(rows)} files of {len(KINDS)} kinds")


if __name__ == "__main__":
    main()
