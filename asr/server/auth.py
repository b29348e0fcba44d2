"""The optional API key: `Authorization: Bearer KEY`, what OpenAI's clients send.

With `asr serve --api-key KEY` (or ASR_API_KEY in the environment) every /v1 route asks for it: the
transcription endpoint, the model list and the stream. A browser cannot set headers on a WebSocket, so
the stream also takes the key as the query parameter `api_key` (which then shows in any log of URLs:
prefer the header where the client can set one). /health and the browser page stay open: they tell a
caller nothing but that the server is up and which model it serves, and the page asks for the key itself.

Keys are compared with `hmac.compare_digest`, whose time does not depend on where the strings differ.
"""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from asr.server.errors import APIError


def authorized(connection: HTTPConnection, key: str | None, query: bool = False) -> bool:
    """Whether the request carries `key` (always, when `key` is None); with `query`, also as ?api_key=."""
    if key is None:
        return True
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = connection.query_params.get("api_key", "") if query else ""
    return hmac.compare_digest(given.strip().encode("utf-8"), key.encode("utf-8"))


def require_key(connection: HTTPConnection) -> None:
    """A FastAPI dependency of the /v1 HTTP routes: APIError 401 without the key."""
    if not authorized(connection, connection.app.state.settings.api_key):
        raise APIError(401, "missing or incorrect API key: send the header 'Authorization: Bearer KEY' with the "
                            "key asr serve was given (--api-key or ASR_API_KEY)", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
