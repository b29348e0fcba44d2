"""Long audio in bounded memory: read a file block by block, cut the stream into chunks at pauses.

    for chunk in segments(read_blocks("lecture.flac")):
        words = decode(chunk.audio)  # the caller's recogniser; word times relative to the chunk
        kept += [w for w in words if chunk.owns(chunk.start + (w.start + w.end) / 2)]

Why cut this way, for a bidirectional LSTM. The model cannot stream: its backward direction reads a
segment from the end, so every segment must be whole before it is decoded, and an hour of audio in
one forward pass costs memory in proportion to the hour. So the file is cut into chunks of at most
`max_seconds`, and the cuts go where they cost least:

- At pauses. A cut in the middle of a silence splits no word, and little acoustic context crosses
  a pause, so each side loses almost nothing by not seeing the other.
- As late as allowed. A word is recognised better the more context either side of it the network
  has seen, so chunks are made as long as `max_seconds` permits, never shorter than `min_seconds`
  when a longer one is possible.
- With overlap where there is no pause (music, babble, a speaker who does not stop): a forced cut
  at `max_seconds` shares `overlap_seconds` of audio between the two chunks. Near a chunk edge the
  network's states have seen context from one side only, so each word in the overlap is taken from
  the chunk where it lies farther from the edge: the keep ranges meet in the middle of the overlap.

Memory: `read_blocks` holds about one block (decoded a few seconds at a time, plus the resampler's
few milliseconds of state) and the segmenter at most `max_seconds` plus one block, whatever the
length of the file.

Dimensions: N samples, C channels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, check_sample_rate, load_audio
from asr.errors import InputError

log = logging.getLogger(__name__)

_READ_SECONDS = 5.0
_READ_SAMPLES = 1 << 22  # at most per read, all channels together: 16 MB of float32


# --- reading ----------------------------------------------------------------------------------------


def read_blocks(path: str | Path, block_seconds: float = 60.0, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Yield a file's audio as mono float32 (N,) blocks at `sample_rate`, decoding it incrementally.

    Every block has exactly `block_seconds` of audio but the last, which is shorter. Channels are
    averaged; other rates are converted by one streaming resampler across the whole file, so the
    result equals resampling the file in one piece (no clicks or drift at block edges).

    Everything libsndfile reads (wav, flac, ogg, NIST sphere, mp3) is decoded a block at a time.
    Other formats (m4a, webm, ...) go through `load_audio`'s fallback, which decodes the whole file
    at once: the one exception to bounded memory.

    Errors are `InputError`s naming the file, raised on the first iteration for a missing, empty or
    unreadable file (the same messages as `load_audio`). Damage found part-way (a decoder that loses
    sync, NaN or infinite samples) raises after all the audio decoded before it has been yielded (the
    last block shorter): a streaming reader learns that a file is damaged only when it gets there, and
    the caller may keep what came before. A file that merely ends early (a truncated wav, sph, ogg or
    mp3) is read to its real end without an error, as `load_audio` does, and a warning is logged when
    its header promised more.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, not {block_seconds}")
    path = Path(path)
    block = max(1, round(block_seconds * sample_rate))
    if not path.is_file() or path.stat().st_size == 0:
        load_audio(path, sample_rate)  # raises its InputError: no such file, a directory, empty file
    sound = _open_soundfile(path)
    if sound is None:
        audio = load_audio(path, sample_rate)  # the whole file (or load_audio's InputError)
        for i in range(0, len(audio), block):
            yield audio[i : i + block]
        return
    with sound:
        yield from _decode_blocks(sound, path, block, sample_rate)


def _open_soundfile(path: Path):
    """The file opened by libsndfile, or None where libsndfile cannot read it."""
    import soundfile

    try:
        return soundfile.SoundFile(str(path))
    except Exception:  # an unknown format, or not audio at all: load_audio tries its fallback
        return None


def _decode_blocks(sound, path: Path, block: int, sample_rate: int) -> Iterator[np.ndarray]:
    import soxr

    rate = sound.samplerate
    check_sample_rate(path, rate)
    # One resampler for the whole file: it carries its filter state over block edges.
    stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
    # Decode in reads of a few seconds (fewer frames when there are many channels) whatever the block size, so
    # that a many-channel file at a high rate costs little more memory than the mono blocks made from it.
    frames_per_read = max(1, min(round(block * rate / sample_rate), round(_READ_SECONDS * rate),
                                 _READ_SAMPLES // sound.channels))
    pending, have = [], 0  # resampled audio not yet yielded (less than a block between reads)
    frames_read = 0
    while True:
        try:
            # read(), not blocks(): blocks() trusts the header's length and pads a short read with stale data.
            data = sound.read(frames_per_read, dtype="float32", always_2d=True)  # (N, C)
        except Exception as e:
            yield from _flush(pending, stream, block)
            raise InputError(f"{path}: cannot read audio after {frames_read / rate:.1f} s ({_reason(e)})") from None
        if len(data) == 0:
            break
        if not np.all(np.isfinite(data)):
            bad = frames_read + int(np.argmin(np.all(np.isfinite(data), axis=1)))
            yield from _flush(pending, stream, block)
            raise InputError(f"{path}: contains NaN or infinite samples (the first at {bad / rate:.1f} s)")
        frames_read += len(data)
        mono = np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])  # (N,)
        pending.append(mono if stream is None else stream.resample_chunk(mono))
        have += len(pending[-1])
        if have >= block:
            joined = np.concatenate(pending)
            for i in range(0, have - block + 1, block):
                yield joined[i : i + block]
            pending = [joined[have - have % block :]]
            have = len(pending[0])
    if frames_read == 0:
        raise InputError(f"{path}: contains no audio samples")
    if sound.seekable() and 0 < frames_read < sound.frames:
        log.warning("%s: ends after %.1f s although its header announces %.1f s (truncated?)",
                    path, frames_read / rate, sound.frames / rate)
    yield from _flush(pending, stream, block)


def _flush(pending: list[np.ndarray], stream, block: int) -> Iterator[np.ndarray]:
    """The audio decoded but not yet yielded, with the resampler's tail, in blocks (the last shorter)."""
    if stream is not None:
        pending = [*pending, stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)]
    rest = np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)
    for i in range(0, len(rest), block):
        yield rest[i : i + block]


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- segmentation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SilenceConfig:
    """The pause detector: frame energies in dB (25 ms frames every 10 ms) against adaptive thresholds.

    A frame is silent when it is under `floor_db` (dBFS), or `relative_db` under the loudness
    reference, or within `noise_margin_db` of the noise level while still `min_contrast_db` under the
    reference. The reference and noise level are the `reference_percentile` and `noise_percentile` of
    the frame energies of the last `reference_seconds`, so they follow a recording whose level
    changes over an hour. The noise term finds the pauses of a noisy recording, whose background
    never comes 40 dB under its speech; the contrast keeps it from calling steady noise a pause.
    """

    frame_seconds: float = 0.025
    hop_seconds: float = 0.010
    # Shorter silences occur inside words (stop closures last up to ~0.15 s); 0.3 s is a pause.
    min_pause_seconds: float = 0.3
    # Pauses at least this long count as equally good; among them the latest wins (longer chunks).
    long_pause_seconds: float = 1.0
    reference_seconds: float = 120.0
    reference_percentile: float = 98.0
    noise_percentile: float = 10.0
    relative_db: float = 40.0
    noise_margin_db: float = 15.0
    min_contrast_db: float = 20.0
    floor_db: float = -70.0  # about 10 steps of 16-bit audio: no speech is this quiet


