"""Audio -> transcripts: the `Transcriber` (also the Python API). What users give it (files, folders, globs,
standard input, arrays of any layout) is sorted out in `asr.inputs`.

Dimensions: N samples, T frames, F mel bins, T' output frames, V vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, resample
from asr.batching import SORT_SECONDS, audio_blocks, chunk_result, padded_frames, split_pause, transcribe_blocks
from asr.confidence import Calibration
from asr.decoding import decoder_from_settings, greedy_decode
from asr.inputs import to_mono
from asr.model import SUBSAMPLING, for_inference, load_checkpoint
from asr.outputs import Segment, Transcript


class Transcriber:
    """A loaded model that turns audio into a Transcript. `asr.load_model()` returns one."""

    sort_seconds = SORT_SECONDS  # segments are batched by length within windows of this much speech

    def __init__(self, model, tokenizer, features, metadata: dict | None = None, device="cpu",
                 decode=greedy_decode):
        self.model, self.tokenizer, self.features = model, tokenizer, features
        self.metadata, self.device, self.decode = metadata or {}, torch.device(device), decode
        self.calibration = Calibration.from_metadata(self.metadata)  # None: raw confidences, no verdicts

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", decode=None,
             decoder: dict | None = None, precision: str = "auto") -> Transcriber:
        """Load a checkpoint: a path, a bundled model's name (`asr.catalog`), or None for the default model.
        The decoder is `decode` if given, else the one the checkpoint stores
        (see `asr lm tune --save`) with the `decoder` settings laid over it, else greedy.
        `precision`: auto, fp32, bf16 or int8 (see `asr.model.for_inference`)."""
        from asr.catalog import resolve

        path = resolve(path)
        model, tokenizer, features, metadata = load_checkpoint(path, device)
        model, precision = for_inference(model, precision)
        settings = {"decoder": "custom"}
        if decode is None:
            settings = {**metadata.get("decoder", {}), **(decoder or {})}
            decode = decoder_from_settings(settings, base_dir=Path(path).parent)
            settings.setdefault("decoder", "greedy" if decode is greedy_decode else "beam")
        t = cls(model, tokenizer, features, metadata, device, decode)
        t.decoder_settings = settings  # what chose `decode`, for reports
        t.precision = precision
        t.calibration = Calibration.from_metadata(metadata)
        return t

    @torch.inference_mode()
    def transcribe(self, audio, sample_rate: int | None = None, batch_size: int = 8,
                   max_segment_seconds: float = 30.0, min_segment_seconds: float = 1.0,
                   split_pause_seconds: float | None | str = "model") -> Transcript:
        """`audio`: a file path, or a numpy array / tensor with its `sample_rate`: (N,), (N, C) as soundfile
        reads, or (C, N) as torchaudio does, told apart by size (`asr.inputs.to_mono`); channels are averaged.

        A file is read in blocks and cut into segments of at most `max_segment_seconds` at pauses
        (`asr.segment`), so memory stays bounded however long it is. The BiLSTM needs each segment
        whole, in both directions; a cut at a pause splits no word and costs it little context, and
        where there is no pause the segments overlap and each word comes from the one where it is
        farther from an edge. Silent segments are skipped; the others go through the model
        `batch_size` at a time, batched by length among the next `SORT_SECONDS` of audio so
        that little of a batch is padding. Word times are seconds from the start of the audio.
        `split_pause_seconds` "model" is the model's own (`asr.batching.split_pause`).

        A file that cannot be read at all raises `InputError`. One damaged part-way (a decoder that
        loses sync, NaN samples) gives the transcript of the audio before the damage, with the reason
        in `Transcript.error`: an hour-long recording is not lost to one bad stretch near its end.
        """
        damage: list[str] = []
        return transcribe_blocks(self._blocks(audio, sample_rate, damage), damage, self._decode_chunks,
                                 self.calibration, batch_size, max_segment_seconds, min_segment_seconds,
                                 split_pause(self.metadata, split_pause_seconds), self.sort_seconds)

    # One utterance at a time, as `asr.streaming.Stream` runs it: the same calls for the runtime's Transcriber.

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per output frame."""
        return self.features.config.frame_seconds * SUBSAMPLING

    @torch.inference_mode()
    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """(N,) mono samples at SAMPLE_RATE, taken as one utterance -> (T', V) float32 log-probs. Padded as
        batches are (`padded_frames`): a window that grows by a fraction of a second at every step would
        otherwise be a new shape each time, for which oneDNN builds its LSTM kernels anew (10-20x the call)."""
        padded, lengths = pad_batch([self.features(audio)])
        log_probs, out_lengths = self.model(padded.to(self.device), lengths.to(self.device))
        return log_probs[0, : int(out_lengths[0])].float().cpu().numpy()

    def decode_log_probs(self, log_probs: np.ndarray):
        """(T', V) log-probs of one utterance -> the decoder's `asr.alignment.Hypothesis`."""
        lp = torch.from_numpy(np.ascontiguousarray(log_probs, dtype=np.float32))[None]
        return self.decode(lp, torch.tensor([lp.shape[1]]), self.tokenizer, self.frame_seconds)[0]

    def _decode_chunks(self, chunks: list) -> list[tuple[Segment, list, str] | None]:
        """Model and decoder over a batch of chunks -> for each chunk, (Segment, n-best, verdict) or None if
        it kept no word. With a calibrated model, word confidences are calibrated and the verdict is
        `asr.confidence.judge`'s; without, every verdict is "ok"."""
        padded, lengths = pad_batch([self.features(c.audio) for c in chunks])
        log_probs, out_lengths = self.model(padded.to(self.device), lengths.to(self.device))  # (B, T', V)
        hyps = self.decode(log_probs, out_lengths, self.tokenizer, self.frame_seconds)
        return [chunk_result(chunk, hyp, self.frame_seconds, self.calibration)
                for chunk, hyp in zip(chunks, hyps, strict=True)]

    def _blocks(self, audio, sample_rate: int | None, damage: list[str]):
        """Mono blocks of `audio`. Where a file turns out damaged after some of it was read, the error
        goes into `damage` and the blocks end there, so the audio before it is still transcribed."""
        return audio_blocks(audio, damage, lambda: self._waveform(audio, sample_rate))

    @staticmethod
    def _waveform(audio, sample_rate: int | None) -> np.ndarray:
        """A numpy array or tensor, (N,), (N, C) or (C, N), at `sample_rate` -> mono float32 at SAMPLE_RATE."""
        if sample_rate is None:
            raise ValueError("an array or tensor needs its sample_rate")
        wave = to_mono(audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio))
        return resample(wave, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else wave


def pad_batch(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(T_i, F)] features -> ((B, T, F) zero-padded to `padded_frames` of the longest, lengths (B,))."""
    lengths = torch.tensor([f.shape[0] for f in feats])
    padded = torch.zeros(len(feats), padded_frames(int(lengths.max())), feats[0].shape[1])
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = f
    return padded, lengths
