"""A `Transcript` as OpenAI's transcription endpoint answers it, in each `response_format`.

    json          {"text": ...}
    text          the text and a newline, text/plain
    srt, vtt      subtitles, text/plain as OpenAI sends them, cut into cues by `asr.outputs` as `asr
                  transcribe --format srt` cuts them
    verbose_json  {"task", "language", "duration", "text", "segments"?, "words"?}: segments when
                  `timestamp_granularities` is empty or names segment, words when it names word, as OpenAI does

OpenAI's clients parse these into pydantic models that keep unknown keys, so our extras ride along where
they break nothing: each word's `confidence` (0..1, calibrated when the model is) in verbose_json, and in
json and verbose_json a `warning` key when the transcript is probably wrong or empty because what was heard
was judged not to be speech (`Transcript.warning`), and an `incomplete` key when the file was damaged
part-way and only the audio before the damage is transcribed (`Transcript.error`). Both are also response
headers (X-ASR-Warning, X-ASR-Incomplete), for the text formats, which have nowhere else to put them.

A segment's fields that Whisper's decoder fills have our nearest equivalents: `avg_logprob` is the mean log
of its words' confidences, `compression_ratio` is computed from the text as Whisper computes it, `seek` is
the segment's start in 10-ms frames, `tokens` is empty, `temperature` 0 (the decoder does not sample), and
`no_speech_prob` 0, since segments judged not to be speech are dropped rather than returned.
"""

from __future__ import annotations

import math
import zlib

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from asr import outputs
from asr.outputs import Segment, Transcript

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")


def respond(transcript: Transcript, fmt: str, granularities: list[str]) -> Response:
    """The response for `fmt` (one of FORMATS); `granularities` applies to verbose_json only, as OpenAI's does."""
    headers = _headers(transcript)
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n", headers=headers)
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(outputs.render(transcript, fmt), headers=headers)
    body = {"text": transcript.text} if fmt == "json" else verbose(transcript, granularities)
    return JSONResponse({**body, **_extras(transcript)}, headers=headers)


def verbose(t: Transcript, granularities: list[str]) -> dict:
    body = {"task": "transcribe", "language": "english", "duration": t.duration, "text": t.text}
    if not granularities or "segment" in granularities:
        body["segments"] = [_segment(i, s) for i, s in enumerate(t.segments)]
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": _seconds(w.start), "end": _seconds(w.end),
                          "confidence": round(w.confidence, 4)} for w in t.words]
    return body


def _segment(i: int, s: Segment) -> dict:
    logs = [math.log(max(w.confidence, 1e-6)) for w in s.words]
    return {"id": i, "seek": round(s.start * 100), "start": _seconds(s.start), "end": _seconds(s.end),
            "text": s.text, "tokens": [], "temperature": 0.0,
            "avg_logprob": round(sum(logs) / len(logs), 4) if logs else 0.0,
            "compression_ratio": round(compression_ratio(s.text), 4), "no_speech_prob": 0.0}


def compression_ratio(text: str) -> float:
    """Whisper's: the text's bytes over its zlib-compressed bytes (high for text that repeats itself)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _seconds(x: float) -> float:
    return round(x, 3)


def _extras(t: Transcript) -> dict:
    extras = {}
    if t.warning:
        extras["warning"] = t.warning
    if t.error:
        extras["incomplete"] = t.error
    return extras


def _headers(t: Transcript) -> dict[str, str]:
    named = {"X-ASR-Warning": t.warning, "X-ASR-Incomplete": t.error}
    return {name: _header_value(value) for name, value in named.items() if value}


def _header_value(text: str) -> str:
    """One line of ASCII, as a header value must be."""
    return " ".join(text.split()).encode("ascii", "replace").decode("ascii")
