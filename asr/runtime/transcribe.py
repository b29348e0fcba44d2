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
from asr.batching import (
    chunk_result,
    decode_by_length,
    padded_frames,
    speech_windows,
    split_pause,
    transcript_of,
)
from asr.confidence import Calibration
from asr.errors import InputError
from asr.inputs import to_mono
from asr.memory import HeapTrimmer
from asr.outputs import Segment, Transcript
from asr.runtime import bundle as fmt
from asr.runtime.decoding import decoder_from_settings
from asr.runtime.encoder import Encoder
from asr.runtime.features import Features

# Segments are sorted by length within windows of this much speech (asr.batching.SORT_SECONDS is 480 for the
# PyTorch path): half the audio held at once took an hour's peak memory from 301 to 276 MB at the same speed.
RUNTIME_SORT_SECONDS = 240.0


class Transcriber:
    """An exported model that turns audio into a Transcript; `asr.runtime.load` returns one."""

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
        from asr.segment import segments

        damage: list[str] = []
        chunks = segments(self._blocks(audio, sample_rate, damage), max_seconds=max_segment_seconds,
                          min_seconds=min_segment_seconds, overlap_seconds=min(2.0, min_segment_seconds / 2),
                          split_pause_seconds=split_pause(self.metadata, split_pause_seconds))
        decoded: list[tuple[Segment, list, str]] = []
        duration = 0.0
        heap = HeapTrimmer()
        for window, end in speech_windows(chunks, RUNTIME_SORT_SECONDS):
            decoded += self._decode_by_length(window, batch_size)
            duration = end
            heap.check()
        return transcript_of(decoded, duration, damage, self.calibration)

    # One utterance at a time, as `asr.streaming.Stream` runs it (the PyTorch Transcriber has the same calls).

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per output frame."""
        return self.bundle.features.frame_seconds * self.bundle.subsampling

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """(N,) mono samples at SAMPLE_RATE, taken as one utterance -> (T', V) float32 log-probs (padded as
        batches are: the PyTorch Transcriber's `log_probs` says why)."""
        log_probs, out_lengths = self.encoder(*pad_batch([self.features(audio)]))
        return log_probs[0, : int(out_lengths[0])]

    def decode_log_probs(self, log_probs: np.ndarray):
        """(T', V) log-probs of one utterance -> the decoder's `asr.alignment.Hypothesis`."""
        lp = np.ascontiguousarray(log_probs, dtype=np.float32)[None]
        return self.decode(lp, np.array([lp.shape[1]], dtype=np.int64), self.tokenizer, self.frame_seconds)[0]

    def _decode_by_length(self, chunks: list, batch_size: int) -> list[tuple[Segment, list, str]]:
        return decode_by_length(chunks, batch_size, self._decode_chunks)

    def _decode_chunks(self, chunks: list) -> list[tuple[Segment, list, str] | None]:
        """Encoder and decoder over a batch of chunks -> for each, (Segment, n-best, verdict) or None without words."""
        padded, lengths = pad_batch([self.features(c.audio) for c in chunks])
        log_probs, out_lengths = self.encoder(padded, lengths)  # (B, T', V)
        frame_seconds = self.bundle.features.frame_seconds * self.bundle.subsampling
        hyps = self.decode(log_probs, out_lengths, self.tokenizer, frame_seconds)
        return [chunk_result(chunk, hyp, frame_seconds, self.calibration)
                for chunk, hyp in zip(chunks, hyps, strict=True)]

    def _blocks(self, audio, sample_rate: int | None, damage: list[str]) -> Iterator[np.ndarray]:
        from asr.segment import read_blocks

        if isinstance(audio, (str, Path)):
            started = False
            try:
                for block in read_blocks(audio, block_seconds=10.0):
                    started = True
                    yield block
            except InputError as e:
                if not started:
                    raise
                damage.append(str(e))
            return
        if sample_rate is None:
            raise ValueError("an array needs its sample_rate")
        wave = to_mono(audio)
        if sample_rate != SAMPLE_RATE:
            wave = resample(wave, sample_rate, SAMPLE_RATE)
        block = 10 * SAMPLE_RATE
        for start in range(0, len(wave), block):
            yield wave[start: start + block]


def pad_batch(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """[(T_i, F)] features -> ((B, T, F) zero-padded to `padded_frames` of the longest, lengths (B,) int64)."""
    lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
    padded = np.zeros((len(feats), padded_frames(int(lengths.max())), feats[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = f
    return padded, lengths
