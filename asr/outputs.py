"""Transcripts and their files: the `Transcript` that transcription returns, and the txt, json, srt,
vtt and tsv writers.

A transcript holds segments (stretches of speech, e.g. cut at silences), each with its words, and
all words again with global times. Subtitles are built from words, not segments: `cues` breaks
them into cues that fit on screen (`SubtitleOptions`), so an hour of audio gives readable
subtitles rather than one cue per segment.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from asr.alignment import Word
from asr.atomic import atomic_write_text
from asr.errors import InputError

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


@dataclass
class Segment:
    start: float  # seconds
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass
class Transcript:
    text: str
    duration: float  # seconds of audio
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)  # every segment's words, in order
    alternatives: list[dict] = field(default_factory=list)  # beam search's next best: {"text", "score"}
    # Set when the file is damaged part-way: why reading stopped. The transcript then covers the audio
    # before the damage (`duration` seconds), rather than the whole job losing it.
    error: str | None = None
    # Set when the transcript is probably wrong, or empty because what was heard was judged not to be
    # speech (asr.confidence): one line saying why, which `asr transcribe` prints as a warning.
    warning: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Transcript:
        """The inverse of `to_dict`, so subtitles can be rewritten from a saved .json without the model."""
        segments = [Segment(s["start"], s["end"], s["text"], [Word(**w) for w in s.get("words", [])])
                    for s in d.get("segments", [])]
        words = [Word(**w) for w in d.get("words", [])]
        return cls(d["text"], d["duration"], segments, words, list(d.get("alternatives", [])), d.get("error"),
                   d.get("warning"))


@dataclass(frozen=True)
class SubtitleOptions:
    """How words become subtitle cues. The defaults follow common broadcast guidelines: two lines of
    at most 42 characters, on screen for 0.8 to 7 seconds."""

    max_line_chars: int = 42
    max_lines: int = 2
    max_cue_seconds: float = 7.0  # a single word that lasts longer still gets one cue
    pause_seconds: float = 0.6  # a silence longer than this between words starts a new cue
    min_cue_seconds: float = 0.8  # shorter cues are held longer, up to the start of the next one

    def __post_init__(self):
        for f in fields(self):
            value, lowest = getattr(self, f.name), (0 if f.name in ("pause_seconds", "min_cue_seconds") else 1)
            if not value >= lowest:  # also catches NaN
                raise InputError(f"--{f.name.replace('_', '-')} must be at least {lowest}, got {value}")
        if self.min_cue_seconds > self.max_cue_seconds:
            raise InputError(f"--min-cue-seconds ({self.min_cue_seconds}) is longer than --max-cue-seconds "
                             f"({self.max_cue_seconds})")


@dataclass
class Cue:
    start: float  # seconds
    end: float
    lines: list[str]


def cues(transcript: Transcript, options: SubtitleOptions | None = None) -> list[Cue]:
    """Subtitle cues in order, never overlapping. A cue ends at a segment boundary, at a pause longer
    than `pause_seconds`, or before the word that would take it past `max_lines` lines of
    `max_line_chars` or past `max_cue_seconds`; it runs from its first word's start to its last
    word's end, held to `min_cue_seconds` where the next cue leaves room."""
    o = options or SubtitleOptions()
    result = [cue for words in _word_groups(transcript) for cue in _word_cues(words, o)]
    for prev, cue in zip(result, result[1:], strict=False):  # words that overlap in time must not make cues that do
        cue.start = max(cue.start, prev.end)
        cue.end = max(cue.end, cue.start)
    for i, cue in enumerate(result):
        limit = result[i + 1].start if i + 1 < len(result) else max(cue.end, transcript.duration)
        cue.end = max(cue.end, min(cue.start + o.min_cue_seconds, limit))
    return result


def _word_groups(t: Transcript) -> list[list[Word]]:
    """The words of each segment. Segments without words of their own take the transcript's words by
    time; a segment with text and no word times at all gets times spread over its text."""
    if t.words and not any(s.words for s in t.segments):
        if not t.segments:
            return [t.words]
        starts = [s.start for s in t.segments]
        groups: list[list[Word]] = [[] for _ in t.segments]
        for w in t.words:
            groups[max(0, bisect.bisect_right(starts, (w.start + w.end) / 2) - 1)].append(w)
        return [g for g in groups if g]
    return [s.words or _spread(s) for s in t.segments]


