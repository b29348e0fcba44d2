"""`asr serve` (asr.server): the real app under uvicorn on 127.0.0.1, called by OpenAI's own client, unmodified,
by raw HTTP where a test must control the bytes on the wire, and by the `websockets` client for streams.

The transcripts are the bundled AN4 model's, and must equal what `Transcriber.transcribe` gives offline. The
limits are set small so that every refusal (401, 408, 413, 503, WebSocket idle and busy) happens within a
second or two; a refusal that depends on another request in progress is arranged by the test (a transcriber
double that waits on an event), never by timing. WebSocket protocol tests use `EchoStream`, a double of
`asr.streaming.Stream` that reports what it was given; one test streams real speech through the real engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

openai = pytest.importorskip("openai")
websockets_client = pytest.importorskip("websockets.sync.client")

from torchless import without_torch  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from asr import outputs  # noqa: E402
from asr.catalog import models_dir  # noqa: E402
from asr.outputs import Transcript  # noqa: E402
from asr.server.app import create_app, running  # noqa: E402
from asr.server.settings import ServerSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "an4-dev-example.wav"
ENGLISH_EXAMPLE = REPO / "examples" / "english-dev-example.wav"
KEY = "test-key"
SETTINGS = ServerSettings(model="an4", api_key=KEY, max_upload_bytes=1 << 20, max_requests=2, request_seconds=1.0,
                          max_streams=2, idle_seconds=1.0, retry_after_seconds=1)
pytestmark = pytest.mark.skipif(not (models_dir() / "an4" / "model.pt").is_file(), reason="needs the bundled an4 model")


# --- servers ------------------------------------------------------------------------------------------------


class EchoStream:
    """A double of `asr.streaming.Stream`: a partial per message with the samples so far and the loudest one,
    and at the end a final with the total; it records the threads it ran on."""

    def __init__(self, threads: set):
        self.samples, self.peak, self.threads = 0, 0.0, threads

    def accept(self, samples: np.ndarray) -> list[dict]:
        assert samples.dtype == np.float32 and samples.ndim == 1
        self.threads.add(threading.current_thread().name)
        self.samples += len(samples)
        self.peak = max(self.peak, float(np.abs(samples).max(initial=0.0)))
        return [{"type": "partial", "text": str(self.samples), "start": 0.0, "peak": self.peak}]

    def finish(self) -> list[dict]:
        self.threads.add(threading.current_thread().name)
        return [{"type": "final", "text": str(self.samples), "start": 0.0, "end": self.samples / 16000,
                 "words": [], "warning": None}]


@pytest.fixture(scope="module")
def an4():
    from asr.transcribe import Transcriber

    return Transcriber.load("an4")


@pytest.fixture(scope="module")
def offline(an4) -> Transcript:
    return an4.transcribe(EXAMPLE)


@pytest.fixture(scope="module")
def stream_threads() -> set:
    return set()


@pytest.fixture(scope="module")
def port(an4, offline, stream_threads):
    """The AN4 model served with SETTINGS; streams by EchoStream."""
    with running(create_app(an4, SETTINGS, new_stream=lambda: EchoStream(stream_threads))) as p:
        yield p


@pytest.fixture(scope="module")
def client(port):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)


# --- raw HTTP -----------------------------------------------------------------------------------------------


def multipart(fields: list[tuple[str, str]], audio: bytes | None, filename: str = "a.wav") -> tuple[bytes, dict]:
    """A multipart/form-data body -> (body, headers with the key)."""
    boundary = "asr-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields]
    if audio is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + audio + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}",
                             "Authorization": f"Bearer {KEY}"}


def request(port: int, method: str, path: str, body=None, headers: dict | None = None, chunked: bool = False):
    """-> (status, headers, decoded JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        data = response.read().decode()
        is_json = response.getheader("content-type", "").startswith("application/json")
        return response.status, dict(response.getheaders()), json.loads(data) if is_json else data
    finally:
        conn.close()


def health(port: int) -> dict:
    return request(port, "GET", "/health")[2]


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def openai_error(e: Exception) -> dict:
    """The `error` object of an OpenAI client exception."""
    assert isinstance(e.body, dict), e.body
    return e.body


# --- POST /v1/audio/transcriptions --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_each_response_format_is_the_offline_transcript(client, offline, fmt):
    with open(EXAMPLE, "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)
    if fmt == "json":
        assert result.text == offline.text == "p i t t s b u r g h"
    elif fmt == "text":
        assert result == offline.text + "\n"
    else:
        assert result == outputs.render(offline, fmt)
        assert result.startswith("WEBVTT\n" if fmt == "vtt" else "1\n00:00:")


@pytest.mark.parametrize("granularities", [["word", "segment"], ["word"], ["segment"], None])
def test_verbose_json_has_the_words_and_segments_asked_for(client, offline, granularities):
    extra = {} if granularities is None else {"timestamp_granularities": granularities}
    with open(EXAMPLE, "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                    language="en", prompt="ignored", temperature=0.2, **extra)
    assert (result.text, result.language, result.duration) == (offline.text, "english", offline.duration)
    if granularities is None or "segment" in granularities:
        assert [(s.start, s.end, s.text) for s in result.segments] == \
               [(round(s.start, 3), round(s.end, 3), s.text) for s in offline.segments]
        segment = result.segments[0]
        assert (segment.id, segment.tokens, segment.temperature, segment.no_speech_prob) == (0, [], 0.0, 0.0)
        assert segment.avg_logprob < 0 and segment.compression_ratio > 0
    else:
        assert result.segments is None
    if granularities and "word" in granularities:
        assert [(w.word, w.start, w.end) for w in result.words] == \
               [(w.word, round(w.start, 3), round(w.end, 3)) for w in offline.words]
        assert [w.model_extra["confidence"] for w in result.words] == [round(w.confidence, 4) for w in offline.words]
    else:
        assert result.words is None


def test_models_and_health(client, port):
    assert [m.id for m in client.models.list()] == ["an4"]
    assert client.models.retrieve("an4").id == "an4"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("whisper-1")
    assert health(port) == {"status": "ok", "model": "an4", "streams": 0, "requests": 0}  # no key needed


def test_a_missing_or_wrong_key_is_401(port):
    wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e, open(EXAMPLE, "rb") as f:
        wrong.audio.transcriptions.create(model="whisper-1", file=f)
    assert e.value.status_code == 401 and openai_error(e.value)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    body, headers = multipart([], EXAMPLE.read_bytes())
    del headers["Authorization"]
    status, response_headers, error = request(port, "POST", "/v1/audio/transcriptions", body, headers)
    assert status == 401 and response_headers["www-authenticate"] == "Bearer"
    assert error["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("name, data", [
    ("noise.wav", np.random.default_rng(0).bytes(20_000)),
    ("notes.txt", b"this is not audio\n" * 50),
    ("truncated.wav", EXAMPLE.read_bytes()[:30]),
    ("empty.wav", b""),
])
def test_audio_that_cannot_be_read_is_a_400_naming_the_file(client, port, name, data):
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="whisper-1", file=(name, data))
    error = openai_error(e.value)
    assert (error["param"], error["code"]) == ("file", "invalid_audio")
    assert repr(name) in error["message"] and "asr-serve-" not in error["message"]  # not our temporary path
    assert health(port)["requests"] == 0


@pytest.mark.parametrize("fields, param, code", [
    ([("language", "fr")], "language", "unsupported_language"),
    ([("response_format", "diarized_json")], "response_format", "invalid_value"),
    ([("timestamp_granularities[]", "sentence")], "timestamp_granularities[]", "invalid_value"),
])
def test_options_we_cannot_honour_are_a_400_naming_them(client, fields, param, code):
    name, value = fields[0]
    options = {"timestamp_granularities": [value], "response_format": "verbose_json"} if "granularities" in name \
        else {name: value}
    with pytest.raises(openai.BadRequestError) as e, open(EXAMPLE, "rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f, **options)
    assert (openai_error(e.value)["param"], openai_error(e.value)["code"]) == (param, code)


@pytest.mark.parametrize("language", ["en", "English", " ENGLISH "])
def test_english_is_accepted_however_it_is_written(client, offline, language):
    with open(EXAMPLE, "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f, language=language).text == offline.text


@pytest.mark.parametrize("body, content_type, code", [
    (multipart([("model", "whisper-1")], None)[0], None, "missing_file"),
    (b"file=abc", "application/x-www-form-urlencoded", "invalid_content_type"),
    (b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc", "multipart/form-data; boundary=b",
     "invalid_body"),  # no closing boundary
    (multipart([], b"RIFF")[0].replace(b"--asr-test-boundary--\r\n", b"") + multipart([], b"RIFF")[0], None,
     "invalid_value"),  # two files
    (multipart([("prompt", "x" * 100_000)], b"RIFF")[0], None, "invalid_value"),  # a field longer than 64 KB
])
def test_a_malformed_request_is_a_400(port, body, content_type, code):
    headers = multipart([], None)[1]
    if content_type:
        headers["Content-Type"] = content_type
    status, _, error = request(port, "POST", "/v1/audio/transcriptions", body, headers)
    assert (status, error["error"]["code"]) == (400, code)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_413(port, chunked):
    body, headers = multipart([("model", "whisper-1")], bytes(SETTINGS.max_upload_bytes + 1000))
    if chunked:  # no Content-Length: the server must count the bytes as they come
        data = body
        body = (data[i: i + 65536] for i in range(0, len(data), 65536))
    status, response_headers, error = request(port, "POST", "/v1/audio/transcriptions", body, headers, chunked)
    assert (status, error["error"]["code"]) == (413, "request_too_large")
    assert ("content-length" in response_headers) and "transfer-encoding" not in response_headers
    wait_for(lambda: health(port)["requests"] == 0)


def test_a_body_that_does_not_arrive_in_time_is_a_408(port):
    body, headers = multipart([("model", "whisper-1")], EXAMPLE.read_bytes())
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": len(body)}.items())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body[:1000])
        reply = sock.makefile("rb").read()  # the server answers, then closes
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert SETTINGS.request_seconds <= time.monotonic() - started < SETTINGS.request_seconds + 5
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    wait_for(lambda: health(port)["requests"] == 0)


class GatedTranscriber:
    """A double whose `transcribe` waits for `gate` and then returns a fixed transcript, or raises once if told to."""

    def __init__(self, fail_first: bool = False):
        self.gate, self.entered, self.fail_first = threading.Event(), threading.Event(), fail_first

    def transcribe(self, path):
        self.entered.set()
        assert self.gate.wait(30)
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("a bug")
        return Transcript("hello", 1.0)


def test_requests_beyond_the_limit_are_503_with_retry_after():
    double = GatedTranscriber()
    settings = ServerSettings(model="double", max_requests=1, retry_after_seconds=3)
    with running(create_app(double, settings, new_stream=lambda: EchoStream(set()))) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        held = {}
        first = threading.Thread(target=lambda: held.update(
            text=client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF")).text))
        first.start()
        assert double.entered.wait(30)  # the first request is on the model thread, holding the only slot
        assert health(port)["requests"] == 1
        with pytest.raises(openai.InternalServerError) as e:
            client.audio.transcriptions.create(model="whisper-1", file=("b.wav", b"RIFF"))
        assert e.value.status_code == 503 and e.value.response.headers["retry-after"] == "3"
        assert openai_error(e.value)["code"] == "server_busy"
        double.gate.set()
        first.join(30)
        assert held == {"text": "hello"} and health(port)["requests"] == 0


def test_an_unexpected_error_is_a_json_500_and_the_server_goes_on():
    double = GatedTranscriber(fail_first=True)
    double.gate.set()
    with running(create_app(double, ServerSettings(model="double"), new_stream=lambda: EchoStream(set()))) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as e:
            client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"))
        assert e.value.status_code == 500 and openai_error(e.value)["type"] == "server_error"
        assert "a bug" not in openai_error(e.value)["message"]
        assert client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF")).text == "hello"
        assert health(port)["requests"] == 0


@pytest.mark.skipif(not (models_dir() / "english" / "model.pt").is_file(), reason="needs the bundled english model")
def test_a_warning_rides_along_as_a_key_and_a_header(tmp_path):
    from asr.transcribe import Transcriber

    english = Transcriber.load("english")
    backwards = tmp_path / "backwards.wav"  # speech played backwards: unlike anything the model heard
    wave, rate = soundfile.read(ENGLISH_EXAMPLE, dtype="float32")
    soundfile.write(backwards, wave[::-1], rate)
    expected = english.transcribe(backwards)
    assert expected.warning and expected.warning.startswith("probably wrong")
    with running(create_app(english, ServerSettings(), new_stream=lambda: EchoStream(set()))) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        for fmt in ("verbose_json", "text"):
            with open(backwards, "rb") as f:
                raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=f,
                                                                           response_format=fmt)
            assert raw.headers["x-asr-warning"] == expected.warning
            if fmt == "verbose_json":
                result = raw.parse()
                assert (result.text, result.model_extra["warning"]) == (expected.text, expected.warning)
            else:
                assert raw.parse() == expected.text + "\n"


# --- WebSocket /v1/stream -----------------------------------------------------------------------------------


def ws_url(port: int, **query) -> str:
    return f"ws://127.0.0.1:{port}/v1/stream?" + "&".join(f"{k}={v}" for k, v in {"api_key": KEY, **query}.items())


def receive_all(ws) -> tuple[list[dict], int]:
    """Every message until the server closes -> (messages, close code)."""
    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=30)))
    except ConnectionClosed as e:
        return messages, e.rcvd.code if e.rcvd else None


def test_a_stream_gets_every_sample_and_ends_with_done(port, stream_threads):
    audio = (np.sin(np.arange(16000) / 10) * 16384).astype("<i2")  # peak 0.5 of full scale
    with websockets_client.connect(ws_url(port)) as ws:
        for start in range(0, len(audio), 1600):  # 0.1 s a message, as a live client sends
            ws.send(audio[start: start + 1600].tobytes())
            assert json.loads(ws.recv(timeout=30))["text"] == str(min(start + 1600, len(audio)))
        ws.send(json.dumps({"type": "end"}))
        messages, code = receive_all(ws)
    assert [m["type"] for m in messages] == ["final", "done"] and messages[0]["text"] == "16000"
    assert code == 1000
    assert stream_threads == {"asr-model_0"}  # the model thread, the one file transcriptions use


def test_float_samples_and_eof(port):
    with websockets_client.connect(ws_url(port, format="f32le")) as ws:
        ws.send(np.array([0.25, -2.0, 0.1], dtype="<f4").tobytes())
        assert json.loads(ws.recv(timeout=30))["peak"] == 1.0  # clipped to full scale
        ws.send("EOF")
        messages, code = receive_all(ws)
    assert [m["type"] for m in messages] == ["final", "done"] and code == 1000


@pytest.mark.parametrize("query, message, close", [
    ({}, b"\x00\x01\x02", 1003),  # a part sample
    ({"format": "f32le"}, np.array([0.1, np.nan], dtype="<f4").tobytes(), 1003),
    ({}, "hello", 1003),  # text that is not the end
    ({"sample_rate": 8000}, None, 1008),
    ({"format": "mp3"}, None, 1008),
])
def test_bad_input_is_an_error_event_and_a_close(port, query, message, close):
    with websockets_client.connect(ws_url(port, **query)) as ws:
        if message is not None:
            ws.send(message)
        messages, code = receive_all(ws)
    assert [m["type"] for m in messages] == ["error"] and messages[0]["error"]
    assert code == close
    wait_for(lambda: health(port)["streams"] == 0)


def test_an_idle_stream_is_closed(port):
    with websockets_client.connect(ws_url(port)) as ws:
        started = time.monotonic()
        messages, code = receive_all(ws)
    # The server's clock starts as it accepts, a moment before the client's returns from the handshake.
    assert SETTINGS.idle_seconds - 0.1 <= time.monotonic() - started < SETTINGS.idle_seconds + 5
    assert [m["type"] for m in messages] == ["error"] and "no message" in messages[0]["error"]
    assert code == 1001


def test_streams_beyond_the_limit_are_refused_with_503(port):
    with contextlib.ExitStack() as stack:
        for _ in range(SETTINGS.max_streams):
            stack.enter_context(websockets_client.connect(ws_url(port)))
        wait_for(lambda: health(port)["streams"] == SETTINGS.max_streams)
        with pytest.raises(InvalidStatus) as e:
            websockets_client.connect(ws_url(port))
        response = e.value.response
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert json.loads(response.body)["error"]["code"] == "server_busy"
    wait_for(lambda: health(port)["streams"] == 0)
    with websockets_client.connect(ws_url(port)) as ws:  # a slot is free again
        ws.send("EOF")
        assert [m["type"] for m in receive_all(ws)[0]] == ["final", "done"]


def test_a_stream_needs_the_key(port):
    with pytest.raises(InvalidStatus) as e:
        websockets_client.connect(ws_url(port, api_key="wrong"))
    assert e.value.response.status_code == 401
    url = ws_url(port).replace(f"api_key={KEY}", "")
    with websockets_client.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        ws.send("EOF")
        assert [m["type"] for m in receive_all(ws)[0]] == ["final", "done"]


def test_without_denial_responses_a_refused_stream_is_accepted_then_closed():
    """Under an ASGI server that cannot answer a handshake with an HTTP error (no `websocket.http.response`
    extension), a stream without the key and one beyond --max-streams get an error event and a close: 1008, 1013."""
    app = create_app(object(), ServerSettings(api_key=KEY, max_streams=1), new_stream=lambda: EchoStream(set()))

    async def connect(query: str, leave: asyncio.Event | None = None) -> list[dict]:
        """One WebSocket connection driven by hand -> the ASGI messages the app sent."""
        inbox, sent = [{"type": "websocket.connect"}], []

        async def receive():
            if inbox:
                return inbox.pop(0)
            if leave is not None:
                await leave.wait()
            return {"type": "websocket.disconnect", "code": 1000}

        async def send(message):
            sent.append(message)

        scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": "/v1/stream",
                 "raw_path": b"/v1/stream", "query_string": query.encode(), "headers": [], "root_path": "",
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "subprotocols": [], "extensions": {}}
        await app(scope, receive, send)
        return sent

    def summary(sent: list[dict]) -> list:
        return [(m["type"], json.loads(m["text"])["type"] if "text" in m else m.get("code")) for m in sent]

    async def scenario():
        assert summary(await connect("api_key=wrong")) == [
            ("websocket.accept", None), ("websocket.send", "error"), ("websocket.close", 1008)]
        leave = asyncio.Event()
        first = asyncio.create_task(connect(f"api_key={KEY}", leave))
        while app.state.streams.active == 0:
            await asyncio.sleep(0.01)
        assert summary(await connect(f"api_key={KEY}")) == [
            ("websocket.accept", None), ("websocket.send", "error"), ("websocket.close", 1013)]
        leave.set()
        assert summary(await first) == [("websocket.accept", None)]

    asyncio.run(scenario())
    assert app.state.streams.active == 0


