"""Our log-mel features against librosa's and torchaudio's: time per call, and how far apart they are.

    python bench/bench_features.py [--seconds 60] [--threads 2] [--repeats 5] [--tol 1e-3]

All three compute the same thing on the same real AN4 speech (concatenated to --seconds): STFT with
n_fft 512, hop 160, a 400-sample periodic Hann window, center=True with constant (zero) padding,
power 2, 80 Slaney-scale mels with Slaney area normalisation, then log(x + 1e-10).

- ours: asr.audio.FeatureExtractor().log_mel (torch STFT, torchaudio's filter bank, one matmul)
- librosa: librosa.feature.melspectrogram, on the numpy array
- torchaudio: torchaudio.transforms.MelSpectrogram(norm="slaney", mel_scale="slaney"), on a tensor

Times are median (min-max) of --repeats calls after one warm-up, the three taking turns, with torch
and the BLAS numpy uses limited to --threads. The difference is taken in the log domain against ours:
the maximum absolute difference, and the fraction of frames with any bin off by more than --tol (the
log of near-zero power, as in digital silence, magnifies tiny absolute differences).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import librosa
import numpy as np
import soundfile
import torch
import torchaudio
from bench_inference import make_audio, timed  # bench/ is on sys.path when run as a script
from threadpoolctl import threadpool_limits

from asr.audio import FeatureExtractor

N_FFT, HOP, WIN, N_MELS, RATE = 512, 160, 400, 80, 16000


def extractors() -> dict:
    """name -> function of the (N,) float32 waveform giving (T, F) log-mel as a numpy array."""
    ours = FeatureExtractor()
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=RATE, n_fft=N_FFT, win_length=WIN, hop_length=HOP, n_mels=N_MELS, window_fn=torch.hann_window,
        power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney")

    def with_librosa(wave: np.ndarray) -> np.ndarray:
        power = librosa.feature.melspectrogram(
            y=wave, sr=RATE, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window="hann", center=True,
            pad_mode="constant", power=2.0, n_mels=N_MELS, htk=False, norm="slaney")  # (F, T)
        return np.log(power + 1e-10).T

    def with_torchaudio(wave: torch.Tensor) -> torch.Tensor:
        return torch.log(mel(wave) + 1e-10).T  # (F, T) -> (T, F)

    return {"ours": ours.log_mel, "librosa": with_librosa, "torchaudio": with_torchaudio}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tol", type=float, default=1e-3, help="log-domain difference counted as a mismatch")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audio.wav"
        make_audio(args.seconds, path)
        wave, _ = soundfile.read(path, dtype="float32")
    inputs = {"ours": wave, "librosa": wave, "torchaudio": torch.from_numpy(wave)}
    print(f"{args.seconds:g} s of AN4 speech, torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
          f"librosa {librosa.__version__}, {args.threads} threads, median (min-max) of {args.repeats}\n")
    print(f"| extractor | ms per call | RTF | max abs log difference to ours | frames off by > {args.tol:g} |")
    print("|---|---|---|---|---|")
    fns = extractors()
    with threadpool_limits(args.threads), torch.inference_mode():
        outs = {name: np.asarray(fn(inputs[name])) for name, fn in fns.items()}  # also the warm-up
        times = {name: [] for name in fns}
        for _ in range(args.repeats):  # the extractors take turns, so drifting machine load hits all alike
            for name, fn in fns.items():
                times[name].append(timed(lambda fn=fn, x=inputs[name]: fn(x), 1)[0])
    for name, out in outs.items():
        assert out.shape == outs["ours"].shape, (name, out.shape, outs["ours"].shape)
        diff = np.abs(out.astype(np.float64) - outs["ours"])
        ms = [1000 * t for t in times[name]]
        print(f"| {name} | {statistics.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f}) "
              f"| {statistics.median(times[name]) / args.seconds:.5f} | {diff.max():.2e} "
              f"| {100 * np.mean(diff.max(axis=1) > args.tol):.2f} % |")


if __name__ == "__main__":
    main()
