"""How a recording becomes a transcript: its blocks (`audio_blocks`), segments grouped into model batches (by
length, within windows of speech), and their decoded words assembled (`transcribe_blocks`).

Shared by the PyTorch `asr.transcribe.Transcriber` and the torch-free runtime (`asr.runtime`), so that both
batch, and so pad, alike; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from asr.audio import SAMPLE_RATE
from asr.errors import InputError
from asr.memory import HeapTrimmer

PAD_FRAMES = 25  # feature frames (0.25 s) that a batch's padded length is a multiple of
# Segments are sorted by length in windows of this much audio (held in memory: 30 MB at 16 kHz) before
# batching. On 10 min of AN4 speech cut at pauses (1-15 s segments), batches of 8 in time order were 45 %
# padding; sorted within windows of 120 s 21 %, of 480 s 13 % (BENCHMARKS.md, "Batching").
SORT_SECONDS = 480.0


# A segment ends at the first pause this long (`asr.segment.segments`' split_pause_seconds), unless the model
# says otherwise in its metadata (`transcribe.split_pause_seconds`, 0 for none): 0.5 s suits a model trained
# on short utterances (AN4); the English model lost 1.2 points of dev WER with it and none with 1.0, but
# longer segments cost memory (models/english/MODEL.md).
SPLIT_PAUSE_SECONDS = 0.5


def split_pause(metadata: dict, value="model") -> float | None:
    """The split_pause_seconds a transcription uses: `value` as given (a number, or None for no split),
    or for "model" the model's stored one, else SPLIT_PAUSE_SECONDS."""
    if value != "model":
        return value
    return metadata.get("transcribe", {}).get("split_pause_seconds", SPLIT_PAUSE_SECONDS) or None


