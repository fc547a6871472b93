"""The connection: WebSocket with backoff, REST polling fallback, posted as Textual messages.

No widget touches a socket. The client runs as one task in the app's event loop and reports
everything through ``post`` (normally ``App.post_message``), so it can be tested on its own
and the app can be driven without a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from metrics_protocol.wire import Metrics, ProtocolError, decode_data, loads
from metrics_tui.backoff import CAP, Backoff
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    ServerError,
    Status,
)
from metrics_tui.wire import (
    DEFAULT_INTERVAL,
    PONG,
    decode_metrics_body,
    describe_error,
    fetch_rest,
    http_client,
    infer_interval,
    is_unauthorized,
    rest_url,
    tls_failure,
    ws_options,
)

log = logging.getLogger(__name__)


class MetricsClient:
    """Keeps one metrics feed alive and reports it.

    Its own connect loop (rather than ``websockets``' reconnecting iterator) so the status line
    can say which attempt this is and how long until the next one.
    """

    def __init__(
        self,
        url: str,
        post: Callable[[Any], object],
        *,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
        max_retries: int | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.rest_url = rest_url(url)
        self._post = post
        self._token = token
        self._tls = tls
        #: Handshakes tried so far (for tests and diagnostics: proves there is no tight loop).
        self.attempts = 0
        self._rest_refused = False  # REST polling got a 401 (the socket failed otherwise)
        self.backoff = Backoff(max_retries=max_retries, rng=rng or random.Random())
        self._clock = clock
        self._open_timeout = open_timeout
        self.interval = DEFAULT_INTERVAL
        # Timestamps of recent interval samples: the median gap is the server's interval.
        self._samples: deque[Metrics] = deque(maxlen=20)
        self._announced: float | None = None  # the interval the server's history names
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._restart = False
        self._poll_task: asyncio.Task[None] | None = None
        self._polling_ok = False
        self._status = Status(ConnState.CONNECTING)
        self._phase = Status(ConnState.CONNECTING)

    # ------------------------------------------------------------------ control

    @property
    def status(self) -> Status:
        return self._status

    def reconnect_now(self) -> None:
        """Skip the current wait (or leave Offline); if connected, reconnect from scratch."""
        self.backoff.reset()
        if self._ws is not None:
            self._restart = True
            asyncio.get_running_loop().create_task(self._ws.close())
        self._wake.set()

    async def run(self) -> None:
        """Connect, consume, and reconnect forever (or until retries run out, then wait)."""
        try:
            await self._loop()
        finally:
            await self._stop_polling()

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            self._phase_to(Status(ConnState.CONNECTING, attempt=self.backoff.attempt))
            opened = False
            detail = ""
            refused = no_rest = False
            self.attempts += 1
            try:
                async with websockets.connect(
                    self.url,
                    **ws_options(self._token, self._tls),
                    open_timeout=self._open_timeout,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                    max_size=2**22,
                ) as ws:
                    opened = True
                    self._ws = ws
                    self._rest_refused = False
                    self.backoff.reset()
                    await self._stop_polling()
                    self._phase_to(Status(ConnState.LIVE))
                    await self._consume(ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: reconnect
                detail = describe_error(exc)
                refused = is_unauthorized(exc)
                # REST would fail the same way: same token, same certificate.
                no_rest = refused or tls_failure(exc) is not None
                log.info("connection to %s failed: %s", self.url, detail)
            else:
                detail = "connection closed"
            finally:
                self._ws = None

            if self._restart:
                self._restart = False
                continue
            if refused:
                await self._stop_polling()
                self._phase_to(
                    Status(
                        ConnState.UNAUTHORIZED,
                        retry_at=self._clock() + CAP,
                        detail="token refused" if self._token else "no token sent",
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), CAP)
                continue
            if not opened and not no_rest and self._poll_task is None:
                self._poll_task = asyncio.create_task(self._poll_loop())
            delay = self.backoff.next_delay()
            if delay is None:
                await self._stop_polling()
                self._phase_to(Status(ConnState.OFFLINE, detail=detail))
                await self._wake.wait()
                self.backoff.reset()
                continue
            self._phase_to(
                Status(
                    ConnState.RECONNECTING,
                    attempt=self.backoff.attempt,
                    retry_at=self._clock() + delay,
                    detail=detail,
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _consume(self, ws: ClientConnection) -> None:
        idle = max(6 * self.interval, 60.0)
        while True:
            async with asyncio.timeout(idle):
                raw = await ws.recv()
            try:
                self._handle(ws, loads(raw))
            except ProtocolError as exc:
                # One bad frame is not worth dropping a good connection for.
                log.warning("ignoring malformed message: %s", exc)
            idle = max(6 * self.interval, 60.0)

    def _handle(self, ws: ClientConnection, body: Any) -> None:
        if not isinstance(body, dict):
            raise ProtocolError("message must be an object")
        kind = body.get("type")
        if kind == "metrics":
            metrics, sample = decode_metrics_body(body)
            if sample == "interval":
                self._learn_interval(metrics)
            self._post(MetricsUpdated(metrics, sample, self.interval))  # type: ignore[arg-type]
        elif kind == "history":
            data = body.get("data")
            if not isinstance(data, list):
                raise ProtocolError("'data' of history must be a list")
            snapshots = [decode_data(item) for item in data]
            self._samples.clear()
            self._samples.extend(snapshots)
            announced = body.get("interval")
            if isinstance(announced, int | float | Decimal) and not isinstance(announced, bool):
                self._announced = float(announced) if announced > 0 else None
            else:  # an older server: infer it from the samples' spacing
                self._announced = None
            self.interval = self._announced or infer_interval(self._samples, self.interval)
            self._post(HistoryReceived(snapshots, self.interval))
        elif kind == "ping":
            asyncio.get_running_loop().create_task(self._send(ws, PONG))
        elif kind == "error":
            err = body.get("error")
            err = err if isinstance(err, dict) else {}
            self._post(ServerError(str(err.get("code", "")), str(err.get("message", ""))))

    def _learn_interval(self, metrics: Metrics) -> None:
        """Refine the interval from recent samples (history may have been short or empty)."""
        self._samples.append(metrics)
        if self._announced is None:
            self.interval = infer_interval(self._samples, self.interval)

    @staticmethod
    async def _send(ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(text)

    # ------------------------------------------------------------------ REST fallback

    async def _poll_loop(self) -> None:
        """Poll the REST endpoint every interval while the WebSocket is retried behind it."""
        import httpx  # only here: most sessions never poll, and it costs start-up time

        try:
            async with http_client(self._token, self._tls, self._open_timeout) as http:
                while True:
                    try:
                        metrics = await fetch_rest(http, self.rest_url)
                    except (httpx.HTTPError, ProtocolError, OSError) as exc:
                        log.info("REST poll failed: %s", describe_error(exc))
                        refused = is_unauthorized(exc)
                        if self._polling_ok or refused != self._rest_refused:
                            self._polling_ok = False
                            self._rest_refused = refused
                            self._publish()
                        return
                    if not self._polling_ok or self._rest_refused:
                        self._polling_ok = True
                        self._rest_refused = False
                        self._publish()
                    self._post(MetricsUpdated(metrics, "poll", self.interval))
                    await asyncio.sleep(self.interval)
        finally:
            self._poll_task = None

    async def _stop_polling(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._polling_ok = False

    # ------------------------------------------------------------------ status

    def _phase_to(self, phase: Status) -> None:
        self._phase = phase
        self._publish()

    def _publish(self) -> None:
        status = self._phase
        retrying = status.state in (ConnState.CONNECTING, ConnState.RECONNECTING)
        if self._polling_ok and retrying:
            status = Status(
                ConnState.POLLING,
                attempt=status.attempt,
                retry_at=status.retry_at,
                detail=status.detail,
            )
        elif self._rest_refused and retrying:
            # The socket is refused by something else (a proxy) but REST said 401: the token
            # is what the user has to fix, so say that rather than "Reconnecting".
            status = Status(
                ConnState.UNAUTHORIZED,
                attempt=status.attempt,
                retry_at=status.retry_at,
                detail="token refused over REST" if self._token else "no token sent",
            )
        if status != self._status:
            self._status = status
            self._post(ConnectionChanged(status))
