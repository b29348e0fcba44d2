"""`asr serve`: the model behind an HTTP and WebSocket server (`asr.server`, docs/serving.md)."""

from __future__ import annotations

import os
from pathlib import Path

from asr.cli import options
from asr.errors import InputError, InstallError
from asr.server.settings import MB, ServerSettings

API_KEY_ENV = "ASR_API_KEY"
DEFAULTS = ServerSettings()  # the flags' defaults are the settings' own


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve the model over HTTP (OpenAI's transcription API) and WebSocket streams",
                       description="Serve a model: POST /v1/audio/transcriptions answers as OpenAI's endpoint does "
                                   "(its clients work unmodified), WebSocket /v1/stream transcribes live audio, GET "
                                   "/ is a browser page. Listens on 127.0.0.1 unless told otherwise. Needs the "
                                   "serve extra: pip install -e '.[serve]'. See docs/serving.md.")
    options.add_model(p)
    options.add_decoder_options(p)
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    net.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    net.add_argument("--api-key", metavar="KEY", default=os.environ.get(API_KEY_ENV) or None,
                     help=f"ask clients for 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; unset: no key)")
    lim = p.add_argument_group("limits", "What is refused rather than queued: 503 with Retry-After beyond the "
                                         "counts, 413 beyond the size, 408 beyond the time.")
    lim.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_bytes / MB, metavar="MB",
                     help=f"largest request body, in MiB (default {DEFAULTS.max_upload_bytes / MB:g}, OpenAI's limit)")
    lim.add_argument("--max-requests", type=int, default=DEFAULTS.max_requests, metavar="N",
                     help=f"transcription requests in progress at once, uploads included (default "
                          f"{DEFAULTS.max_requests})")
    lim.add_argument("--request-seconds", type=float, default=DEFAULTS.request_seconds, metavar="S",
                     help=f"time for a request's body to arrive (default {DEFAULTS.request_seconds:g})")
    lim.add_argument("--max-streams", type=int, default=DEFAULTS.max_streams, metavar="N",
                     help=f"WebSocket streams open at once (default {DEFAULTS.max_streams})")
    lim.add_argument("--idle-seconds", type=float, default=DEFAULTS.idle_seconds, metavar="S",
                     help=f"a stream with no message for this long is closed (default {DEFAULTS.idle_seconds:g})")
    stream = p.add_argument_group("streaming")
    stream.add_argument("--chunk-seconds", type=float, default=DEFAULTS.chunk_seconds, metavar="S",
                        help=f"audio the model takes per step of a stream (default {DEFAULTS.chunk_seconds:g})")
    stream.add_argument("--lookahead-seconds", type=float, default=DEFAULTS.lookahead_seconds, metavar="S",
                        help=f"audio after a chunk that the model hears before its words are final (default "
                             f"{DEFAULTS.lookahead_seconds:g})")
    run = p.add_argument_group("running")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for the model (default: every core this process may use)")
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    try:
        from asr.server.app import create_app, listen, server, stream_config
    except ImportError as e:
        raise InstallError(f"asr serve needs FastAPI and uvicorn ({e}): pip install -e '.[serve]' (the light "
                           "install: pip install './runtime[serve]')") from None

    settings = ServerSettings(
        model=_model_name(args.model), api_key=args.api_key, max_upload_bytes=int(args.max_upload_mb * MB),
        max_requests=args.max_requests, max_streams=args.max_streams, idle_seconds=args.idle_seconds,
        request_seconds=args.request_seconds, chunk_seconds=args.chunk_seconds,
        lookahead_seconds=args.lookahead_seconds)
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be at least 1")
    decoder = options.decoder_overrides(args)
    stream_config(settings)  # these checks, and the port, before the model loads: bad flags are told at once
    sock = listen(args.host, args.port)
    app = create_app(_load(args.model, args.engine, args.threads, decoder), settings)
    host, port = sock.getsockname()[:2]
    print(f"asr serve: {settings.model} at http://{f'[{host}]' if ':' in host else host}:{port} "
          f"(POST /v1/audio/transcriptions, WebSocket /v1/stream, page /); Ctrl-C stops", flush=True)
    server(app).run(sockets=[sock])
    return 0


def _load(model: str | None, engine: str, threads: int | None, decoder: dict):
    """The transcriber, loaded as `asr transcribe` loads it (`asr.catalog.engine_for`): by the torch-free
    runtime for the onnx engine, else by PyTorch, on the CPU."""
    from asr.catalog import engine_for

    if engine_for(model, engine) == "onnx":
        from asr.runtime import load

        return load(model, threads=threads, **decoder)
    from asr.model import set_threads
    from asr.transcribe import Transcriber

    set_threads(threads)
    return Transcriber.load(model, "cpu", decoder=decoder, precision="auto")


def _model_name(spec: str | None) -> str:
    """The name /v1/models reports: a bundled model's name, else the folder or file the model is in."""
    from asr.catalog import DEFAULT

    if spec is None:
        return DEFAULT
    path = Path(spec)
    if path.name == "model.pt":
        return path.parent.name or spec
    return path.stem if path.is_file() else path.name or spec
