"""The exported network, run by onnxruntime: (features, lengths) -> (log-probs, output lengths), as `asr.model.Model`.

Dimensions: B batch, T input frames, F mel bins, T' = T/4 output frames, V vocabulary.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asr.errors import InputError, InstallError


def available_cores() -> int:
    """The CPU cores this process may run on (as `asr.model.available_cores`, which needs torch)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Encoder:
    """An onnxruntime session over `encoder.onnx`, on the CPU with `threads` threads (default: the cores
    this process may use; onnxruntime's own default is every physical core, whatever else runs there)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise InstallError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from None
        if threads is not None and threads < 1:
            raise InputError(f"--threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no warnings about unused initialisers on stderr
        # Idle threads spin (onnxruntime's default), as torch's OpenMP threads do: on 2 idle cores the English
        # encoder ran 30 s of speech in 44 ms spinning and 63 ms sleeping (PyTorch fp32: 47 ms). On cores busy
        # with other work spinning costs instead (0.17 s against 0.11 s, 2 threads): give fewer --threads there.
        # No memory pattern: it plans buffers for each input shape it sees, and segments come in many (an
        # hour's peak memory 338 -> 301 MB without it, at the same speed; BENCHMARKS.md, "Runtime").
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a damaged or foreign file
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: onnxruntime cannot load this model ({reason})") from None
        self.threads = options.intra_op_num_threads

    def __call__(self, feats: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """feats (B, T, F) float32, lengths (B,) -> log-probs (B, T', V) float32, output lengths (B,) int64."""
        log_probs, out_lengths = self.session.run(
            ["log_probs", "out_lengths"],
            {"features": np.ascontiguousarray(feats, dtype=np.float32), "lengths": np.asarray(lengths, dtype=np.int64)})
        return log_probs, out_lengths
