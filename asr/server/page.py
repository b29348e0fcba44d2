"""The browser page of `asr serve`: `/` is a page that transcribes the microphone live over the WebSocket
and uploaded files over the OpenAI-compatible endpoint; `/page/...` are its script, worklet and style sheet.

The files in `asr/server/page/` are served as they are (plain JavaScript and CSS, no build step); they
install with the package (package data), so the page works from a wheel as from a checkout."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

PAGE_DIR = Path(__file__).resolve().parent / "page"

# Static files take their content type from `mimetypes`, which on Windows reads the registry, where .js
# may be text/plain: a browser refuses to run a module script of that type.
for _type, _suffix in [("text/javascript", ".js"), ("text/css", ".css"), ("text/html", ".html")]:
    mimetypes.add_type(_type, _suffix)


def add_page(app) -> None:
    """Serve the page on `app` (FastAPI or Starlette): GET `/` and the files under `/page/`."""

    async def index(request: Request) -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.add_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/page", StaticFiles(directory=PAGE_DIR), name="page")
