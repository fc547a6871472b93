"""Plain HTTP on the WebSocket port, answered from websockets' ``process_request`` hook.

websockets parses any method but refuses request bodies, which is why ingestion is a WebSocket
and these routes are read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from . import protocol as p

WS_PATHS = (p.WS_METRICS_PATH, p.WS_INGEST_PATH)


def json_response(status: HTTPStatus, body: str, **headers: str) -> Response:
    data = body.encode()
    h = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ]
    )
    for name, value in headers.items():
        h[name.replace("_", "-")] = value
    return Response(status.value, status.phrase, h, data)


def _error(status: HTTPStatus, code: str, message: str, **headers: str) -> Response:
    return json_response(status, p.encode(p.error_message(code, message)), **headers)


def make_router(current_metrics: Callable[[], p.Metrics]) -> Callable[..., Response | None]:
    """A ``process_request`` that serves the REST routes and lets WebSocket paths through."""

    def route(_connection: object, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        known = path in WS_PATHS or path in (p.REST_METRICS_PATH, p.HEALTH_PATH)
        if not known:
            return _error(HTTPStatus.NOT_FOUND, p.ERR_NOT_FOUND, f"no route for {path}")
        if request.method != "GET":
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                p.ERR_METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {path}; use GET",
                Allow="GET",
            )
        if path == p.HEALTH_PATH:
            return json_response(HTTPStatus.OK, '{"status":"ok"}')
        if path == p.REST_METRICS_PATH:
            return json_response(HTTPStatus.OK, p.encode_metrics(current_metrics(), "change"))
        return None  # a WebSocket path: go on with the handshake

    return route