def padded_frames(frames: int) -> int:
    """The frames a batch whose longest member has `frames` is padded to: a multiple of 0.25 s, so that
    batch tensors come in fewer sizes, which the heap reuses instead of fragmenting (see
    `asr.memory.HeapTrimmer`). Whole seconds cost 9 % more time on a minute of speech for no gain in
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


# The pipeline of both Transcribers' `transcribe`: blocks -> segments -> batches -> transcript --------------


def audio_blocks(audio, damage: list[str], waveform: Callable, block_seconds: float = 10.0) -> Iterator:
    """Mono blocks of `audio`: a file path read in blocks (`asr.segment.read_blocks`), or else the array that
    `waveform()` makes of it, cut into blocks. Where a file turns out damaged after some of it was read, the
    error goes into `damage` and the blocks end there, so the audio before it is still transcribed."""
    from asr.segment import read_blocks

    if isinstance(audio, (str, Path)):
        started = False
        try:
            for block in read_blocks(audio, block_seconds=block_seconds):
                started = True
                yield block
        except InputError as e:
            if not started:
                raise
            damage.append(str(e))
        return
    wave = waveform()
    block = round(block_seconds * SAMPLE_RATE)
    for start in range(0, len(wave), block):
        yield wave[start: start + block]


def transcribe_blocks(blocks: Iterable, damage: list[str], decode_chunks, calibration, batch_size: int,
                      max_segment_seconds: float, min_segment_seconds: float, split_pause_seconds: float | None,
                      sort_seconds: float = SORT_SECONDS):
    """A recording's blocks -> its Transcript: cut into segments at pauses (`asr.segment.segments`), silent
    ones skipped, the others through `decode_chunks` `batch_size` at a time, batched by length within windows
    of `sort_seconds` of speech, the heap trimmed between windows (`asr.memory`), the words assembled."""
    from asr.segment import segments

    chunks = segments(blocks, max_seconds=max_segment_seconds, min_seconds=min_segment_seconds,
                      overlap_seconds=min(2.0, min_segment_seconds / 2), split_pause_seconds=split_pause_seconds)
    decoded: list[tuple] = []
    duration = 0.0
    heap = HeapTrimmer()
    for window, end in speech_windows(chunks, sort_seconds):
        decoded += decode_by_length(window, batch_size, decode_chunks)
        duration = end
        heap.check()
    return transcript_of(decoded, duration, damage, calibration)


# From decoded segments to a transcript: the same for the PyTorch Transcriber and the runtime ------------


def decode_by_length(chunks: list, batch_size: int, decode_chunks) -> list:
    """`decode_chunks` over `chunks` in batches of similar length -> its non-None results, in time order.
    A batch runs the LSTM over its longest member's frames, so batching neighbours in time (lengths cut
    at pauses vary 1-30 s) spent up to half of it on padding."""
    results: dict[int, tuple] = {}
    for batch in batches_by_length([len(c.audio) for c in chunks], batch_size):
        for i, result in zip(batch, decode_chunks([chunks[i] for i in batch]), strict=True):
            if result is not None:
                results[i] = result
    return [results[i] for i in sorted(results)]


def chunk_result(chunk, hyp, frame_seconds: float, calibration):
    """One decoded chunk -> (Segment, n-best, verdict), or None when it keeps no word.

    Word times move onto the sound (`asr.alignment.fit_to_speech`) and from the chunk's start to the
    recording's; a word belongs to the chunk that owns its middle (chunks overlap where there was no
    pause). With a calibration, confidences are calibrated and the verdict is `asr.confidence.judge`'s
    over the chunk's seconds; without, it is "ok"."""
    from asr.alignment import fit_to_speech
    from asr.confidence import judge
    from asr.outputs import Segment
    from asr.segment import speech_frames

    words = fit_to_speech(hyp.words, hyp.frames, speech_frames(chunk.audio, frame_seconds), frame_seconds)
    shifted = [replace(w, start=round(w.start + chunk.start, 3), end=round(w.end + chunk.start, 3)) for w in words]
    kept = [w for w in shifted if chunk.owns((w.start + w.end) / 2)]
    if not kept:
        return None
    text = hyp.text if len(kept) == len(shifted) else " ".join(w.word for w in kept)
    alternatives = [{"text": t, "score": round(sc, 3)} for t, sc in hyp.alternatives]
    verdict = "ok"
    if calibration is not None:
        verdict, _ = judge([w.confidence for w in kept], calibration, len(chunk.audio) / SAMPLE_RATE)
        kept = [replace(w, confidence=round(float(calibration(w.confidence)), 4)) for w in kept]
    return Segment(kept[0].start, kept[-1].end, text, kept), alternatives, verdict


def transcript_of(decoded: list, duration: float, damage: list[str], calibration):
    """(Segment, n-best, verdict) of every chunk with words -> the Transcript. A segment judged not to be
    speech (asr.confidence) gives no words: noise, not confident nonsense."""
    from asr.outputs import Transcript

    rejected = [part for part, _, verdict in decoded if verdict == "not speech"]
    decoded = [(part, alt) for part, alt, verdict in decoded if verdict != "not speech"]
    parts = [part for part, _ in decoded]
    words = [w for part in parts for w in part.words]
    text = " ".join(part.text for part in parts)
    # The n-best of a single segment; that of a whole long file would mean nothing.
    alternatives = decoded[0][1] if len(decoded) == 1 else []
    return Transcript(text, round(duration, 3), parts, words, alternatives, damage[0] if damage else None,
                      warning=_warning(words, rejected, calibration))


def _warning(words: list, rejected: list, calibration) -> str | None:
    """Why the transcript is probably wrong or empty, in a few words; None when nothing is amiss."""
    from asr.confidence import judge

    verdict, mean = judge([w.confidence for w in words], calibration, calibrated=True)
    if verdict == "probably wrong":
        return (f"probably wrong: mean word confidence {mean:.2f} (noise, another language, or speech unlike "
                "the training data?)")
    if rejected and not words:
        dropped = sum(len(part.words) for part in rejected)
        return (f"no speech recognised: {dropped} low-confidence word{'s' * (dropped != 1)} dropped (music, "
                "noise or another language?)")
    return None
