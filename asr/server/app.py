"""`create_app`: the ASGI app of `asr serve`, and `listen` and `server`, which run it under uvicorn.

    from asr.server.app import create_app, listen, server
    from asr.server.settings import ServerSettings

    app = create_app(Transcriber.load("an4"), ServerSettings(model="an4"))
    server(app).run(sockets=[listen("127.0.0.1", 8000)])

The app holds what every route shares, in `app.state`: the transcriber, the settings, the one model thread
(`ModelWorker`), the request and stream slots (`Slots`), and `new_stream`, which makes a stream's engine
on the model thread. The routes:

    POST /v1/audio/transcriptions   asr.server.transcriptions (OpenAI's endpoint)
    WS   /v1/stream                 asr.server.streams
    GET  /v1/models, /v1/models/ID  OpenAI's model list, of the one model served
    GET  /health                    {"status": "ok", "model", "streams", "requests"}: open, without the key
    GET  /, /page/...               the browser page (asr.server.page), where its files are installed

Nothing here imports torch: with an exported model (`asr.runtime`) the server runs in the light install.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request

from asr.errors import InputError
from asr.server import errors, streams, transcriptions
from asr.server.auth import require_key
from asr.server.errors import APIError
from asr.server.page import PAGE_DIR, add_page
from asr.server.settings import ServerSettings
from asr.server.worker import ModelWorker, Slots

KEEP_ALIVE_SECONDS = 3  # an idle keep-alive connection is closed after this: each holds a socket and a task


def create_app(transcriber, settings: ServerSettings, new_stream: Callable[[], object] | None = None) -> FastAPI:
    """The app serving `transcriber` (PyTorch's `asr.transcribe.Transcriber` or the runtime's) within the
    limits of `settings`. `new_stream`, called on the model thread, makes the engine of each WebSocket
    stream: by default an `asr.streaming.Stream` over `transcriber` with the settings' chunk and lookahead;
    tests give a double of their own."""
    worker = ModelWorker()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.close()

    app = FastAPI(title="asr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.transcriber, app.state.settings, app.state.worker = transcriber, settings, worker
    app.state.requests, app.state.streams = Slots(settings.max_requests), Slots(settings.max_streams)
    app.state.new_stream = new_stream or stream_factory(transcriber, settings)
    app.state.created = int(time.time())
    errors.install(app)
    app.include_router(transcriptions.router)
    app.include_router(streams.router)
    app.add_api_route("/health", health)
    app.add_api_route("/v1/models", models, dependencies=[Depends(require_key)])
    app.add_api_route("/v1/models/{model}", model_info, dependencies=[Depends(require_key)])
    if (PAGE_DIR / "index.html").is_file():  # package data: an install without it serves no page
        add_page(app)
    return app


def stream_factory(transcriber, settings: ServerSettings) -> Callable[[], object]:
    """Make `asr.streaming.Stream`s over `transcriber`, all with one `stream_config(settings)`."""
    from asr.streaming import Stream

    config = stream_config(settings)
    return lambda: Stream(transcriber, config)


def stream_config(settings: ServerSettings):
    """The settings' `asr.streaming.StreamConfig`; InputError naming the flags for values it refuses. `asr
    serve` builds it before the model loads, so that such flags stop it at once rather than fail every stream."""
    from asr.streaming import StreamConfig

    try:
        return StreamConfig(chunk_seconds=settings.chunk_seconds, lookahead_seconds=settings.lookahead_seconds)
    except ValueError as e:
        raise InputError(f"--chunk-seconds {settings.chunk_seconds:g}, --lookahead-seconds "
                         f"{settings.lookahead_seconds:g}: {e}") from None


async def health(request: Request) -> dict:
    state = request.app.state
    return {"status": "ok", "model": state.settings.model, "streams": state.streams.active,
            "requests": state.requests.active}


async def models(request: Request) -> dict:
    return {"object": "list", "data": [_model(request)]}


async def model_info(request: Request, model: str) -> dict:
    if model != request.app.state.settings.model:
        raise APIError(404, f"the model {model[:80]!r} is not served here; this server serves "
                            f"{request.app.state.settings.model!r}", param="model", code="model_not_found")
    return _model(request)


def _model(request: Request) -> dict:
    state = request.app.state
    return {"id": state.settings.model, "object": "model", "created": state.created, "owned_by": "asr"}


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port` (0: a free port), bound before the model loads, so that a port
    in use is told in one line at once; InputError when it cannot be bound."""
    try:
        return socket.create_server((host, port), backlog=128)
    except (OSError, OverflowError) as e:  # create_server adds the address to strerror: say it once
        reason = os.strerror(e.errno) if getattr(e, "errno", None) else str(e)
        raise InputError(f"cannot listen on {host}:{port}: {reason}") from None


def server(app: FastAPI):
    """A uvicorn server for `app`; `.run(sockets=[listen(...)])` serves until it is stopped (Ctrl-C, or
    `should_exit = True` from another thread)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=KEEP_ALIVE_SECONDS,
                            ws_max_size=streams.WS_MAX_MESSAGE_BYTES, lifespan="on")
    return uvicorn.Server(config)


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """`app` served by uvicorn in a background thread of this process, as `asr serve` serves it -> the port
    (0: a free one); stopped when the block ends. For tests, and for a program that embeds the server."""
    sock = listen(host, port)
    uv = server(app)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
