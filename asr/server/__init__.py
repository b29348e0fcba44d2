"""`asr serve`: the model behind HTTP and WebSocket, OpenAI's transcription API and live streams.

    asr serve --model english --port 8000
    curl -F file=@talk.wav http://127.0.0.1:8000/v1/audio/transcriptions

One process, one loaded model, one ASGI app (FastAPI) under uvicorn:

    settings.py        ServerSettings: the model's name and every limit, from the flags
    app.py             create_app (routes, shared state, error handlers), listen and server (uvicorn)
    transcriptions.py  POST /v1/audio/transcriptions, OpenAI's endpoint, which OpenAI's own clients call
    uploads.py         its multipart body, read as it arrives into a temporary file, within size and time limits
    responses.py       a Transcript as json, text, srt, vtt or verbose_json, as OpenAI answers
    streams.py         WebSocket /v1/stream: PCM in, `asr.streaming` partial and final transcripts out
    worker.py          the one thread all model work runs on, and the slots that bound what waits for it
    auth.py            the optional API key
    errors.py          every error as OpenAI's JSON error object

The model is not thread-safe (its beam-search decoders keep state), so every transcription and every
stream step runs on one worker thread, in turn, while the event loop reads uploads and messages; limits
on requests, streams, upload size and time answer an overload with 503, 413 or 408 at once rather than
let it queue. docs/serving.md is the user's guide. No module here imports torch at the top: an exported
model (`asr export`) is served without it.

This file imports nothing, so that `asr.server.settings` loads without FastAPI: the `asr` command line
reads its defaults from there whether or not the serve extra is installed.
"""
