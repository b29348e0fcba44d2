"""Write perturbed copies of a manifest's audio, to measure how a model holds up away from clean AN4.

Each condition gets its own folder with the changed audio (16-bit WAV, 16 kHz) and a manifest with the
same ids and transcripts, ready for `asr evaluate`:
- speed-0.9, speed-1.1: played 10 % slower or faster, tempo and pitch alike (as `asr train --speed-perturb`);
- white-20db, white-10db: white noise at 20 or 10 dB signal-to-noise ratio;
- babble-10db: other speakers' AN4 speech summed (3 talkers), at 10 dB; pass --babble with a manifest of
  speakers that are not in --manifest (the training half), so nobody is heard twice;
- telephone: band-limited to 300-3400 Hz through 8 kHz and back (what a phone line passes);
- 8bit: 8-bit quantisation, with its hiss;
- reverb: played in a room, convolved with one room impulse response per utterance from the folder given as
  --rirs (as `asr train --rir-dir` does); pass rooms that training did not use (`make_rirs.py --seed 1`).

Usage:
    python recipes/an4/perturb.py --manifest data/an4/an4-dev.jsonl --babble data/an4/an4-train.jsonl \
        --rirs data/an4-rirs/test --out data/an4-perturbed
    asr evaluate --manifest data/an4-perturbed/white-10db/manifest.jsonl --output r/white-10db

Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile
import torch

from asr.atomic import atomic_open
from asr.audio import SAMPLE_RATE, Reverberator, load_audio, resample
from asr.data import read_manifest, write_manifest


def with_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`wave` plus `noise` scaled to `snr_db` below the speech's mean power."""
    speech_power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-10
    noise_power = float(np.mean(noise.astype(np.float64) ** 2)) or 1e-10
    return wave + noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))


def telephone(wave: np.ndarray) -> np.ndarray:
    """300-3400 Hz through an 8 kHz channel, back at 16 kHz. The band edges are cut in the spectrum of the
    whole utterance (a brick wall) rather than with a biquad filter such as torchaudio's bandpass, whose
    gentle slopes would leave the 0-300 Hz and 3.4-4 kHz bands partly in."""
    narrow = resample(wave, SAMPLE_RATE, 8000)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1 / 8000)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    return resample(np.fft.irfft(spectrum, len(narrow)).astype(np.float32), 8000, SAMPLE_RATE)


def babble(rng: np.random.Generator, others: list[np.ndarray], length: int, talkers: int = 3) -> np.ndarray:
    out = np.zeros(length)
    for _ in range(talkers):
        voice = np.resize(others[rng.integers(len(others))], length)  # repeated to length
        out += np.roll(voice, rng.integers(length))
    return out


def reverberate(room: Reverberator, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`wave` in one of `room`'s impulse responses, drawn with `rng`."""
    return room(wave, torch.Generator().manual_seed(int(rng.integers(2**31))))


def conditions(babble_waves: list[np.ndarray], room: Reverberator | None = None) -> dict:
    """name -> f(wave, rng) -> wave."""
    found = {
        "speed-0.9": lambda w, rng: resample(w, round(SAMPLE_RATE * 0.9), SAMPLE_RATE),
        "speed-1.1": lambda w, rng: resample(w, round(SAMPLE_RATE * 1.1), SAMPLE_RATE),
        "white-20db": lambda w, rng: with_noise(w, rng.standard_normal(len(w)), 20),
        "white-10db": lambda w, rng: with_noise(w, rng.standard_normal(len(w)), 10),
        "telephone": lambda w, rng: telephone(w),
        "8bit": lambda w, rng: np.round(w * 127) / 127,
    }
    if babble_waves:
        found["babble-10db"] = lambda w, rng: with_noise(w, babble(rng, babble_waves, len(w)), 10)
    if room is not None:
        found["reverb"] = lambda w, rng: reverberate(room, w, rng)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="utterances to perturb (e.g. the dev split)")
    p.add_argument("--out", required=True, help="folder for one subfolder per condition")
    p.add_argument("--babble", help="manifest of other speakers for babble noise (e.g. the training half)")
    p.add_argument("--babble-utterances", type=int, default=200, help="how many of them to draw voices from")
    p.add_argument("--rirs", help="folder of room impulse responses for the reverb condition (make_rirs.py)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    utts, problems = read_manifest(args.manifest)
    for problem in problems:
        print(f"skipped: {problem}")
    babble_waves = []
    if args.babble:
        others, _ = read_manifest(args.babble)
        pick = np.random.default_rng(args.seed).permutation(len(others))[: args.babble_utterances]
        babble_waves = [load_audio(others[i].audio) for i in pick]
    room = Reverberator.from_folder(args.rirs) if args.rirs else None
    waves = [load_audio(u.audio) for u in utts]
    for name, change in conditions(babble_waves, room).items():
        folder = Path(args.out) / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(args.seed)
        changed = []
        for u, wave in zip(utts, waves, strict=True):
            out = np.clip(change(wave, rng), -1.0, 1.0).astype(np.float32)
            path = folder / f"{u.id}.wav"
            with atomic_open(path, "wb") as f:
                soundfile.write(f, out, SAMPLE_RATE, format="WAV", subtype="PCM_16")
            changed.append(replace(u, audio=str(path), duration=len(out) / SAMPLE_RATE))
        write_manifest(folder / "manifest.jsonl", changed)
        print(f"{name}: {len(changed)} utterances in {folder}")


if __name__ == "__main__":
    main()