def silence_threshold(db: np.ndarray, silence: SilenceConfig = SilenceConfig()) -> float:
    """The level (dB) under which a frame is silent, given the frame energies `db` it is judged among."""
    s = silence
    reference, noise = np.percentile(db, [s.reference_percentile, s.noise_percentile])
    return max(s.floor_db, reference - s.relative_db, min(noise + s.noise_margin_db, reference - s.min_contrast_db))


def speech_frames(audio: np.ndarray, frame_seconds: float, sample_rate: int = SAMPLE_RATE,
                  silence: SilenceConfig = SilenceConfig(), min_gap_seconds: float = 0.1,
                  min_sound_seconds: float = 0.1) -> np.ndarray:
    """(T,) bool, T = ceil(N / frame samples): whether frame t, the `frame_seconds` from t * frame_seconds
    on, holds sound, by the pause detector's energies and thresholds over `audio` (N,) alone. Silences
    shorter than `min_gap_seconds` between sounds count as sound; then sounds shorter than
    `min_sound_seconds` count as silence.

    Word times use it (`asr.alignment.fit_to_speech`): a CTC model's spikes say which word was said,
    roughly where, but not where its sound begins and ends."""
    hop = max(1, round(silence.hop_seconds * sample_rate))
    win = max(hop, round(silence.frame_seconds * sample_rate))
    frames = -(-len(audio) // max(1, round(frame_seconds * sample_rate)))
    if frames == 0:
        return np.zeros(0, dtype=bool)
    # Energy frame j is centred on sample j * hop. Written in numpy: librosa.feature.rms, the same, costs
    # seconds on its first call (it compiles with numba), more than transcribing a short file.
    padded = np.pad(np.asarray(audio, dtype=np.float32), (win // 2, win - win // 2))
    windows = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop]
    db = 10 * np.log10(np.maximum(np.square(windows, dtype=np.float64).mean(axis=1), 1e-10))
    loud = np.flatnonzero(db >= silence_threshold(db, silence))
    owner = np.minimum((loud * hop / sample_rate / frame_seconds).astype(int), frames - 1)
    sound = np.bincount(owner, minlength=frames) > 0
    # A silence shorter than a pause is part of a word (a stop's closure, a dip between syllables); a sound
    # shorter than any word is a click, a lip smack or a bump of the microphone.
    for value, shortest in ((False, min_gap_seconds), (True, min_sound_seconds)):
        edges = np.diff(np.concatenate([[0], (sound == value).astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if (b - a) * frame_seconds < shortest and (value or 0 < a and b < frames):
                sound[a:b] = not value
    return sound


@dataclass(frozen=True)
class Chunk:
    """A piece of the recording to decode whole.

    `start`/`end` place `audio` in the file (seconds). `keep_from`/`keep_to` (seconds, absolute) are
    the time this chunk answers for: keep a word iff its midpoint lies in [keep_from, keep_to)
    (`owns`). Over all chunks the keep ranges tile [0, duration) without gaps or overlaps. A chunk
    cut at pauses keeps all of itself; one cut with overlap keeps up to the middle of the overlap.
    `silent`: no frame of the chunk reaches `SilenceConfig.floor_db`, so a caller may skip decoding it.
    """

    start: float
    end: float
    audio: np.ndarray  # (N,) float32
    keep_from: float
    keep_to: float
    silent: bool = False

    def owns(self, seconds: float) -> bool:
        return self.keep_from <= seconds < self.keep_to


def segments(blocks: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE, max_seconds: float = 30.0,
             min_seconds: float = 15.0, overlap_seconds: float = 2.0,
             silence: SilenceConfig = SilenceConfig(), split_pause_seconds: float | None = None) -> Segmenter:
    """Cut a stream of mono (N,) blocks into `Chunk`s of at most `max_seconds`, at pauses where possible.

    Each cut goes in the middle of the best pause of at least `silence.min_pause_seconds` between
    `min_seconds` and `max_seconds` after the chunk's start: the longest, pauses of
    `silence.long_pause_seconds` or more counting as equal, then the latest. Where there is none, the
    cut is forced at `max_seconds` and the next chunk starts `overlap_seconds` earlier. Input of at
    most `max_seconds` is one chunk. Nothing is dropped: silent stretches come as chunks marked
    `silent`. No blocks give no chunks.

    With `split_pause_seconds`, a chunk also ends at the first pause at least that long once it is
    `min_seconds` long (cut in the pause's middle): chunks then follow the recording's sentences or
    utterances, which suits a model trained on single utterances (see `Transcriber.transcribe`).

    Defaults: 30 s chunks are long enough that almost every word has seconds of context both ways,
    and short enough to decode quickly in little memory; min 15 s is how far back a pause may move a
    cut; the 2 s overlap gives every word it decides 1 s of context past it, at 7 % extra compute
    where cuts are forced.

    Returns an iterator whose `max_buffered_seconds` and `forced_cuts` tell what it did so far.
    """
    return Segmenter(blocks, sample_rate, max_seconds, min_seconds, overlap_seconds, silence, split_pause_seconds)


class Segmenter:
    """The iterator `segments` returns. It keeps the audio from the current chunk's start (at most
    `max_seconds` plus one block plus a frame) and the frame energies of the last
    `silence.reference_seconds` for the thresholds.

    The pause detector is written here over frame energies rather than with librosa.effects.split,
    because that needs the whole signal at once, and this must work a block at a time.
    """

    def __init__(self, blocks: Iterable[np.ndarray], sample_rate: int, max_seconds: float, min_seconds: float,
                 overlap_seconds: float, silence: SilenceConfig, split_pause_seconds: float | None = None):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        if not 0 < min_seconds <= max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, not {min_seconds} and {max_seconds}")
        if not 0 <= overlap_seconds < min_seconds:
            raise ValueError(f"need 0 <= overlap_seconds < min_seconds, not {overlap_seconds} and {min_seconds}")
        self.sample_rate, self.silence = sample_rate, silence
        self._max = round(max_seconds * sample_rate)
        self._min = round(min_seconds * sample_rate)
        self._overlap = round(overlap_seconds * sample_rate)
        self._hop = max(1, round(silence.hop_seconds * sample_rate))
        self._win = max(self._hop, round(silence.frame_seconds * sample_rate))
        self._min_pause = round(silence.min_pause_seconds * sample_rate)
        self._long_pause = round(silence.long_pause_seconds * sample_rate)
        if split_pause_seconds is not None and split_pause_seconds < silence.min_pause_seconds:
            raise ValueError(f"split_pause_seconds must be at least {silence.min_pause_seconds}, "
                             f"not {split_pause_seconds}")
        self._split = None if split_pause_seconds is None else round(split_pause_seconds * sample_rate)
        self._reference_frames = max(1, round(silence.reference_seconds / silence.hop_seconds))
        self._audio = np.zeros(0, dtype=np.float32)  # (N,) samples from self._start on
        self._start = 0  # sample index in the file of self._audio[0], the current chunk's start
        self._db = np.zeros(0, dtype=np.float32)  # energies (dB) of frames self._first_frame, ... (frame i: i * hop)
        self._first_frame = 0
        self._keep_from = 0  # sample index
        self.max_buffered_seconds = 0.0
        self.forced_cuts = 0
        self._chunks = self._generate(iter(blocks))

    def __iter__(self) -> Segmenter:
        return self

    def __next__(self) -> Chunk:
        return next(self._chunks)

    def _generate(self, blocks: Iterator[np.ndarray]) -> Iterator[Chunk]:
        for block in blocks:
            self._append(block)
            while (cut := self._split_cut(final=False)) is not None:
                yield self._cut(cut)
            # A cut needs the energies of every frame up to max_seconds, so one frame more than that.
            while len(self._audio) >= self._max + self._win:
                yield self._cut()
        self._add_frames(final=True)
        while (cut := self._split_cut(final=True)) is not None:
            yield self._cut(cut)
        while len(self._audio) > self._max:
            yield self._cut()
        if len(self._audio):
            yield self._chunk(len(self._audio), self._start + len(self._audio))

    def _append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"blocks must be mono (N,) arrays, not of shape {block.shape}")
        self._audio = np.concatenate([self._audio, block])
        self.max_buffered_seconds = max(self.max_buffered_seconds, len(self._audio) / self.sample_rate)
        self._add_frames(final=False)

    @property
    def _next_frame(self) -> int:
        return self._first_frame + len(self._db)

    def _add_frames(self, final: bool) -> None:
        """Energies of the frames that the buffered audio now completes (at the end: all, zero-padded)."""
        hop, win = self._hop, self._win
        x = self._audio[self._next_frame * hop - self._start :]  # from the first frame not yet measured
        if final:
            n = -(-len(x) // hop)
            x = np.pad(x, (0, max(0, (n - 1) * hop + win - len(x))))
        else:
            n = (len(x) - win) // hop + 1 if len(x) >= win else 0
        if n == 0:
            return
        # Mean square of every frame from a running sum over pieces of gcd(hop, win) samples: O(N) time,
        # and no temporary larger than one float32 copy of the block.
        g = math.gcd(hop, win)
        pieces = np.square(x[: (n - 1) * hop + win]).reshape(-1, g).sum(axis=1, dtype=np.float64)
        cumsum = np.concatenate([[0.0], np.cumsum(pieces)])
        offsets = np.arange(n) * (hop // g)
        power = np.maximum((cumsum[offsets + win // g] - cumsum[offsets]) / win, 1e-10)
        self._db = np.concatenate([self._db, (10 * np.log10(power)).astype(np.float32)])

    def _threshold(self) -> float:
        return silence_threshold(self._db[-self._reference_frames :], self.silence)

    def _pause_cut(self) -> int | None:
        """Sample index in the file of the middle of the best pause in [start + min, start + max], if any."""
        hop, win = self._hop, self._win
        first = -(-(self._start + self._min) // hop)  # frames lying wholly inside the window
        last = (self._start + self._max - win) // hop
        if last < first:
            return None
        silent = self._db[first - self._first_frame : last + 1 - self._first_frame] < self._threshold()
        edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
        best = None
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):  # frames a..b-1
            begin, end = (first + a) * hop, (first + b - 1) * hop + win  # the samples they cover
            score = (min(end - begin, self._long_pause), end)
            if end - begin >= self._min_pause and (best is None or score > best[0]):
                best = score, (begin + end) // 2
        return None if best is None else int(best[1])

    def _split_cut(self, final: bool) -> int | None:
        """With split_pause_seconds: the middle of the first pause that long, once the chunk is
        min_seconds long and before max_seconds. A pause still going on at the end of the buffer
        counts once it is twice that long (cut after the first half of it), or at the end of input."""
        if self._split is None:
            return None
        hop, win = self._hop, self._win
        first = -(-(self._start + self._min) // hop)
        last = min(self._next_frame - 1, (self._start + self._max - win) // hop)
        if last < first:
            return None
        silent = self._db[first - self._first_frame : last + 1 - self._first_frame] < self._threshold()
        edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            begin, end = (first + a) * hop, (first + b - 1) * hop + win
            ongoing = first + b - 1 == self._next_frame - 1 and not final
            if end - begin >= (2 * self._split if ongoing else self._split):
                cut = begin + self._split if ongoing else (begin + end) // 2
                if cut < self._start + len(self._audio):
                    return cut
        return None

    def _cut(self, cut: int | None = None) -> Chunk:
        if cut is None:
            cut = self._pause_cut()
        if cut is not None:
            chunk = self._chunk(cut - self._start, cut)
            next_start = cut
        else:  # no pause: share the overlap, and split the responsibility for it in the middle
            end = self._start + self._max
            chunk = self._chunk(self._max, end - self._overlap // 2)
            next_start = end - self._overlap
            self.forced_cuts += 1
        self._audio = self._audio[next_start - self._start :].copy()  # a copy, so the old buffer is freed
        self._start = next_start
        # Frames still needed: the current chunk's, and the last reference_seconds for the thresholds.
        keep = min(self._start // self._hop, self._next_frame - self._reference_frames)
        if keep > self._first_frame:
            self._db = self._db[keep - self._first_frame :].copy()
            self._first_frame = keep
        return chunk

    def _chunk(self, length: int, keep_to: int) -> Chunk:
        """The chunk of the first `length` buffered samples, answering for [self._keep_from, keep_to)."""
        rate, start, end = self.sample_rate, self._start, self._start + length
        hop, first = self._hop, self._first_frame
        frames = self._db[start // hop - first : -(-end // hop) - first]  # the frames overlapping it
        chunk = Chunk(start=start / rate, end=end / rate, audio=self._audio[:length].copy(),
                      keep_from=self._keep_from / rate, keep_to=keep_to / rate,
                      silent=bool(np.all(frames < self.silence.floor_db)))
        self._keep_from = keep_to
        return chunk
