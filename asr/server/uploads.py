"""The body of a transcription request: multipart form data, read as it arrives and within limits.

The audio part (field `file`) goes straight into a file the caller opened (a temporary file whose name
comes from `tempfile`, never from the request), and the few text fields into memory, at most
`FIELD_BYTES` each; so the server holds no more than one network read of a body in memory, whatever its
size. The limits, each checked here and answered with the status a client expects:

    413  a Content-Length above the limit, before a byte is read; and the bytes counted as they arrive,
         so that a chunked body, which has no length, is stopped at the limit too
    408  the whole body has not arrived within `request_seconds` of the request's start: a client that
         sends a byte a minute would otherwise hold its request slot for ever
    400  not multipart/form-data, a malformed body, too many parts, a field too long, two audio files

The raw ASGI `receive` is read rather than Starlette's form parser, whose upload files are anonymous and
held in memory up to a megabyte, and which offers no byte count or deadline while it reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from asr.server.errors import APIError

AUDIO_FIELD = "file"  # OpenAI's name for the audio part
FIELD_BYTES = 64 << 10  # any other part (a form field), and any part's headers, at most this long
MAX_PARTS = 64  # OpenAI's form has about ten fields; a body with hundreds of parts is not a client of it


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)  # name -> values, in the order they came
    filename: str | None = None  # the name the client gave its file, for messages only: never a path of ours
    has_file: bool = False  # whether the body had a `file` part (an empty one too)
    file_bytes: int = 0


async def read_form(request: Request, audio: BinaryIO, max_bytes: int, seconds: float) -> Form:
    """Read the request's multipart body, the audio part into `audio` -> its `Form`; `APIError` 400, 408 or
    413 as the module docstring says."""
    boundary = _boundary(request.headers.get("content-type"))
    _check_length(request.headers.get("content-length"), max_bytes)
    parts = _Parts(audio)
    parser = MultipartParser(boundary, parts.callbacks())
    loop = asyncio.get_running_loop()
    deadline, received, more = loop.time() + seconds, 0, True
    while more:
        try:
            message = await asyncio.wait_for(request.receive(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise APIError(408, f"the request body did not arrive within {seconds:g} s", code="request_timeout",
                           headers={"Connection": "close"}) from None
        if message["type"] == "http.disconnect":
            raise APIError(400, "the client closed the connection before the whole body arrived",
                           code="incomplete_body")
        body = message.get("body", b"")
        received += len(body)
        if received > max_bytes:
            raise _too_large(max_bytes)
        try:
            parser.write(body)
        except MultipartParseError as e:
            raise APIError(400, f"malformed multipart body ({e})", code="invalid_body") from None
        more = message.get("more_body", False)
    if not parts.ended:
        raise APIError(400, "the multipart body ends before its closing boundary", code="invalid_body")
    return parts.form


def _boundary(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise APIError(400, "send the request as multipart/form-data (with a boundary), the audio in the field "
                            f"'{AUDIO_FIELD}'", code="invalid_content_type")
    return params[b"boundary"]


def _check_length(header: str | None, max_bytes: int) -> None:
    if header is not None and header.strip().isdigit() and int(header) > max_bytes:
        raise _too_large(max_bytes)


def _too_large(max_bytes: int) -> APIError:
    # Connection: close, since the rest of the body is never read: the connection cannot carry another request.
    return APIError(413, f"the request is larger than this server's limit of {max_bytes / (1 << 20):g} MB "
                         "(asr serve --max-upload-mb)", param=AUDIO_FIELD, code="request_too_large",
                    headers={"Connection": "close"})


class _Parts:
    """python_multipart's callbacks: each part's headers and data, the `file` part's data into the audio file."""

    def __init__(self, audio: BinaryIO):
        self.audio, self.form, self.ended = audio, Form(), False
        self._count = 0
        self._begin()

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _begin(self) -> None:
        self._name, self._is_audio, self._value = "", False, bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._field, self._field_value, self._header_bytes = bytearray(), bytearray(), 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += self._bounded_header(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._field_value += self._bounded_header(data[start:end])

    def _bounded_header(self, data: bytes) -> bytes:
        self._header_bytes += len(data)
        if self._header_bytes > FIELD_BYTES:
            raise APIError(400, f"a part's headers are longer than {FIELD_BYTES} bytes", code="invalid_body")
        return data

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._field_value)
        self._field, self._field_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        self._count += 1
        if self._count > MAX_PARTS:
            raise APIError(400, f"more than {MAX_PARTS} parts in the form", code="invalid_body")
        _, params = parse_options_header(self._headers.get(b"content-disposition", b"").decode("latin-1"))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        self._is_audio = self._name == AUDIO_FIELD
        if self._is_audio:
            if self.form.has_file:
                raise APIError(400, f"more than one '{AUDIO_FIELD}' part: send one audio file per request",
                               param=AUDIO_FIELD, code="invalid_value")
            self.form.has_file = True
            name = params.get(b"filename")
            self.form.filename = name.decode("utf-8", "replace") if name is not None else None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_audio:
            # On the event loop: one network read (uvicorn's are at most 64 KB) into the page cache is quick.
            self.audio.write(data[start:end])
            self.form.file_bytes += end - start
            return
        self._value += data[start:end]
        if len(self._value) > FIELD_BYTES:
            raise APIError(400, f"form field '{self._name[:40]}' is longer than {FIELD_BYTES} bytes",
                           param=self._name[:40], code="invalid_value")

    def _part_end(self) -> None:
        if not self._is_audio:
            self.form.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))
        self._begin()

    def _end(self) -> None:
        self.ended = True
