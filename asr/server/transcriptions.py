"""POST /v1/audio/transcriptions: OpenAI's transcription endpoint, answered by the served model.

A request goes through, in this order, so that a refused one costs the server as little as possible:

    1. the API key (`asr.server.auth`): 401 before anything is read
    2. a request slot (`asr.server.worker.Slots`, --max-requests): 503 with Retry-After when all are
       taken; the slot is held from here to the response, upload included
    3. the body (`asr.server.uploads`): the audio into a temporary file, within the size limit (413) and
       the time limit (408)
    4. the form's options: response_format, timestamp_granularities[], language (400 for values we cannot
       honour); model, prompt and temperature are accepted and ignored, since OpenAI's clients send them
    5. `transcriber.transcribe(path)` on the model thread (`asr.server.worker.ModelWorker`): audio that
       cannot be read is a 400 that says why, as `asr transcribe` would; any other failure is logged with
       its traceback and answered 500
    6. the response in the format asked for (`asr.server.responses`)

The temporary folder is made by `tempfile` and removed when the request ends, however it ends. Nothing
the client sends becomes a path, a file name or a command: its file name appears in error messages only.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response

from asr.errors import InputError
from asr.server.auth import require_key
from asr.server.errors import APIError
from asr.server.responses import FORMATS, GRANULARITIES, respond
from asr.server.uploads import AUDIO_FIELD, Form, read_form

ENGLISH = ("en", "english")  # the language values accepted, after lower-casing: the models are English only

log = logging.getLogger("asr.server")
router = APIRouter()


@dataclass(frozen=True)
class Options:
    response_format: str
    granularities: list[str]


@router.post("/v1/audio/transcriptions", dependencies=[Depends(require_key)])
async def transcriptions(request: Request) -> Response:
    state = request.app.state
    settings = state.settings
    if not state.requests.take():
        raise APIError(503, f"the server is busy: {settings.max_requests} transcription requests are in progress "
                            "(asr serve --max-requests); try again shortly", code="server_busy",
                       headers={"Retry-After": str(settings.retry_after_seconds)})
    try:
        with tempfile.TemporaryDirectory(prefix="asr-serve-") as folder:
            path = Path(folder) / "audio"
            with open(path, "wb") as audio:
                form = await read_form(request, audio, settings.max_upload_bytes, settings.request_seconds)
            options = parse_options(form)
            transcript = await state.worker.run(transcribe, state.transcriber, path, form.filename)
            return respond(transcript, options.response_format, options.granularities)
    finally:
        state.requests.release()


def parse_options(form: Form) -> Options:
    """The form's fields -> Options; APIError 400 naming the field for a value we cannot honour."""
    fmt = _last(form, "response_format") or "json"
    if fmt not in FORMATS:
        raise APIError(400, f"response_format {fmt!r} is not one of {', '.join(FORMATS)}", param="response_format",
                       code="invalid_value")
    # OpenAI's clients send the list as repeated `timestamp_granularities[]`; curl users often leave off the [].
    granularities = form.fields.get("timestamp_granularities[]", []) + form.fields.get("timestamp_granularities", [])
    if bad := [g for g in granularities if g not in GRANULARITIES]:
        raise APIError(400, f"timestamp_granularities {bad[0]!r} is not one of {', '.join(GRANULARITIES)}",
                       param="timestamp_granularities[]", code="invalid_value")
    language = (_last(form, "language") or "").strip()
    if language and language.lower() not in ENGLISH:
        raise APIError(400, f"this model transcribes English only: language {language[:40]!r} is not supported "
                            "(leave it out, or send 'en')", param="language", code="unsupported_language")
    if not form.has_file:
        raise APIError(400, f"no audio: send the file in the multipart field '{AUDIO_FIELD}'", param=AUDIO_FIELD,
                       code="missing_file")
    if form.file_bytes == 0:
        raise APIError(400, f"{_name(form.filename)} is empty (0 bytes)", param=AUDIO_FIELD, code="invalid_audio")
    return Options(fmt, granularities)


def transcribe(transcriber, path: Path, filename: str | None):
    """`transcriber.transcribe(path)`, run on the model thread -> the Transcript; APIError 400 for audio it
    cannot read, 500 for a failure of ours. Messages name the client's file, not our temporary path."""
    try:
        transcript = transcriber.transcribe(path)
    except InputError as e:
        raise APIError(400, str(e).replace(str(path), _name(filename)), param=AUDIO_FIELD,
                       code="invalid_audio") from None
    except Exception:
        # A bug, answered here rather than by the app's last-resort handler, after which uvicorn would drop
        # the connection that the client keeps alive for its next request.
        log.exception("transcribing %s failed", _name(filename))
        raise APIError(500, "internal server error; the server log has the details", code="internal_error") from None
    if transcript.error:
        transcript.error = transcript.error.replace(str(path), _name(filename))
    return transcript


def _last(form: Form, name: str) -> str | None:
    values = form.fields.get(name)
    return values[-1] if values else None


def _name(filename: str | None) -> str:
    return f"the uploaded file {filename[:80]!r}" if filename else "the uploaded file"
