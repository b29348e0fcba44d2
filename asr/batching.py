"""How segments of a recording are grouped into model batches: by length, within windows of speech.

Shared by the PyTorch `asr.transcribe.Transcriber` and the torch-free runtime (`asr.runtime`), so that both
batch, and so pad, alike; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from asr.audio import SAMPLE_RATE

PAD_FRAMES = 25  # feature frames (0.25 s) that a batch's padded length is a multiple of
# Segments are sorted by length in windows of this much audio (held in memory: 30 MB at 16 kHz) before
# batching. On 10 min of AN4 speech cut at pauses (1-15 s segments), batches of 8 in time order were 45 %
# padding; sorted within windows of 120 s 21 %, of 480 s 13 % (BENCHMARKS.md, "Batching").
SORT_SECONDS = 480.0


def padded_frames(frames: int) -> int:
    """The frames a batch whose longest member has `frames` is padded to: a multiple of 0.25 s, so that
    batch tensors come in fewer sizes, which the heap reuses instead of fragmenting (see
    `asr.transcribe._HeapTrimmer`). Whole seconds cost 9 % more time on a minute of speech for no gain in
    memory once segments were sorted by length (BENCHMARKS.md, "Batching")."""
    return -(-frames // PAD_FRAMES) * PAD_FRAMES


def speech_windows(chunks: Iterable, seconds: float) -> Iterator[tuple[list, float]]:
    """The non-silent chunks in windows of at least `seconds` of audio (the last one may be shorter or
    empty), each with the end time of the last chunk read, silent or not."""
    window: list = []
    samples, end = 0, 0.0
    for chunk in chunks:
        end = chunk.end
        if not chunk.silent:
            window.append(chunk)
            samples += len(chunk.audio)
        if samples >= seconds * SAMPLE_RATE:
            yield window, end
            window, samples = [], 0
    yield window, end


def batches_by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of `lengths` sorted by length, in batches of `batch_size`: the batching of a window of segments."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start: start + batch_size] for start in range(0, len(order), batch_size)]
