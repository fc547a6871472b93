"""Protocol helpers shared by the live client and ``--once``.

Deliberately free of Textual so ``metrics-tui --once`` starts fast, and httpx is imported only
where REST is used (polling, ``--once``): the monitor's first figures come over the WebSocket.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from metrics_protocol.wire import (
    REST_METRICS_PATH,
    WS_INGEST_PATH,
    WS_METRICS_PATH,
    Metrics,
    ProtocolError,
    decode_data,
    loads,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "ws://localhost:3000/ws/metrics"
DEFAULT_INTERVAL = 5.0
PONG = '{"type":"pong"}'


#: What a 404 on the handshake means for the user: the path is wrong, and REST beside a wrong
#: path would only answer for some other URL (it is derived from the host).
NOT_FOUND = "not found (404): check --url"
#: A ``--url`` that names the producers' endpoint.
INGEST_URL = "/ws/ingest is for producers, not a metrics feed: check --url"


class NoAnswer(ConnectionError):
    """The server took the connection but stopped answering (frozen, or a dead link)."""


class NotMetricsFeed(ConnectionError):
    """The URL answers WebSocket, but not with the metrics protocol (e.g. /ws/ingest)."""


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def tls_context(
    url: str, *, cafile: str | None = None, insecure: bool = False
) -> ssl.SSLContext | None:
    """Client TLS settings for a wss:// URL, shared by the WebSocket and its REST fallback.

    None for ws:// (websockets refuses a context there). ``cafile`` trusts a private CA
    instead of the system store; ``insecure`` turns verification off altogether. Raises
    OSError or ssl.SSLError when the CA file cannot be read.
    """
    if urlsplit(url).scheme != "wss":
        return None
    ctx = ssl.create_default_context(cafile=cafile)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def is_insecure(ctx: ssl.SSLContext | None) -> bool:
    """True when TLS is in use without certificate verification (--insecure)."""
    return ctx is not None and ctx.verify_mode == ssl.CERT_NONE


def ws_options(token: str | None, tls: ssl.SSLContext | None) -> dict[str, Any]:
    """Keyword arguments for ``websockets.connect``: the token header and any TLS context."""
    options: dict[str, Any] = {"additional_headers": auth_headers(token)}
    if tls is not None:
        options["ssl"] = tls
    return options


def http_client(token: str | None, tls: ssl.SSLContext | None, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for the REST fallback with the same token and TLS settings as the socket."""
    import httpx

    return httpx.AsyncClient(headers=auth_headers(token), timeout=timeout, verify=tls or True)


def _is_httpx(exc: BaseException, name: str) -> bool:
    """``isinstance(exc, httpx.<name>)`` without importing httpx: if it was never imported, no
    httpx error can exist."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, getattr(httpx, name))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused handshake or REST request, if that is what failed."""
    if isinstance(exc, InvalidStatus) or _is_httpx(exc, "HTTPStatusError"):
        return int(exc.response.status_code)  # type: ignore[attr-defined]
    return None


def url_problem(url: str) -> str | None:
    """Why a ``--url`` cannot be a metrics feed, found without connecting (None if it may be).

    Only the producers' path is known to be wrong: any other path may sit behind a proxy.
    """
    if urlsplit(url).path.rstrip("/").endswith(WS_INGEST_PATH):
        return INGEST_URL
    return None


def is_unauthorized(exc: BaseException) -> bool:
    """The server refused the token (HTTP 401): retrying soon or over REST cannot help."""
    if isinstance(exc, InvalidStatus) or _is_httpx(exc, "HTTPStatusError"):
        return exc.response.status_code == 401  # type: ignore[attr-defined]
    return False


def tls_failure(exc: BaseException) -> str | None:
    """A short reason when a TLS handshake failed, looking through wrapping exceptions.

    httpx wraps the ssl error twice; websockets raises it as is.
    """
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ssl.SSLCertVerificationError):
            why = (err.verify_message or "").rstrip(".")
            return f"certificate verify failed: {why}" if why else "certificate verify failed"
        if isinstance(err, ssl.SSLError):
            reason = (err.reason or "").replace("_", " ").lower()
            if reason == "wrong version number":
                return "TLS handshake failed (not a TLS server? try ws://)"
            return f"TLS error: {reason}" if reason else "TLS error"
        err = err.__cause__ or err.__context__
    return None


