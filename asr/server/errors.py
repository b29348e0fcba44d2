"""Errors as OpenAI's API gives them, so that its clients raise their usual exceptions with our message.

Every error response of the server is JSON of one shape, whatever raised it:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "language", "code": "unsupported_language"}}

A handler raises `APIError` (status, message, parameter, code); `install` registers the handlers that turn
it, Starlette's own HTTP errors (404, 405) and any unexpected exception into that shape. An unexpected
exception is a bug, not the client's fault: it is answered with a 500 that names nothing of the server's
insides, the ASGI server logs its traceback, and the server and its worker thread go on. (The model's
failures, the likeliest, are caught where they happen, `asr.server.transcriptions`, as an APIError 500: after
the last-resort handler here uvicorn also closes the connection.)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class APIError(Exception):
    """An error answered to the client: HTTP `status`, a one-line `message`, the request `param` at fault
    (None when no single one is), a machine-readable `code`, and extra response `headers` (Retry-After)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object; `type` is server_error for 5xx, as OpenAI's is, else invalid_request_error."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.status, e.param, e.code), status_code=e.status, headers=e.headers)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error response OpenAI's shape."""

    async def api_error(request: Request, e: APIError) -> JSONResponse:
        return error_response(e)

    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return JSONResponse(error_body(str(e.detail), e.status_code, code=code), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        # Starlette raises the exception again after this response is sent, for the ASGI server to log
        # with its traceback (uvicorn does, at any log level): logging it here too would say it twice.
        return JSONResponse(error_body("internal server error; the server log has the details", 500),
                            status_code=500)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
