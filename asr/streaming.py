"""Live transcription of a stream of audio with bounded latency: partial results while audio arrives, a final
one at each pause.

A bidirectional LSTM needs the whole utterance: its backward direction reads from the end. A stream has no
end yet, so each output frame is decided once `lookahead_seconds` of audio past it have arrived, from the
encoder run over the utterance so far (at most `left_seconds` of it) up to the newest sample. The forward
direction then sees all the left context it would see offline; the backward direction sees `lookahead`
instead of the rest of the utterance, which is what streaming costs in accuracy (measured in
BENCHMARKS.md, "Streaming", by `bench/bench_streaming.py`). This is the buffered-window inference NeMo uses
for its offline CTC models, with the window's left edge held at the utterance's start; it needs nothing
from the network but its ordinary forward pass, so the PyTorch model and the exported one (`asr.runtime`)
stream alike.

Every `chunk_seconds` of new audio the encoder runs once over the window: frames at least `lookahead`
old are committed and never change; the newer ones are tentative. A partial result is the decoder's
(beam search with the LM, where the model has one) over the committed and tentative frames of the
utterance. When a pause of `pause_seconds` follows speech (the energy detector of `asr.segment`), the
utterance is cut in the pause's middle, as the offline path cuts at pauses, and its final result is
decoded from the committed frames plus those the last window gives up to the cut, with word times,
calibrated confidences and the verdicts of `asr.confidence`, as offline. An utterance with no pause is
cut at `max_utterance_seconds`, at its quietest moment in the last `_FORCED_CUT_SEARCH` seconds.

Cost: the encoder reads about (utterance so far) / `chunk_seconds` times more audio than offline, which
`left_seconds` bounds; the decoder searches the utterance so far at every step. Nothing here imports torch.

Dimensions: N samples, T' output frames, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.audio import SAMPLE_RATE
from asr.segment import SilenceConfig, silence_threshold

_FORCED_CUT_SEARCH = 2.0  # seconds before a forced cut in which it looks for the quietest moment


@dataclass(frozen=True)
class StreamConfig:
    chunk_seconds: float = 0.32  # how much new audio triggers an encoder run (the partials' cadence)
    lookahead_seconds: float = 0.64  # audio past a frame that the encoder has seen before the frame is committed
    left_seconds: float = 10.0  # the most audio before the oldest uncommitted frame that a window holds
    pause_seconds: float = 0.5  # silence after speech that ends an utterance (the offline path splits at 0.5 s)
    min_utterance_seconds: float = 1.0  # a pause ends an utterance only after this much of it (offline: 1 s)
    max_utterance_seconds: float = 20.0  # an utterance with no pause is cut here
    # The final result from a second pass of the encoder over the whole utterance, now that its end is known
    # (as offline); False: from the frames committed with `lookahead_seconds` each (what the partials
    # converge to), the accuracy of a result fixed `lookahead_seconds` after its audio.
    second_pass: bool = True

    def __post_init__(self):
        if not 0 < self.chunk_seconds <= 5:
            raise ValueError(f"chunk_seconds must be in (0, 5], not {self.chunk_seconds}")
        if not 0 <= self.lookahead_seconds <= 5:
            raise ValueError(f"lookahead_seconds must be in [0, 5], not {self.lookahead_seconds}")
        if self.left_seconds < 1:
            raise ValueError(f"left_seconds must be at least 1, not {self.left_seconds}")
        if self.pause_seconds < SilenceConfig.min_pause_seconds:
            raise ValueError(f"pause_seconds must be at least {SilenceConfig.min_pause_seconds}, not "
                             f"{self.pause_seconds}")
        if not self.min_utterance_seconds + _FORCED_CUT_SEARCH < self.max_utterance_seconds <= 60:
            raise ValueError(f"max_utterance_seconds must be in ({self.min_utterance_seconds + _FORCED_CUT_SEARCH}, "
                             f"60], not {self.max_utterance_seconds}")


class Stream:
    """One live stream: push audio with `accept`, end it with `finish`; both return events, JSON-ready dicts:

    - `{"type": "partial", "text", "start", "until"}`: the current utterance so far (from `start` seconds),
      sent when it changes; the next partial or final replaces it.
    - `{"type": "final", "text", "start", "end", "words": [{"word", "start", "end", "confidence"}],
      "warning", "until"}`: an utterance is done. Its text is empty, with a warning, when what was heard was
      judged not to be speech after a partial had shown words.

    `until` is the seconds of audio the stream had received when it made the event.

    `transcriber` is an `asr.transcribe.Transcriber` or an `asr.runtime` one (they have the same
    `log_probs`, `decode_log_probs`, `frame_seconds` and `calibration`). A Stream is not thread-safe, and
    neither is the decoder that all streams of one transcriber share: run them on one thread.
    """

    def __init__(self, transcriber, config: StreamConfig = StreamConfig()):
        self.transcriber, self.config = transcriber, config
        sr = SAMPLE_RATE
        self._frame = round(transcriber.frame_seconds * sr)  # samples per output frame
        self._chunk = round(config.chunk_seconds * sr)
        self._lookahead = round(config.lookahead_seconds * sr)
        self._left = round(config.left_seconds * sr)
        self._silence = SilenceConfig()
        self._hop = round(self._silence.hop_seconds * sr)
        self._win = round(self._silence.frame_seconds * sr)
        self._audio = np.zeros(0, dtype=np.float32)  # samples from self._origin on
        self._origin = 0  # stream sample index of self._audio[0]
        self._received = 0  # samples received so far
        self._db = np.zeros(0, dtype=np.float32)  # energies (dB) of the last 120 s of 10-ms frames, up to...
        self._db_end = 0  # ...frame _db_end - 1; frame j covers samples j * hop to j * hop + win
        self._start = 0  # stream sample index where the current utterance starts
        self._window_start = 0  # where the encoder windows of this utterance start (>= _start, on its frame grid)
        self._committed = np.zeros((0, 0), dtype=np.float32)  # (T'c, V): the utterance's frames that are decided
        self._committed_to = 0  # stream sample index up to which frames are committed (on the frame grid)
        self._stepped_to = 0  # `_received` at the last encoder run
        self._partial = ""
        self.finished = False

    # --- the public calls ----------------------------------------------------------------------------

    def accept(self, samples: np.ndarray) -> list[dict]:
        """Take (N,) float32 mono samples at 16 kHz -> the events they make."""
        if self.finished:
            raise ValueError("the stream is finished")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono (N,), not of shape {samples.shape}")
        if not np.isfinite(samples).all():
            raise ValueError("samples must be finite numbers")
        self._audio = np.concatenate([self._audio, samples])
        self._received += len(samples)
        self._measure()
        events: list[dict] = []
        while (cut := self._pause_cut()) is not None or (cut := self._forced_cut()) is not None:
            events += self._final(cut)
        if self._received - self._stepped_to >= self._chunk:
            events += self._step()
        return events

    def finish(self) -> list[dict]:
        """End of the stream -> the last utterance's final event, if it has words or showed a partial."""
        if self.finished:
            return []
        self.finished = True
        return self._final(self._received) if self._received > self._start else []

    @property
    def _until(self) -> float:
        """Seconds of audio received when an event is made: a client measures its latency from this."""
        return round(self._received / SAMPLE_RATE, 3)

    # --- utterances ------------------------------------------------------------------------------------

    def _step(self) -> list[dict]:
        """Run the encoder over the window up to the newest sample; commit what has its look-ahead; a partial."""
        self._stepped_to = self._received
        log_probs = self._window_log_probs(self._received)
        commit_to = max(self._committed_to, self._on_grid(self._received - self._lookahead))
        self._commit(log_probs, commit_to)
        tentative = log_probs[self._frame_index(commit_to):]
        frames = np.concatenate([self._committed, tentative]) if len(self._committed) else tentative
        text = self.transcriber.decode_log_probs(frames).text if len(frames) else ""
        if text == self._partial:
            return []
        self._partial = text
        return [{"type": "partial", "text": text, "start": round(self._start / SAMPLE_RATE, 3), "until": self._until}]

    def _final(self, cut: int) -> list[dict]:
        """End the current utterance at stream sample `cut` -> its final event (if any); the next one starts there."""
        from asr.batching import chunk_result, transcript_of
        from asr.segment import Chunk

        events: list[dict] = []
        if cut - self._start >= self._frame and not self._silent(self._start, cut).all():
            audio = self._slice(self._start, cut)
            if self.config.second_pass:
                log_probs = self.transcriber.log_probs(audio)
            else:
                if self._committed_to > cut:  # a forced cut before the newest committed frames: they go to the next
                    self._committed = self._committed[: (self._on_grid(cut, up=True) - self._start) // self._frame]
                    self._committed_to = self._start + len(self._committed) * self._frame
                self._commit(self._window_log_probs(cut), self._on_grid(cut, up=True))
                log_probs = self._committed
            start, end = self._start / SAMPLE_RATE, cut / SAMPLE_RATE
            chunk = Chunk(start, end, audio, start, end)
            hyp = self.transcriber.decode_log_probs(log_probs)
            decoded = chunk_result(chunk, hyp, self.transcriber.frame_seconds, self.transcriber.calibration)
            t = transcript_of([decoded] if decoded else [], end - start, [], self.transcriber.calibration)
            if t.words or self._partial:
                events.append({"type": "final", "text": t.text, "start": round(start, 3), "end": round(end, 3),
                               "words": [{"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}
                                         for w in t.words],
                               "warning": t.warning, "until": self._until})
        self._start = self._window_start = self._committed_to = cut
        self._committed = np.zeros((0, 0), dtype=np.float32)
        self._partial = ""
        self._stepped_to = max(self._stepped_to, cut)
        self._forget(cut)
        return events

    def _window_log_probs(self, end: int) -> np.ndarray:
        """The encoder over [window start, end): its left edge moves up the frame grid to keep at most
        `left_seconds` before the oldest uncommitted frame."""
        if self._committed_to - self._window_start > self._left:
            self._window_start = self._on_grid(self._committed_to - self._left)
        return self.transcriber.log_probs(self._slice(self._window_start, end))

    def _commit(self, log_probs: np.ndarray, commit_to: int) -> None:
        """Keep the frames of `log_probs` (a window from `_window_start`) from `_committed_to` up to `commit_to`."""
        first, last = self._frame_index(self._committed_to), min(self._frame_index(commit_to), len(log_probs))
        if last > first:
            new = log_probs[first:last]
            self._committed = np.concatenate([self._committed, new]) if len(self._committed) else new.copy()
            self._committed_to = self._start + len(self._committed) * self._frame

    def _frame_index(self, sample: int) -> int:
        """The window's output frame that starts at stream sample `sample` (on the grid)."""
        return max(0, (sample - self._window_start) // self._frame)

    def _on_grid(self, sample: int, up: bool = False) -> int:
        """`sample` moved down (or up) onto the utterance's frame grid, not before its start."""
        offset = max(0, sample - self._start)
        frames = -(-offset // self._frame) if up else offset // self._frame
        return self._start + frames * self._frame

    # --- pauses --------------------------------------------------------------------------------------------

    def _measure(self) -> None:
        """Energies of the 10-ms frames that the received audio completes."""
        hop, win = self._hop, self._win
        n = (self._received - win) // hop + 1 - self._db_end if self._received >= win else 0
        if n <= 0:
            return
        begin = self._db_end * hop
        frames = np.lib.stride_tricks.sliding_window_view(self._slice(begin, begin + (n - 1) * hop + win), win)[::hop]
        db = 10 * np.log10(np.maximum(np.square(frames, dtype=np.float64).mean(axis=1), 1e-10))
        keep = round(self._silence.reference_seconds / self._silence.hop_seconds)
        self._db = np.concatenate([self._db, db.astype(np.float32)])[-keep:]  # the last 120 s, for the thresholds
        self._db_end += n

    def _silent(self, begin: int, end: int | None = None) -> np.ndarray:
        """Whether each 10-ms frame from stream sample `begin` (to `end`, or the last) is silent, by thresholds
        over the energies of the last 120 s."""
        first = max(self._db_end - len(self._db), -(-begin // self._hop))
        last = self._db_end if end is None else min(self._db_end, max(first, (end - self._win) // self._hop + 1))
        db = self._db[first - (self._db_end - len(self._db)): last - (self._db_end - len(self._db))]
        return db < silence_threshold(self._db, self._silence) if len(self._db) else np.zeros(0, dtype=bool)

    def _pause_cut(self) -> int | None:
        """The middle of the pause of `pause_seconds` now going on, once the utterance is long enough."""
        hop, c = self._hop, self.config
        silent = self._silent(self._start + round(c.min_utterance_seconds * SAMPLE_RATE))
        need = round(c.pause_seconds * SAMPLE_RATE / hop)
        if len(silent) < need or not silent[-need:].all():
            return None
        quiet = len(silent) - int(np.flatnonzero(~silent)[-1]) - 1 if not silent.all() else len(silent)
        pause_end = (self._db_end - 1) * hop + self._win
        return pause_end - (quiet * hop + self._win) // 2

    def _forced_cut(self) -> int | None:
        """At `max_utterance_seconds` without a pause: the quietest 10-ms frame of the last few seconds."""
        limit = self._start + round(self.config.max_utterance_seconds * SAMPLE_RATE)
        if self._received < limit:
            return None
        begin = limit - round(_FORCED_CUT_SEARCH * SAMPLE_RATE)
        first = max(self._db_end - len(self._db), -(-begin // self._hop))
        last = (limit - self._win) // self._hop
        db = self._db[first - (self._db_end - len(self._db)): last + 1 - (self._db_end - len(self._db))]
        return (first + int(np.argmin(db))) * self._hop + self._win // 2

    # --- audio buffer ----------------------------------------------------------------------------------

    def _slice(self, begin: int, end: int) -> np.ndarray:
        return self._audio[begin - self._origin: end - self._origin]

    def _forget(self, before: int) -> None:
        """Drop the audio before stream sample `before`, but for what the next energy frame needs."""
        before = min(before, self._db_end * self._hop)
        self._audio = self._audio[before - self._origin:].copy()
        self._origin = before
