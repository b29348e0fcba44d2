"""Audio -> `Transcript` with an exported model: `asr.transcribe.Transcriber`'s pipeline without torch.

The same stages with the same settings, so that the results are the PyTorch path's (tests compare them):
blocks of the file (`asr.segment.read_blocks`), segments cut at pauses (`asr.segment.segments`), windows of
`SORT_SECONDS` of speech batched by length and padded as the PyTorch path does (`asr.batching`), features
(numpy), the encoder (onnxruntime), the decoder, word times moved onto the sound
(`asr.alignment.fit_to_speech`), words kept by the segment that owns them, calibrated confidences and
verdicts (`asr.confidence`).

Dimensions: N samples, T frames, F mel bins, T' output frames, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from asr.alignment import fit_to_speech
from asr.audio import SAMPLE_RATE, resample
from asr.batching import SORT_SECONDS, batches_by_length, padded_frames, speech_windows
from asr.confidence import Calibration, judge
from asr.errors import InputError
from asr.outputs import Segment, Transcript
from asr.runtime import bundle as fmt
from asr.runtime.decoding import decoder_from_settings
from asr.runtime.encoder import Encoder
from asr.runtime.features import Features
from asr.segment import speech_frames


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
                   split_pause_seconds: float | None = 0.5) -> Transcript:
        """`audio`: a file path, or a mono numpy array (N,) with its `sample_rate`. As
        `asr.transcribe.Transcriber.transcribe`: read in blocks, cut at pauses, batched by length; a file
        damaged part-way gives the transcript before the damage, with the reason in `Transcript.error`."""
        from asr.segment import segments

        damage: list[str] = []
        chunks = segments(self._blocks(audio, sample_rate, damage), max_seconds=max_segment_seconds,
                          min_seconds=min_segment_seconds, overlap_seconds=min(2.0, min_segment_seconds / 2),
                          split_pause_seconds=split_pause_seconds)
        decoded: list[tuple[Segment, list, str]] = []
        duration = 0.0
        for window, end in speech_windows(chunks, SORT_SECONDS):
            decoded += self._decode_by_length(window, batch_size)
            duration = end
        rejected = [part for part, _, verdict in decoded if verdict == "not speech"]
        decoded = [(part, alt) for part, alt, verdict in decoded if verdict != "not speech"]
        parts = [part for part, _ in decoded]
        words = [w for part in parts for w in part.words]
        text = " ".join(part.text for part in parts)
        alternatives = decoded[0][1] if len(decoded) == 1 else []
        return Transcript(text, round(duration, 3), parts, words, alternatives, damage[0] if damage else None,
                          warning=self._warning(words, rejected))

    def _warning(self, words: list, rejected: list) -> str | None:
        verdict, mean = judge([w.confidence for w in words], self.calibration, calibrated=True)
        if verdict == "probably wrong":
            return (f"probably wrong: mean word confidence {mean:.2f} (noise, another language, or speech unlike "
                    "the training data?)")
        if rejected and not words:
            dropped = sum(len(part.words) for part in rejected)
            return f"no speech recognised: {dropped} low-confidence words dropped (noise, music or another language?)"
        return None

    def _decode_by_length(self, chunks: list, batch_size: int) -> list[tuple[Segment, list, str]]:
        results: dict[int, tuple[Segment, list, str]] = {}
        for batch in batches_by_length([len(c.audio) for c in chunks], batch_size):
            for i, result in zip(batch, self._decode_chunks([chunks[i] for i in batch]), strict=True):
                if result is not None:
                    results[i] = result
        return [results[i] for i in sorted(results)]

    def _decode_chunks(self, chunks: list) -> list[tuple[Segment, list, str] | None]:
        """Encoder and decoder over a batch of chunks -> for each, (Segment, n-best, verdict) or None without words."""
        padded, lengths = pad_batch([self.features(c.audio) for c in chunks])
        log_probs, out_lengths = self.encoder(padded, lengths)  # (B, T', V)
        frame_seconds = self.bundle.features.frame_seconds * self.bundle.subsampling
        results: list[tuple[Segment, list, str] | None] = []
        for chunk, hyp in zip(chunks, self.decode(log_probs, out_lengths, self.tokenizer, frame_seconds), strict=True):
            words = fit_to_speech(hyp.words, hyp.frames, speech_frames(chunk.audio, frame_seconds), frame_seconds)
            shifted = [replace(w, start=round(w.start + chunk.start, 3), end=round(w.end + chunk.start, 3))
                       for w in words]
            kept = [w for w in shifted if chunk.owns((w.start + w.end) / 2)]
            if not kept:
                results.append(None)
                continue
            text = hyp.text if len(kept) == len(shifted) else " ".join(w.word for w in kept)
            alternatives = [{"text": t, "score": round(sc, 3)} for t, sc in hyp.alternatives]
            verdict = "ok"
            if self.calibration is not None:
                verdict, _ = judge([w.confidence for w in kept], self.calibration)
                kept = [replace(w, confidence=round(float(self.calibration(w.confidence)), 4)) for w in kept]
            results.append((Segment(kept[0].start, kept[-1].end, text, kept), alternatives, verdict))
        return results

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
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise InputError(f"audio array of shape {wave.shape}: the runtime takes mono samples (N,)")
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
