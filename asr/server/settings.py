"""`ServerSettings`: the served model's name and the limits that keep one server up under any client.

One frozen dataclass, filled from `asr serve`'s flags (`asr.cli.serve`) or by a test with small limits, and
read by every part of the app. Its defaults are the flags' (`asr.cli.serve` reads them from here); each
limit is enforced where its comment says (docs/serving.md lists them with their flags).
"""

from __future__ import annotations

from dataclasses import dataclass

from asr.errors import InputError

MB = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    model: str = "english"  # the name /v1/models and /health report
    api_key: str | None = None  # None: no key asked for
    # Transcription requests (asr.server.uploads, asr.server.transcriptions):
    max_upload_bytes: int = 25 * MB  # the request body, counted as it arrives: 413 beyond it (OpenAI's limit)
    max_requests: int = 4  # in progress at once, upload included: 503 beyond it
    request_seconds: float = 120.0  # for a request's body to arrive: 408 after it
    # Streams (asr.server.streams):
    max_streams: int = 4  # WebSocket streams open at once: the handshake is refused with 503 beyond it
    idle_seconds: float = 30.0  # a stream with no message for this long is closed (1001)
    chunk_seconds: float = 0.32  # asr.streaming.StreamConfig: audio per model step
    lookahead_seconds: float = 0.64  # and the right context each step waits for
    retry_after_seconds: int = 2  # the Retry-After of a 503

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_requests", "max_streams", "request_seconds", "idle_seconds",
                     "chunk_seconds", "lookahead_seconds", "retry_after_seconds"):
            value, zero_ok = getattr(self, name), name in ("lookahead_seconds", "retry_after_seconds")
            if not (value >= 0 if zero_ok else value > 0):  # also catches NaN
                flag, shown = (("max-upload-mb", value / MB) if name == "max_upload_bytes"
                               else (name.replace("_", "-"), value))
                raise InputError(f"--{flag} must be {'0 or more' if zero_ok else 'positive'}, got {shown:g}")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("--api-key is empty; leave it out to serve without a key")
