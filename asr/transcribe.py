"""Files -> transcripts: the `Transcriber` (also the Python API) and the search for input files.

Dimensions: N samples, T frames, F mel bins, T' output frames, V vocabulary.
"""

from __future__ import annotations

import glob
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, audio_files, resample
from asr.decoding import decoder_from_settings, greedy_decode
from asr.errors import InputError
from asr.model import SUBSAMPLING, for_inference, load_checkpoint
from asr.outputs import Segment, Transcript

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "an4" / "model.pt"
_PAD_FRAMES = 100  # feature frames (1 s) that a batch's padded length is a multiple of


class Transcriber:
    """A loaded model that turns audio into a Transcript. `asr.load_model()` returns one."""

    def __init__(self, model, tokenizer, features, metadata: dict | None = None, device="cpu",
                 decode=greedy_decode):
        self.model, self.tokenizer, self.features = model, tokenizer, features
        self.metadata, self.device, self.decode = metadata or {}, torch.device(device), decode

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", decode=None,
             decoder: dict | None = None, precision: str = "auto") -> Transcriber:
        """Load a checkpoint. The decoder is `decode` if given, else the one the checkpoint stores
        (see `asr lm tune --save`) with the `decoder` settings laid over it, else greedy.
        `precision`: auto, fp32, bf16 or int8 (see `asr.model.for_inference`)."""
        if path is None:
            path = DEFAULT_MODEL
            if not path.is_file():
                raise InputError(f"{path}: bundled model not found; pass --model CHECKPOINT")
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
        return t

    @torch.inference_mode()
    def transcribe(self, audio, sample_rate: int | None = None, batch_size: int = 8,
                   max_segment_seconds: float = 30.0, min_segment_seconds: float = 1.0,
                   split_pause_seconds: float | None = 0.5) -> Transcript:
        """`audio`: a file path, or a 1-D (or (N, C)) numpy array / tensor with its `sample_rate`.

        A file is read in blocks and cut into segments of at most `max_segment_seconds` at pauses
        (`asr.segment`), so memory stays bounded however long it is. The BiLSTM needs each segment
        whole, in both directions; a cut at a pause splits no word and costs it little context, and
        where there is no pause the segments overlap and each word comes from the one where it is
        farther from an edge. `batch_size` segments go through the model together; silent ones are
        skipped. Word times are seconds from the start of the audio.
        """
        from asr.segment import segments

        chunks = segments(self._blocks(audio, sample_rate), max_seconds=max_segment_seconds,
                          min_seconds=min_segment_seconds, overlap_seconds=min(2.0, min_segment_seconds / 2),
                          split_pause_seconds=split_pause_seconds)
        parts: list[Segment] = []
        alternatives: list = []
        duration = 0.0
        batch: list = []
        heap = _HeapTrimmer()
        for chunk in chunks:
            duration = chunk.end
            if not chunk.silent:
                batch.append(chunk)
            if len(batch) == batch_size:
                parts += self._decode_chunks(batch, alternatives)
                batch = []
                heap.check()
        if batch:
            parts += self._decode_chunks(batch, alternatives)
        words = [w for part in parts for w in part.words]
        text = " ".join(part.text for part in parts)
        alternatives = alternatives if len(parts) == 1 else []  # n-best of a whole long file means nothing
        return Transcript(text, round(duration, 3), parts, words, alternatives)

    def _decode_chunks(self, chunks: list, alternatives: list) -> list[Segment]:
        """Model and decoder over a batch of chunks -> one Segment per chunk that kept any word."""
        feats = [self.features(c.audio) for c in chunks]  # each (T, F)
        lengths = torch.tensor([f.shape[0] for f in feats], device=self.device)
        # Padded to whole seconds, so that batch tensors come in few sizes, which the heap reuses
        # instead of fragmenting (see _HeapTrimmer): the padding costs under 3 % more frames.
        longest = -(-max(f.shape[0] for f in feats) // _PAD_FRAMES) * _PAD_FRAMES
        padded = torch.zeros(len(feats), longest, feats[0].shape[1])
        for i, f in enumerate(feats):
            padded[i, : f.shape[0]] = f
        padded = padded.to(self.device)
        log_probs, out_lengths = self.model(padded, lengths)  # (B, T', V)
        frame_seconds = self.features.config.frame_seconds * SUBSAMPLING
        parts = []
        for chunk, hyp in zip(chunks, self.decode(log_probs, out_lengths, self.tokenizer, frame_seconds), strict=True):
            shifted = [replace(w, start=round(w.start + chunk.start, 3), end=round(w.end + chunk.start, 3))
                       for w in hyp.words]
            kept = [w for w in shifted if chunk.owns((w.start + w.end) / 2)]
            if kept:
                text = hyp.text if len(kept) == len(shifted) else " ".join(w.word for w in kept)
                parts.append(Segment(kept[0].start, kept[-1].end, text, kept))
                alternatives[:] = [{"text": t, "score": round(sc, 3)} for t, sc in hyp.alternatives]
        return parts

    def _blocks(self, audio, sample_rate: int | None):
        from asr.segment import read_blocks

        if isinstance(audio, (str, Path)):
            yield from read_blocks(audio, block_seconds=10.0)
            return
        wave = self._waveform(audio, sample_rate)
        block = 10 * SAMPLE_RATE
        for start in range(0, len(wave), block):
            yield wave[start: start + block]

    @staticmethod
    def _waveform(audio, sample_rate: int | None) -> np.ndarray:
        """A numpy array or tensor, (N,) or (N, C), at `sample_rate` -> mono float32 at SAMPLE_RATE."""
        if sample_rate is None:
            raise ValueError("an array or tensor needs its sample_rate")
        wave = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        wave = wave.astype(np.float32)
        if wave.ndim == 2:  # (N, C) -> mono
            wave = wave.mean(axis=1)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"expected a non-empty 1-D or (samples, channels) array, got shape {wave.shape}")
        return resample(wave, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else wave


class _HeapTrimmer:
    """Give freed heap memory back to the system when the resident size has grown by `slack` bytes.

    glibc keeps the memory of freed tensors whose sizes vary from batch to batch (every segment has
    its own length) in its heaps rather than returning it, so an hour of audio ratcheted the
    resident size up from 0.7 to 1.45 GB although little of it was live. Padding batches to whole
    seconds halves that growth; `malloc_trim` after 96 MB of growth bounds the rest (BENCHMARKS.md).
    Elsewhere than glibc this does nothing.
    """

    def __init__(self, slack: int = 96 << 20):
        self.slack, self.base = slack, None
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
            self._statm = open("/proc/self/statm")  # noqa: SIM115 -- read again at every check, closed with self
        except (OSError, AttributeError):
            self._trim = None

    def _resident(self) -> int:
        self._statm.seek(0)
        return int(self._statm.read().split()[1]) * 4096

    def check(self) -> None:
        if self._trim is None:
            return
        now = self._resident()
        if self.base is None:
            self.base = now
        elif now > self.base + self.slack:
            self._trim(0)
            self.base = self._resident()

    def __del__(self):
        if self._trim is not None:
            self._statm.close()


def find_audio(paths: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand files, folders (recursively, audio extensions only) and glob patterns -> ([(file,
    output stem)], problems).

    The output stem mirrors the input tree: `folder/a/b.wav` given as `folder` -> `a/b`; a file
    given by itself -> its name without the extension; a file matched by `talks/**/*.wav` -> its
    path below `talks`, the part of the pattern before the first wildcard.
    """
    found: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for arg in paths:
        p = Path(arg)
        if not p.exists() and any(c in arg for c in "*?["):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                problems.append(f"{arg}: no file matches this pattern")
            base = _glob_base(arg)
            for m in map(Path, matches):
                if m.is_dir():
                    found += [(f, f.relative_to(base).with_suffix("")) for f in audio_files(m)]
                else:
                    found.append((m, m.relative_to(base).with_suffix("")))
        elif p.is_dir():
            files = audio_files(p)
            if not files:
                problems.append(f"{p}: no audio files in this folder")
            found += [(f, f.relative_to(p).with_suffix("")) for f in files]
        elif p.exists():
            found.append((p, Path(p.stem)))
        else:
            problems.append(f"{p}: no such file")
    return found, problems


def stdin_to_file(folder: Path) -> Path:
    """Copy standard input (any format soundfile or librosa reads) to `folder`/asr-stdin, in blocks."""
    import shutil
    import sys

    path = folder / "asr-stdin"
    with open(path, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    if path.stat().st_size == 0:
        raise InputError("-: standard input is empty")
    return path


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts))
    return Path(*fixed) if fixed else Path(".")


def drop_output_collisions(found: list[tuple[Path, Path]]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Keep the first input for every output stem; report the others rather than overwrite its output."""
    taken: dict[Path, Path] = {}
    problems: list[str] = []
    unique = []
    for f, stem in found:
        if stem in taken:
            problems.append(f"{f}: skipped, its output name {stem} is already used by {taken[stem]}")
            continue
        taken[stem] = f
        unique.append((f, stem))
    return unique, problems
