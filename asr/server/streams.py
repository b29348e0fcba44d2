"""WebSocket /v1/stream: live audio in, partial and final transcripts out (`asr.streaming.Stream`).

The protocol (docs/serving.md has it with a client):

    query     sample_rate=16000 (the only rate taken), format=s16le (default) or f32le, api_key=KEY
              (for browsers, which cannot set the Authorization header)
    client    binary messages of mono little-endian PCM in that format, any length in whole samples;
              then the text {"type": "end"} (or EOF): no more audio
    server    text messages of JSON: the stream's events as it makes them,
                  {"type": "partial", "text", "start"}
                  {"type": "final", "text", "start", "end", "words": [{"word", "start", "end", "confidence"}],
                   "warning"}
              after the end, the last events, {"type": "done"}, and a normal close (1000);
              on a problem, {"type": "error", "error": "..."} and a close whose code says what kind:
                  1008  bad query parameters, or the API key missing on a server without denial responses
                  1003  data that is not what was promised: a binary message of a part sample, NaN or
                        infinite float samples, a text message other than the end
                  1001  no message for --idle-seconds: the server is going away from an abandoned stream
                        (the code API gateways use for their idle timeouts)
                  1013  (try again later) more than --max-streams streams, where the ASGI server cannot
                        refuse the handshake itself
                  1011  a bug in the server; it is logged
                  1009  (uvicorn's own) a message larger than the server's limit, `WS_MAX_MESSAGE_BYTES`

A handshake beyond --max-streams is refused with HTTP 503 and Retry-After, and one without the API key
with 401, as HTTP errors of the usual JSON shape, through the ASGI WebSocket denial response extension
(uvicorn has it with the websockets library, which `uvicorn[standard]` installs). Only a server without
the extension gets the accept, error event and close above instead.

Every `accept` and `finish` of every stream runs on the one model thread (`asr.server.worker`): the
decoders are shared. A stream awaits each step before it reads the next message, so a client that sends
faster than the model keeps up with is slowed by TCP's own flow control, not buffered without end.
"""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from asr.errors import InputError
from asr.server.auth import authorized
from asr.server.errors import error_body

SAMPLE_RATE = 16000
SAMPLE_FORMATS = {"s16le": "<i2", "f32le": "<f4"}
WS_MAX_MESSAGE_BYTES = 1 << 20  # 32 s of s16le audio in one message: more than any client needs

log = logging.getLogger("asr.server")
router = APIRouter()


class StreamError(Exception):
    """Ends a stream with an error event and the close `code`."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    state = websocket.app.state
    settings = state.settings
    if not authorized(websocket, settings.api_key, query=True):
        await refuse(websocket, 401, "missing or incorrect API key: send 'Authorization: Bearer KEY' or ?api_key=KEY",
                     "invalid_api_key", close_code=1008)
        return
    if not state.streams.take():
        await refuse(websocket, 503, f"the server is busy: {settings.max_streams} streams are open (asr serve "
                                     "--max-streams); try again shortly", "server_busy", close_code=1013,
                     headers={"Retry-After": str(settings.retry_after_seconds)})
        return
    try:
        await websocket.accept()
        await _run(websocket, state)
    except WebSocketDisconnect:
        pass  # the client left: nothing to tell it
    finally:
        state.streams.release()


async def refuse(websocket: WebSocket, status: int, message: str, code: str, close_code: int,
                 headers: dict[str, str] | None = None) -> None:
    """Refuse the handshake with an HTTP error where the ASGI server can send one, else accept, send the
    error event and close with `close_code`."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(error_body(message, status, code=code),
                                                          status_code=status, headers=headers))
        return
    await websocket.accept()
    await _fail(websocket, StreamError(close_code, message))


async def _run(websocket: WebSocket, state) -> None:
    """The stream from its first message to its close."""
    try:
        dtype = sample_format(websocket.query_params)
        transcription = await state.worker.run(state.new_stream)
        while True:
            message = await _next_message(websocket, state.settings.idle_seconds)
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await _send(websocket, await state.worker.run(transcription.accept, samples(message["bytes"], dtype)))
            elif _is_end(message.get("text")):
                await _send(websocket, await state.worker.run(transcription.finish))
                await websocket.send_json({"type": "done"})
                await websocket.close(1000)
                return
            else:
                raise StreamError(1003, 'unexpected text message: send audio as binary messages, then {"type": '
                                        '"end"}')
    except StreamError as e:
        await _fail(websocket, e)
    except InputError as e:  # audio the stream refuses
        await _fail(websocket, StreamError(1003, str(e)))
    except WebSocketDisconnect:
        raise
    except Exception:
        log.exception("stream failed")
        await _fail(websocket, StreamError(1011, "internal server error; the server log has the details"))


def sample_format(query) -> str:
    """The numpy dtype of the stream's samples, from its query parameters; StreamError 1008 for bad ones."""
    rate = query.get("sample_rate", str(SAMPLE_RATE))
    if rate.strip() != str(SAMPLE_RATE):
        raise StreamError(1008, f"sample_rate={rate[:20]}: send {SAMPLE_RATE} Hz audio (sample_rate={SAMPLE_RATE})")
    fmt = query.get("format", "s16le")
    if fmt not in SAMPLE_FORMATS:
        raise StreamError(1008, f"format={fmt[:20]}: choose from {', '.join(SAMPLE_FORMATS)}")
    return SAMPLE_FORMATS[fmt]


def samples(data: bytes, dtype: str) -> np.ndarray:
    """A binary message -> float32 samples in [-1, 1]; StreamError 1003 for a part sample or non-finite floats."""
    width = np.dtype(dtype).itemsize
    if len(data) % width:
        raise StreamError(1003, f"a binary message of {len(data)} bytes is not whole samples of {width} bytes")
    if dtype == "<i2":
        return np.frombuffer(data, dtype).astype(np.float32) / 32768.0
    wave = np.frombuffer(data, dtype).astype(np.float32)
    if not np.all(np.isfinite(wave)):
        raise StreamError(1003, "NaN or infinite samples")
    return np.clip(wave, -1.0, 1.0)  # full scale is 1; a louder sample is clipped as a sound card would


async def _next_message(websocket: WebSocket, idle_seconds: float) -> dict:
    try:
        return await asyncio.wait_for(websocket.receive(), idle_seconds)
    except asyncio.TimeoutError:
        raise StreamError(1001, f"no message for {idle_seconds:g} s: closing the stream") from None


def _is_end(text: str | None) -> bool:
    if text is None:
        return False
    if text.strip() == "EOF":
        return True
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"


async def _send(websocket: WebSocket, events: list[dict]) -> None:
    for event in events:
        await websocket.send_json(event)


async def _fail(websocket: WebSocket, e: StreamError) -> None:
    try:
        await websocket.send_json({"type": "error", "error": e.message})
        await websocket.close(e.code, reason=e.message.encode("utf-8")[:120].decode("utf-8", "ignore"))
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client has gone already
