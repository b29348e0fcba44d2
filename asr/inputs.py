"""What users hand the transcribers: files, folders and glob patterns (with the output name each gets),
standard input, and arrays in either channel layout. No torch here: the light runtime (`asr.runtime`)
takes its inputs the same way as `asr transcribe`.
"""

from __future__ import annotations

import glob
import itertools
from collections import Counter
from pathlib import Path

import numpy as np

from asr.audio import audio_files
from asr.errors import InputError

MAX_CHANNELS = 8  # 7.1 sound; more "channels" than this is a shape mistake, not a recording
MIN_SAMPLES_PER_CHANNEL = 64  # the samples axis of a 2-D array is at least this many times the channels axis


def channel_axis(shape: tuple[int, int]) -> int:
    """The channels axis of a 2-D audio array: 1 for soundfile's (N, C), 0 for torchaudio's (C, N).

    Which is which is told by size alone: channels are few (at most MAX_CHANNELS) and samples many
    times more. An array where that does not decide, such as (4, 6) or (300, 400), or an empty one, is
    refused: averaging over the wrong axis would transcribe a few samples as silence and say nothing.
    """
    for axis in (1, 0):
        channels, samples = shape[axis], shape[1 - axis]
        if 1 <= channels <= MAX_CHANNELS and samples >= MIN_SAMPLES_PER_CHANNEL * channels:
            return axis
    raise InputError(f"audio array of shape {shape}: cannot tell channels from samples; give (samples,), or "
                     f"(samples, channels) or (channels, samples) with 1-{MAX_CHANNELS} channels and many more "
                     "samples")


def to_mono(wave: np.ndarray) -> np.ndarray:
    """An array (N,), (N, C) as soundfile reads, or (C, N) as torchaudio does -> (N,) float32, channels averaged."""
    wave = np.asarray(wave).astype(np.float32)
    if wave.size == 0:
        raise InputError(f"audio array of shape {wave.shape} is empty")
    if wave.ndim == 2:
        wave = wave.mean(axis=channel_axis(wave.shape))
    if wave.ndim != 1:
        raise InputError(f"audio array of shape {wave.shape}: expected (samples,), (samples, channels) or "
                         "(channels, samples)")
    return wave


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
    """An output stem for every input: inputs whose stems collide keep their extension in it where that
    tells them apart (a.flac and a.mp3 in one folder -> a.flac, a.mp3: a.flac.srt, a.mp3.srt). Where
    names still collide (the same file name from two folders given apart), the first input keeps it
    and the others are reported rather than overwrite its output."""
    counts = Counter(stem for _, stem in found)
    suffixes = Counter((stem, f.suffix) for f, stem in found)
    taken: dict[Path, Path] = {}
    problems: list[str] = []
    unique = []
    for f, stem in found:
        if counts[stem] > 1 and suffixes[stem, f.suffix] == 1:
            stem = stem.with_name(stem.name + f.suffix)
        if stem in taken:
            problems.append(f"{f}: skipped, its output name {stem} is already used by {taken[stem]}")
            continue
        taken[stem] = f
        unique.append((f, stem))
    return unique, problems