def _spread(segment: Segment) -> list[Word]:
    """Word times guessed in proportion to characters, so a long segment without word times still
    splits into cues that fit on screen."""
    texts = segment.text.split()
    total = sum(len(w) + 1 for w in texts)
    span = max(segment.end - segment.start, 0.0)
    words, chars = [], 0
    for w in texts:
        start = segment.start + span * chars / total
        chars += len(w) + 1
        words.append(Word(w, start, segment.start + span * chars / total, 0.0))
    return words


def _word_cues(words: list[Word], o: SubtitleOptions) -> list[Cue]:
    result: list[Cue] = []
    current: list[Word] = []

    def flush():
        if current:
            result.append(Cue(current[0].start, current[-1].end, _wrap([w.word for w in current], o.max_line_chars)))
            current.clear()

    for w in words:
        w = Word(w.word.strip(), w.start, max(w.end, w.start), w.confidence)
        if not w.word:
            continue
        if current and (w.start - current[-1].end > o.pause_seconds
                        or w.end - current[0].start > o.max_cue_seconds
                        or len(_wrap([c.word for c in current] + [w.word], o.max_line_chars)) > o.max_lines):
            flush()
        current.append(w)
    flush()
    return result


def _wrap(words: list[str], width: int) -> list[str]:
    """Fill lines greedily with whole words; a word longer than `width` gets a line of its own."""
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines


def render(transcript: Transcript, fmt: str, subtitle: SubtitleOptions | None = None) -> str:
    """The text of one output format."""
    if fmt in ("srt", "vtt"):
        return SUBTITLE_WRITERS[fmt](cues(transcript, subtitle))
    if fmt not in WRITERS:
        raise InputError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    return WRITERS[fmt](transcript)


def output_paths(stem: Path, formats: list[str]) -> list[Path]:
    """`stem`.<fmt> for every format: `a.mp3` gives `a.mp3.srt`, never `a.srt`."""
    return [stem.with_name(stem.name + "." + fmt) for fmt in formats]


def write_outputs(transcript: Transcript, stem: Path, formats: list[str],
                  subtitle: SubtitleOptions | None = None) -> list[Path]:
    """Write `stem`.<fmt> for every format, each atomically; `subtitle` shapes the srt and vtt cues."""
    written = output_paths(stem, formats)
    for fmt, path in zip(formats, written, strict=True):
        atomic_write_text(path, render(transcript, fmt, subtitle))
    return written


def _txt(t: Transcript) -> str:
    """One line per segment: an hour of speech as one line is unreadable."""
    lines = [s.text.strip() for s in t.segments if s.text.strip()] if t.segments else [t.text]
    return "\n".join(lines) + "\n"


def _json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _tsv(t: Transcript) -> str:
    """Whisper's tsv: start and end in integer milliseconds, one row per segment."""
    rows = ["start\tend\ttext"] + [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{' '.join(s.text.split())}"
                                   for s in t.segments]
    return "\n".join(rows) + "\n"


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_block(c: Cue, sep: str, line_format=str) -> str:
    times = f"{_timestamp(c.start, sep)} --> {_timestamp(c.end, sep)}\n"
    return times + "".join(line_format(line) + "\n" for line in c.lines)


def _srt(cue_list: list[Cue]) -> str:
    return "\n".join(f"{i}\n{_cue_block(c, ',')}" for i, c in enumerate(cue_list, 1))


def _vtt(cue_list: list[Cue]) -> str:
    return "WEBVTT\n" + "".join("\n" + _cue_block(c, ".", _vtt_escape) for c in cue_list)


def _vtt_escape(line: str) -> str:
    # WebVTT cue text is markup: a bare '<' or '&' would start a tag or an entity.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


WRITERS = {"txt": _txt, "json": _json, "tsv": _tsv}
SUBTITLE_WRITERS = {"srt": _srt, "vtt": _vtt}
