"""Plain HTTP on the WebSocket port, answered from websockets' ``process_request`` hook.

websockets parses any method but refuses request bodies, which is why ingestion is a WebSocket
and these routes are read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from metrics_protocol import wire as p

from .security import presented_token, split_target, token_ok

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


@dataclass(frozen=True, slots=True)
class Access:
    """Who may do what: tokens (None: open) and the subscriber cap."""

    token: str | None = None
    ingest_token: str | None = None
    max_clients: int = 10_000


def make_router(
    current_metrics: Callable[[], p.Metrics],
    access: Access = Access(),
    subscriber_count: Callable[[], int] = lambda: 0,
    interval: float | None = None,
) -> Callable[..., Response | None]:
    """A ``process_request`` that serves the REST routes and lets WebSocket paths through."""

    def route(_connection: object, request: Request) -> Response | None:
        path = split_target(request.path)[0]
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
        if path == p.HEALTH_PATH:  # open, for load balancers and probes
            return json_response(HTTPStatus.OK, '{"status":"ok"}')
        expected = access.ingest_token if path == p.WS_INGEST_PATH else access.token
        # get_all: a repeated header must not raise (a 500); two of them present no token.
        auth = request.headers.get_all("Authorization")
        presented = presented_token(auth[0] if len(auth) == 1 else None, request.path)
        if not token_ok(expected, presented):
            return _error(
                HTTPStatus.UNAUTHORIZED,
                p.ERR_UNAUTHORIZED,
                "a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)",
                WWW_Authenticate="Bearer",
            )
        if path == p.REST_METRICS_PATH:
            body = p.encode_metrics(current_metrics(), "change", interval=interval)
            return json_response(HTTPStatus.OK, body)
        if path == p.WS_METRICS_PATH and subscriber_count() >= access.max_clients:
            return _error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                p.ERR_TOO_MANY_CLIENTS,
                f"the server has {access.max_clients} subscribers already; try again later",
                Retry_After="5",
            )
        if request.protocol != "HTTP/1.1":
            # websockets would answer 505; a client error is the truthful answer.
            return _error(
                HTTPStatus.UPGRADE_REQUIRED,
                p.ERR_INVALID_MESSAGE,
                f"a WebSocket handshake on {path} needs HTTP/1.1",
                Upgrade="websocket",
                Connection="Upgrade",
            )
        return None  # a WebSocket path: go on with the handshake

    return route