def test_real_speech_streams_to_the_offline_transcript(an4, offline):
    """The real engine (`asr.streaming`) behind the WebSocket: speech in 0.1-s messages, partials, then a final."""
    from asr.metrics import word_errors

    audio, rate = soundfile.read(EXAMPLE, dtype="int16")
    assert rate == 16000
    audio = np.concatenate([audio, np.zeros(8000, dtype=np.int16)])
    with running(create_app(an4, ServerSettings(model="an4"))) as port, \
            websockets_client.connect(f"ws://127.0.0.1:{port}/v1/stream?sample_rate=16000") as ws:
        for start in range(0, len(audio), 1600):
            ws.send(audio[start: start + 1600].astype("<i2").tobytes())
        ws.send(json.dumps({"type": "end"}))
        messages, code = receive_all(ws)
    assert code == 1000 and messages[-1] == {"type": "done"}
    finals = [m for m in messages if m["type"] == "final"]
    assert any(m["type"] == "partial" and m["text"] for m in messages)
    text = " ".join(m["text"] for m in finals)
    assert text and word_errors(offline.text, text).rate <= 0.2, (offline.text, text)
    assert all({"word", "start", "end", "confidence"} <= set(w) for m in finals for w in m["words"])


# --- the command --------------------------------------------------------------------------------------------

