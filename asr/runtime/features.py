"""Log-mel features in numpy, equal to `asr.audio.FeatureExtractor`'s (within 1e-4; a test checks).

The same steps in the same order: a centred STFT with constant (zero) padding and a periodic Hann window
of `win_length` centred in `n_fft`, the power spectrum, the Slaney mel filter bank that the checkpoint's
features used (shipped in the export folder as `mel_filters.npy`, so neither torchaudio nor librosa is
needed here), the log with the same floor, then the utterance's own mean taken out (`normalize:
utterance`, digital-silence frames left out of it) and the training statistics applied.

Written with numpy's FFT rather than a library's STFT: the framing rule (torch.stft's `center=True` with
zero padding, the window placed in the middle of the FFT frame) is what must match, and it is a few lines.

Dimensions: N samples, T frames, F mel bins, K = n_fft/2+1 frequency bins.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from asr.audio import FeatureConfig

FRAMES_PER_BLOCK = 128  # frames whose spectra are computed at once (`Features.log_mel`)


class Features:
    """(N,) float32 samples at the model's rate -> (T, F) float32 normalised log-mel, T = 1 + N // hop."""

    def __init__(self, config: FeatureConfig, mel: np.ndarray, mean: np.ndarray | None, std: np.ndarray | None,
                 power_floor: float = 1e-10):
        self.config, self.mel, self.mean, self.std = config, mel.T.astype(np.float32), mean, std  # mel: (K, F)
        self.power_floor = power_floor
        # log-mel frames entirely below this hold no signal at all (asr.audio._SILENCE_LOG)
        self.silence_log = math.log(power_floor) + 1.0
        n = np.arange(config.win_length)
        window = 0.5 - 0.5 * np.cos(2 * math.pi * n / config.win_length)  # periodic Hann, as torch.hann_window
        left = (config.n_fft - config.win_length) // 2
        self.window = np.zeros(config.n_fft)
        self.window[left: left + config.win_length] = window

    @classmethod
    def from_bundle(cls, bundle) -> Features:
        return cls(bundle.features, bundle.mel, bundle.mean, bundle.std, bundle.power_floor)

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """(N,) samples -> (T, F) log-mel, T = 1 + N // hop_length."""
        c = self.config
        pad = c.n_fft // 2
        x = np.pad(np.asarray(wave, dtype=np.float32), (pad, pad))
        frames = np.lib.stride_tricks.sliding_window_view(x, c.n_fft)[:: c.hop_length]  # (T, n_fft), a view
        out = np.empty((len(frames), self.mel.shape[1]), dtype=np.float32)
        # In blocks of frames: the float64 spectra of a 30-s segment whole are 12 MB each, fresh memory at every
        # call; blocks of 128 frames stay in cache (30 s: 6.4 ms instead of 8.6, and 30 MB less at the peak).
        for start in range(0, len(frames), FRAMES_PER_BLOCK):
            # float64 FFT: a few ulps of float32 rounding in the quietest bins would otherwise show after the log.
            spec = np.fft.rfft(frames[start: start + FRAMES_PER_BLOCK] * self.window, axis=1)  # (block, K)
            power = spec.real**2
            power += spec.imag**2
            np.matmul(power.astype(np.float32), self.mel, out=out[start: start + FRAMES_PER_BLOCK])
        out += np.float32(self.power_floor)
        return np.log(out, out=out)  # (T, F)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        feats = self.log_mel(wave)
        if self.config.normalize == "utterance":
            live = feats.max(axis=1) > self.silence_log
            feats = feats - (feats[live] if live.any() else feats).mean(axis=0)
        if self.mean is not None:
            feats = (feats - self.mean) / self.std
        return feats.astype(np.float32, copy=False)


@contextlib.contextmanager
def one_blas_thread():
    """numpy's BLAS (OpenBLAS in numpy's wheels) on one thread inside the block, as it was after it.

    The mel projection is numpy's one BLAS call here, and a small one. With OpenBLAS's default of a thread
    per core, its threads spin idle for a while after each call, on the cores onnxruntime's threads run
    the encoder on next: the English model's encoder took 1.47 s over a 10-minute file in the pipeline
    against 0.69 s for the same batches alone (BENCHMARKS.md, "Runtime"). threadpoolctl is the library
    that sets a native thread pool's size at run time, scoped; entering and leaving costs ~0.3 ms.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
