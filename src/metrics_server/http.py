"""Plain HTTP on the WebSocket port, answered from websockets' ``process_request`` hook.

websockets parses any method but refuses request bodies (connection.py answers those 400), which
is why ingestion is a WebSocket and these routes are read-only. It answers one request per
connection, so every response says ``Connection: close``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from metrics_protocol import wire as p

from . import logs
from .ranges import Calendar, RangeError, RangeQuery, query_values
from .security import presented_token, split_target, token_ok
from .store import StoreError
from .telemetry import Telemetry

WS_PATHS = (p.WS_METRICS_PATH, p.WS_INGEST_PATH)
#: Routes by name, for the http_responses counter's bounded ``route`` label.
ROUTES = frozenset(
    (*WS_PATHS, p.REST_METRICS_PATH, p.HEALTH_PATH, p.PROMETHEUS_PATH, p.HISTORY_PATH)
)


def json_response(status: HTTPStatus, body: str, **headers: str) -> Response:
    data = body.encode()
    h = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    for name, value in headers.items():
        name = name.replace("_", "-")
        if name in h:  # Headers[...] = v appends
            del h[name]
        h[name] = value
    return Response(status.value, status.phrase, h, data)


def _error(status: HTTPStatus, code: str, message: str, **headers: str) -> Response:
    return json_response(status, p.encode(p.error_message(code, message)), **headers)


error_response = _error  # for connection.py's 400


def _is_upgrade(request: Request) -> bool:
    """Whether the request asks for a WebSocket (websockets checks the rest of the handshake)."""
    return any("websocket" in v.lower() for v in request.headers.get_all("Upgrade"))


class RangeSource(Protocol):
    """What answers a range (the service): its calendar parses, ``range`` reads the rollups."""

    calendar: Calendar

    async def range(self, query: RangeQuery) -> p.Range: ...


async def history_response(source: RangeSource, query: str, connection: object = None) -> Response:
    """``GET HISTORY_PATH``: JSON, or CSV named after the range; 400 naming the parameter."""
    response = await _history(source, query)
    # The connection's output bound is meant for snapshots (connection.py); an answer of 5,000
    # points of large figures is about 1.3 MB, and the connection closes after it.
    limit = getattr(connection, "max_output", None)
    if isinstance(limit, int):
        setattr(connection, "max_output", limit + len(response.body))  # noqa: B010
    return response


async def _history(source: RangeSource, query: str) -> Response:
    try:
        wanted = source.calendar.parse(query_values(query), http=True)
        answer = await source.range(wanted)
    except RangeError as exc:
        return json_response(
            HTTPStatus.BAD_REQUEST,
            p.encode(p.error_message(p.ERR_INVALID_RANGE, exc.message, parameter=exc.parameter)),
        )
    except StoreError:  # the service logged it
        return _error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            p.ERR_STORE_UNAVAILABLE,
            "the store cannot be read now; retry",
            Retry_After="5",
        )
    if wanted.fmt == "csv":
        name = p.range_filename(answer, "csv")
        return json_response(
            HTTPStatus.OK,
            p.range_csv(answer),
            Content_Type="text/csv",
            Content_Disposition=f'attachment; filename="{name}"',
        )
    return json_response(HTTPStatus.OK, p.encode_range(answer))


async def _without_body(response: Awaitable[Response]) -> Response:
    done = await response
    return Response(done.status_code, done.reason_phrase, done.headers, b"")


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
    telemetry: Telemetry | None = None,
    exposition: Callable[[str | None], tuple[bytes, str]] | None = None,
    history: RangeSource | None = None,
) -> Callable[..., Response | Awaitable[Response] | None]:
    """A ``process_request`` that serves the REST routes and lets WebSocket paths through.

    ``HEAD`` is answered as ``GET`` would be (status and headers, Content-Length included)
    without the body: ``curl -I`` and load balancers' checks use it.
    ``exposition(accept) -> (body, content type)`` answers ``/metrics`` (404 without it);
    ``telemetry`` counts the answers, and a 401 is logged (the path without its query).
    ``history`` answers the date ranges (404 without it); it reads the store, so that route
    answers with an awaitable (websockets awaits it)."""
    telemetry = telemetry or Telemetry()

    def counted(connection: object, request: Request) -> Response | Awaitable[Response] | None:
        response = route(connection, request)
        if response is not None and not isinstance(response, Response):
            return counted_later(connection, request, response)
        count(connection, request, response)
        return response

    async def counted_later(
        connection: object, request: Request, response: Awaitable[Response]
    ) -> Response:
        done = await response
        count(connection, request, done)
        return done

    def count(connection: object, request: Request, response: Response | None) -> None:
        if response is not None:
            path = split_target(request.path)[0]
            telemetry.http[path if path in ROUTES else "other", response.status_code] += 1
            if response.status_code == HTTPStatus.UNAUTHORIZED:
                peer = logs.peer(connection)
                logs.event(
                    logging.WARNING, "unauthorized", "401 for %s %s from %s",
                    request.method, path, peer, peer=peer, route=path,
                    method=request.method, code=p.ERR_UNAUTHORIZED,
                )  # fmt: skip

    def route(connection: object, request: Request) -> Response | Awaitable[Response] | None:
        if request.method != "HEAD":
            return answer(request, connection)
        response = answer(request, connection)
        assert response is not None  # a HEAD is never a handshake: see answer()
        if not isinstance(response, Response):
            return _without_body(response)
        return Response(response.status_code, response.reason_phrase, response.headers, b"")

    def answer(request: Request, connection: object) -> Response | Awaitable[Response] | None:
        path = split_target(request.path)[0]
        if (
            path not in ROUTES
            or (path == p.PROMETHEUS_PATH and exposition is None)
            or (path == p.HISTORY_PATH and history is None)
        ):
            return _error(HTTPStatus.NOT_FOUND, p.ERR_NOT_FOUND, f"no route for {path}")
        if request.method not in ("GET", "HEAD"):
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                p.ERR_METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {path}; use GET",
                Allow="GET, HEAD",
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
        if path == p.HISTORY_PATH and history is not None:
            return history_response(history, split_target(request.path)[1], connection)
        if path == p.PROMETHEUS_PATH and exposition is not None:
            # get_all: two Accept headers must not raise (a 500); they read as one list.
            data, content_type = exposition(", ".join(request.headers.get_all("Accept")))
            h = Headers(
                [
                    ("Content-Length", str(len(data))),
                    ("Cache-Control", "no-store"),
                    ("Connection", "close"),
                ]
            )
            h["Content-Type"] = content_type
            return Response(200, "OK", h, data)  # route() leaves the body out for HEAD
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
        if request.method == "HEAD" or not _is_upgrade(request):
            # What websockets answers too, but in JSON like every other error here.
            return _error(
                HTTPStatus.UPGRADE_REQUIRED,
                p.ERR_INVALID_MESSAGE,
                f"{path} is a WebSocket endpoint; connect with a WebSocket client",
                Upgrade="websocket",
            )
        return None  # a WebSocket path: go on with the handshake

    return counted
