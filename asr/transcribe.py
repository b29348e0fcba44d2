"""Files -> transcripts: the `Transcriber` (also the Python API) and the output writers.

Dimensions: N samples, T frames, F mel bins, T' output frames, V vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.atomic import atomic_write_text
from asr.audio import SAMPLE_RATE, audio_files, load_audio, resample
from asr.decoding import Word, greedy_decode
from asr.errors import InputError
from asr.model import SUBSAMPLING, load_checkpoint

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "an4-small.pt"


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class Transcriber:
    """A loaded model that turns audio into a Transcript. `asr.load_model()` returns one."""

    def __init__(self, model, tokenizer, features, metadata: dict | None = None, device="cpu",
                 decode=greedy_decode):
        self.model, self.tokenizer, self.features = model, tokenizer, features
        self.metadata, self.device, self.decode = metadata or {}, torch.device(device), decode

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", decode=greedy_decode) -> Transcriber:
        if path is None:
            path = DEFAULT_MODEL
            if not path.is_file():
                raise InputError(f"{path}: bundled model not found; pass --model CHECKPOINT")
        model, tokenizer, features, metadata = load_checkpoint(path, device)
        return cls(model, tokenizer, features, metadata, device, decode)

    @torch.inference_mode()
    def transcribe(self, audio, sample_rate: int | None = None) -> Transcript:
        """`audio`: a file path, or a 1-D (or (N, C)) numpy array / tensor with its `sample_rate`."""
        wave = self._waveform(audio, sample_rate)
        feats = self.features(wave).to(self.device)  # (T, F)
        lengths = torch.tensor([feats.shape[0]], device=self.device)
        log_probs, out_lengths = self.model(feats.unsqueeze(0), lengths)  # (1, T', V)
        frame_seconds = self.features.config.frame_seconds * SUBSAMPLING
        hyp = self.decode(log_probs, out_lengths, self.tokenizer, frame_seconds)[0]
        duration = len(wave) / SAMPLE_RATE
        segments = [Segment(hyp.words[0].start, hyp.words[-1].end, hyp.text)] if hyp.words else []
        return Transcript(hyp.text, round(duration, 3), segments, hyp.words)

    @staticmethod
    def _waveform(audio, sample_rate: int | None) -> np.ndarray:
        if isinstance(audio, (str, Path)):
            return load_audio(audio)
        if sample_rate is None:
            raise ValueError("an array or tensor needs its sample_rate")
        wave = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        wave = wave.astype(np.float32)
        if wave.ndim == 2:  # (N, C) -> mono
            wave = wave.mean(axis=1)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"expected a non-empty 1-D or (samples, channels) array, got shape {wave.shape}")
        return resample(wave, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else wave


def find_audio(paths: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand files and folders (recursively, audio extensions only) -> ([(file, output stem)], problems).

    The output stem mirrors the input tree: `folder/a/b.wav` given as `folder` -> `a/b`; a file
    given by itself -> its name without the extension.
    """
    found: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = audio_files(p)
            if not files:
                problems.append(f"{p}: no audio files in this folder")
            found += [(f, f.relative_to(p).with_suffix("")) for f in files]
        elif p.exists():
            found.append((p, Path(p.stem)))
        else:
            problems.append(f"{p}: no such file")
    return found, problems


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


def write_outputs(transcript: Transcript, stem: Path, formats: list[str]) -> list[Path]:
    """Write `stem`.<fmt> for every format, each atomically."""
    written = []
    for fmt in formats:
        path = stem.with_name(stem.name + "." + fmt)
        atomic_write_text(path, WRITERS[fmt](transcript))
        written.append(path)
    return written


def _txt(t: Transcript) -> str:
    return t.text + "\n"


def _json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _srt(t: Transcript) -> str:
    cues = [f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text}\n"
            for i, s in enumerate(t.segments, 1)]
    return "\n".join(cues)


def _vtt(t: Transcript) -> str:
    cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text}\n" for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def _tsv(t: Transcript) -> str:
    rows = ["start\tend\ttext"] + [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text}" for s in t.segments]
    return "\n".join(rows) + "\n"


WRITERS = {"txt": _txt, "json": _json, "srt": _srt, "vtt": _vtt, "tsv": _tsv}
