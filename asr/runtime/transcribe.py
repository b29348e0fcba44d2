"""Audio -> `Transcript` with an exported model: `asr.transcribe.Transcriber`'s pipeline without torch.

The same stages with the same settings, so that the results are the PyTorch path's (tests compare them):
blocks of the file (`asr.segment.read_blocks`), segments cut at pauses (`asr.segment.segments`), windows of
`RUNTIME_SORT_SECONDS` of speech batched by length and padded as the PyTorch path does (`asr.batching`), features
(numpy), the encoder (onnxruntime), the decoder, word times moved onto the sound
(`asr.alignment.fit_to_speech`), words kept by the segment that owns them, calibrated confidences and
verdicts (`asr.confidence`).

Dimensions: N samples, T frames, F mel bins, T' output frames, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, resample
from asr.batching import audio_blocks, chunk_result, padded_frames, split_pause, transcribe_blocks
from asr.confidence import Calibration
from asr.inputs import to_mono
from asr.outputs import Segment, Transcript
from asr.runtime import bundle as fmt
from asr.runtime.decoding import decoder_from_settings
from asr.runtime.encoder import Encoder
from asr.runtime.features import Features, one_blas_thread

# Segments are sorted by length within windows of this much speech (asr.batching.SORT_SECONDS is 480 for the
# PyTorch path): half the audio held at once took an hour's peak memory from 301 to 276 MB at the same speed.
RUNTIME_SORT_SECONDS = 240.0


class Transcriber:
    """An exported model that turns audio into a Transcript; `asr.runtime.load` returns one."""

    sort_seconds = RUNTIME_SORT_SECONDS  # segments are batched by length within windows of this much speech

    def __init__(self, bundle: fmt.Bundle, encoder: Encoder, decode, decoder_settings: dict):
        self.bundle, self.encoder, self.decode = bundle, encoder, decode
        self.tokenizer, self.features = bundle.tokenizer, Features.from_bundle(bundle)
        self.metadata = bundle.metadata
        self.decoder_settings = decoder_settings  # what chose `decode`, for reports
        self.precision = bundle.precision
        self.calibration = Calibration.from_metadata(self.metadata)  # None: raw confidences, no verdicts

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, decoder: dict | None = None) -> Transcriber:
        """An exported model folder; the decoder it stores with the `decoder` settings laid over it."""
        bundle = fmt.read(path)
        decode, settings = decoder_from_settings({**bundle.decoder, **(decoder or {})}, base_dir=bundle.folder)
        return cls(bundle, Encoder(bundle.encoder, threads), decode, settings)

    def transcribe(self, audio, sample_rate: int | None = None, batch_size: int = 8,
                   max_segment_seconds: float = 30.0, min_segment_seconds: float = 1.0,
                   split_pause_seconds: float | None | str = "model") -> Transcript:
        """`audio`: a file path, or a numpy array (N,), (N, C) or (C, N) with its `sample_rate`. As
        `asr.transcribe.Transcriber.transcribe`: read in blocks, cut at pauses, batched by length; a file
        damaged part-way gives the transcript before the damage, with the reason in `Transcript.error`."""
        damage: list[str] = []
        return transcribe_blocks(self._blocks(audio, sample_rate, damage), damage, self._decode_chunks,
                                 self.calibration, batch_size, max_segment_seconds, min_segment_seconds,
                                 split_pause(self.metadata, split_pause_seconds), self.sort_seconds)

    # One utterance at a time, as `asr.streaming.Stream` runs it (the PyTorch Transcriber has the same calls).

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per output frame."""
        return self.bundle.features.frame_seconds * self.bundle.subsampling

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """(N,) mono samples at SAMPLE_RATE, taken as one utterance -> (T', V) float32 log-probs (padded as
        batches are: the PyTorch Transcriber's `log_probs` says why)."""
        log_probs, out_lengths = self.encoder(*pad_batch(self._features([audio])))
        return log_probs[0, : int(out_lengths[0])]

    def decode_log_probs(self, log_probs: np.ndarray):
        """(T', V) log-probs of one utterance -> the decoder's `asr.alignment.Hypothesis`."""
        lp = np.ascontiguousarray(log_probs, dtype=np.float32)[None]
        return self.decode(lp, np.array([lp.shape[1]], dtype=np.int64), self.tokenizer, self.frame_seconds)[0]

    def _decode_chunks(self, chunks: list) -> list[tuple[Segment, list, str] | None]:
        """Encoder and decoder over a batch of chunks -> for each, (Segment, n-best, verdict) or None without words."""
        padded, lengths = pad_batch(self._features([c.audio for c in chunks]))
        log_probs, out_lengths = self.encoder(padded, lengths)  # (B, T', V)
        hyps = self.decode(log_probs, out_lengths, self.tokenizer, self.frame_seconds)
        return [chunk_result(chunk, hyp, self.frame_seconds, self.calibration)
                for chunk, hyp in zip(chunks, hyps, strict=True)]

    def _features(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Each wave's (T, F) features, computed with numpy's BLAS on one thread (`one_blas_thread` says why)."""
        with one_blas_thread():
            return [self.features(w) for w in waves]

    def _blocks(self, audio, sample_rate: int | None, damage: list[str]) -> Iterator[np.ndarray]:
        return audio_blocks(audio, damage, lambda: self._waveform(audio, sample_rate))

    @staticmethod
    def _waveform(audio, sample_rate: int | None) -> np.ndarray:
        """A numpy array, (N,), (N, C) or (C, N), at `sample_rate` -> mono float32 at SAMPLE_RATE."""
        if sample_rate is None:
            raise ValueError("an array needs its sample_rate")
        wave = to_mono(audio)
        return resample(wave, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else wave


def pad_batch(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """[(T_i, F)] features -> ((B, T, F) zero-padded to `padded_frames` of the longest, lengths (B,) int64)."""
    lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
    padded = np.zeros((len(feats), padded_frames(int(lengths.max())), feats[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = f
    return padded, lengths