_WITHOUT_TORCH = without_torch("asr.cli")  # `asr serve` where torch and torchaudio cannot be imported


def test_asr_serve_serves_an_exported_model_without_torch(an4_export, offline):
    proc = subprocess.Popen([sys.executable, "-c", _WITHOUT_TORCH, "serve", "--model", str(an4_export), "--port", "0",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line.startswith("asr serve: an4 at http://127.0.0.1:"), (line, proc.stderr.read())
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        with open(EXAMPLE, "rb") as f:
            assert client.audio.transcriptions.create(model="whisper-1", file=f).text == offline.text
        assert health(port)["model"] == "an4"
        audio = soundfile.read(EXAMPLE, dtype="int16")[0].astype("<i2")
        with websockets_client.connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:  # the engine without torch too
            ws.send(audio.tobytes())
            ws.send("EOF")
            messages, code = receive_all(ws)
        assert [m["text"] for m in messages if m["type"] == "final"] == [offline.text] and code == 1000
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert "torch imports tried: [] loaded: []" in stderr, stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (["--max-requests", "0"], "error: --max-requests must be positive, got 0"),
    (["--max-upload-mb", "0"], "error: --max-upload-mb must be positive, got 0"),
    (["--idle-seconds", "nan"], "error: --idle-seconds must be positive, got nan"),
    (["--chunk-seconds", "10"], "error: --chunk-seconds 10, --lookahead-seconds 0.64: chunk_seconds must be in "
                                "(0, 5], not 10.0"),
    (["--port", "{busy}"], "error: cannot listen on 127.0.0.1:{busy}: Address already in use"),
])
def test_asr_serve_refuses_bad_flags_in_one_line(args, message):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        args = [a.format(busy=port) for a in args]
        proc = subprocess.run([sys.executable, "-m", "asr", "serve", "--model", "an4", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip() == message.format(busy=port)
