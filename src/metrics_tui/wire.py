"""Protocol helpers shared by the live client and ``--once``.

Deliberately free of Textual so ``metrics-tui --once`` starts fast.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from metrics_server.protocol import (
    REST_METRICS_PATH,
    WS_METRICS_PATH,
    Metrics,
    ProtocolError,
    decode_data,
    loads,
)

DEFAULT_URL = "ws://localhost:3000/ws/metrics"
DEFAULT_INTERVAL = 5.0
PONG = '{"type":"pong"}'


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


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


def rest_url(ws_url: str) -> str:
    """The REST snapshot endpoint beside a WebSocket URL (keeps any proxy path prefix)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path
    prefix = path[: -len(WS_METRICS_PATH)] if path.endswith(WS_METRICS_PATH) else ""
    return urlunsplit((scheme, parts.netloc, prefix.rstrip("/") + REST_METRICS_PATH, "", ""))


def infer_interval(snapshots: Sequence[Metrics], fallback: float = DEFAULT_INTERVAL) -> float:
    """The server's sampling interval, from the spacing of its history (it isn't announced)."""
    stamps = [m.timestamp for m in snapshots]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return fallback
    return min(3600.0, max(0.2, round(statistics.median(gaps), 1)))


def describe_error(exc: BaseException) -> str:
    """A few words for the status line about why a connection failed."""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else None
        return f"connection closed ({code})" if code else "connection lost"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, OSError) and exc.__class__.__name__ == "gaierror":
        return "host not found"
    if isinstance(exc, httpx.ConnectError):
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
    response = await http.get(url)
    response.raise_for_status()
    return decode_metrics_body(loads(response.content))[0]


async def fetch_once(ws_url: str, token: str | None, wait: float = 10.0) -> Metrics:
    """One current snapshot: over WebSocket, else over REST (for proxies that block upgrades)."""
    headers = auth_headers(token)
    ws_error: BaseException
    try:
        async with (
            websockets.connect(
                ws_url, additional_headers=headers, open_timeout=wait, max_size=2**22
            ) as ws,
        ):
            async with asyncio.timeout(wait):
                while True:
                    raw = await ws.recv()
                    body = loads(raw)
                    if isinstance(body, dict) and body.get("type") == "metrics":
                        return decode_metrics_body(body)[0]
    except (OSError, TimeoutError, websockets.WebSocketException, ProtocolError) as exc:
        ws_error = exc
    try:
        async with httpx.AsyncClient(headers=headers, timeout=wait) as http:
            return await fetch_rest(http, rest_url(ws_url))
    except (httpx.HTTPError, ProtocolError, OSError):
        raise ConnectionError(describe_error(ws_error)) from ws_error