def validate_ws_url(url: str) -> str:
    """Return the URL if it is a usable ws:// or wss:// URL, else raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"bad port in URL: {url!r}") from None
    return url


def redact(url: str) -> str:
    """``url`` fit for a log line or a message: no query string (``?token=`` may be in it),
    no fragment, and no user or password."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL (an unclosed IPv6 bracket): the query goes at least
        return url.partition("?")[0]
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def rest_url(ws_url: str) -> str:
    """The REST snapshot endpoint beside a WebSocket URL (keeps any proxy path prefix)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path
    prefix = path[: -len(WS_METRICS_PATH)] if path.endswith(WS_METRICS_PATH) else ""
    return urlunsplit((scheme, parts.netloc, prefix.rstrip("/") + REST_METRICS_PATH, "", ""))


def describe_error(exc: BaseException) -> str:
    """A few words for the status line about why a connection failed."""
    if is_unauthorized(exc):
        return "unauthorized (HTTP 401)"
    tls = tls_failure(exc)
    if tls is not None:
        return tls
    if isinstance(exc, NoAnswer | NotMetricsFeed):
        return str(exc)
    status = http_status(exc)
    if status == 404:
        return NOT_FOUND
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else None
        return f"connection closed ({code})" if code else "connection lost"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError) or _is_httpx(exc, "TimeoutException"):
        return "timed out"
    if isinstance(exc, OSError) and exc.__class__.__name__ == "gaierror":
        return "host not found"
    if _is_httpx(exc, "ConnectError"):
        return "connection failed"
    if isinstance(exc, InvalidURI):
        return "bad URL"
    if isinstance(exc, ProtocolError):
        return f"bad data: {exc}"
    text = str(exc).strip().splitlines()
    return text[0][:60] if text else exc.__class__.__name__


def decode_metrics_body(body: Any) -> tuple[Metrics, str]:
    """Decode a ``{"type":"metrics",...}`` object; returns the snapshot and its kind."""
    if not isinstance(body, dict) or body.get("type") != "metrics":
        raise ProtocolError("expected a metrics message")
    kind = body.get("kind", "change")
    return decode_data(body.get("data")), kind if kind in ("interval", "change") else "change"


async def fetch_rest(http: httpx.AsyncClient, url: str) -> Metrics:
    """One snapshot from the REST endpoint."""
    return (await fetch_rest_body(http, url))[0]


async def fetch_rest_body(http: httpx.AsyncClient, url: str) -> tuple[Metrics, float | None]:
    """One snapshot from the REST endpoint, and the server's interval if the answer names it
    (a server that predates the ``interval`` field does not)."""
    response = await http.get(url)
    response.raise_for_status()
    body = loads(response.content)
    return decode_metrics_body(body)[0], announced_interval(body)


def announced_interval(body: Any) -> float | None:
    """The positive ``interval`` a history message or REST answer names, else None."""
    value = body.get("interval") if isinstance(body, dict) else None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


class Unauthorized(ConnectionError):
    """The server answered 401: the token is missing or wrong."""


async def fetch_once(
    ws_url: str, token: str | None, wait: float = 10.0, tls: ssl.SSLContext | None = None
) -> Metrics:
    """One current snapshot: over WebSocket, else over REST (for proxies that block upgrades).

    A 401 or a TLS failure is final: REST sits behind the same token and certificate. So is a
    wrong path (404, /ws/ingest): REST at the host's root would answer for another URL.
    """
    problem = url_problem(ws_url)
    if problem is not None:
        raise ConnectionError(problem)
    ws_error: BaseException
    try:
        async with websockets.connect(
            ws_url, open_timeout=wait, max_size=2**22, **ws_options(token, tls)
        ) as ws:
            async with asyncio.timeout(wait):
                while True:
                    raw = await ws.recv()
                    body = loads(raw)
                    if isinstance(body, dict) and body.get("type") == "metrics":
                        return decode_metrics_body(body)[0]
    except (OSError, TimeoutError, websockets.WebSocketException, ProtocolError) as exc:
        ws_error = exc
    if is_unauthorized(ws_error):
        raise Unauthorized(describe_error(ws_error)) from ws_error
    if tls_failure(ws_error) is not None or http_status(ws_error) == 404:
        raise ConnectionError(describe_error(ws_error)) from ws_error
    import httpx

    try:
        async with http_client(token, tls, wait) as http:
            return await fetch_rest(http, rest_url(ws_url))
    except (httpx.HTTPError, ProtocolError, OSError) as exc:
        if is_unauthorized(exc):
            raise Unauthorized(describe_error(exc)) from exc
        raise ConnectionError(describe_error(ws_error)) from ws_error


def position(body: Any) -> tuple[str, int] | None:
    """``(epoch, seq)`` of a decoded ``metrics`` or ``history`` message (docs/protocol.md), or
    None from an older server that sends neither. ProtocolError when they are malformed: the
    message is then ignored like any other bad frame, never shown out of order."""
    if not isinstance(body, dict) or ("seq" not in body and "epoch" not in body):
        return None
    epoch, seq = body.get("epoch"), body.get("seq")
    if not isinstance(epoch, str) or not 1 <= len(epoch) <= 64:
        raise ProtocolError("'epoch' must be a string of 1 to 64 characters")
    if type(seq) is not int or seq < 0:
        raise ProtocolError("'seq' must be a non-negative integer")
    return epoch, seq


def split_urls(text: str) -> tuple[str, ...]:
    """The URLs of ``--url`` given more than once, or of a comma-separated METRICS_WS_URL."""
    return tuple(u.strip() for u in text.split(",") if u.strip())
