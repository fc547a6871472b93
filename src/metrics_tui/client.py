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
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from metrics_protocol.wire import CHANNELS, Metrics, ProtocolError, decode_data, encode, loads
from metrics_tui.backoff import CAP, Backoff
from metrics_tui.history import (
    RANGE_TYPE,
    RangeError,
    error_text,
    fetch_range_rest,
    history_url,
    range_message,
)
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    ServerError,
    Status,
)
from metrics_tui.policy import (
    Failure,
    Keepalive,
    Outcome,
    after_failure,
    first_message_problem,
    keepalive,
)
from metrics_tui.wire import (
    DEFAULT_INTERVAL,
    PONG,
    NoAnswer,
    NotMetricsFeed,
    announced_interval,
    decode_metrics_body,
    describe_error,
    fetch_rest_body,
    http_client,
    infer_interval,
    is_unauthorized,
    redact,
    rest_url,
    url_problem,
    ws_options,
)

log = logging.getLogger(__name__)

#: Sent on connect. A metrics server already sends every channel, so this changes nothing
#: there; the producers' endpoint answers it with an ``unknown_type`` error, which tells at
#: once that the URL is wrong (it would otherwise say nothing at all).
SUBSCRIBE_ALL = encode({"type": "subscribe", "channels": list(CHANNELS)})


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
        #: The interval the server has stated (in its history, or its REST answer); None
        #: until it has. Only this is ever shown.
        self.interval: float | None = None
        # Recent interval samples: from a server that states no interval, their median gap
        # paces the keepalive and the polling instead.
        self._samples: deque[Metrics] = deque(maxlen=20)
        self._inferred: float | None = None
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._restart = False
        self._poll_task: asyncio.Task[None] | None = None
        self._polling_ok = False
        self._status = Status(ConnState.CONNECTING)
        self._phase = Status(ConnState.CONNECTING)
        #: Range requests sent and not yet answered, by id.
        self._ranges: dict[int, asyncio.Future[Any]] = {}
        self._range_id = 0

    # ------------------------------------------------------------------ control

    @property
    def status(self) -> Status:
        return self._status

    @property
    def period(self) -> float:
        """The interval the timers go by: the stated one, else the inferred one, else 5 s."""
        return self.interval or self._inferred or DEFAULT_INTERVAL

    def reconnect_now(self) -> None:
        """Skip the current wait (or leave Offline); if connected, reconnect from scratch."""
        self.backoff.reset()
        if self._ws is not None:
            self._restart = True
            asyncio.get_running_loop().create_task(self._ws.close())
        self._wake.set()

    async def request_range(self, start: str, end: str, step: str, wait: float = 10.0) -> Any:
        """One range, as the server's JSON body: over the WebSocket while it is open (matched
        by id), else over REST. Raises RangeError when the server refuses it, ConnectionError
        when the socket closes first, TimeoutError after ``wait`` seconds, httpx's errors."""
        ws = self._ws
        if ws is None:
            async with http_client(self._token, self._tls, wait) as http:
                return await fetch_range_rest(http, history_url(self.url), start, end, step)
        self._range_id += 1
        rid = self._range_id
        answer = self._ranges[rid] = asyncio.get_running_loop().create_future()
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            async with asyncio.timeout(wait):  # sending may wait too, behind a full buffer
                await ws.send(range_message(rid, start, end, step))
                await asyncio.wait((answer, closed), return_when=asyncio.FIRST_COMPLETED)
            if not answer.done():
                raise ConnectionError("connection lost before the range came")
            return answer.result()
        finally:
            closed.cancel()
            self._ranges.pop(rid, None)

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
            problem = url_problem(self.url)
            if problem is not None:  # no server can make this URL right: wait for ``r``
                await self._stop_polling()
                self._phase_to(Status(ConnState.WRONG_URL, detail=problem))
                await self._wake.wait()
                continue
            self._phase_to(Status(ConnState.CONNECTING, attempt=self.backoff.attempt))
            opened = False
            failure = Failure(Outcome.RETRY, "connection closed")
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
            except Exception as exc:  # any failure means: reconnect (or tell what to fix)
                failure = after_failure(exc)
                log.info("connection to %s failed: %s", redact(self.url), failure.detail)
            finally:
                self._ws = None

            if self._restart:
                self._restart = False
                continue
            detail = failure.detail
            if failure.outcome is Outcome.WRONG_URL:
                # REST beside a wrong path answers for another URL (it is derived from the
                # host), so polling it would show figures from somewhere else.
                await self._stop_polling()
                self._phase_to(
                    Status(ConnState.WRONG_URL, retry_at=self._clock() + CAP, detail=detail)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), CAP)
                continue
            if failure.outcome is Outcome.UNAUTHORIZED:
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
            # REST sits behind the same certificate: polling helps only when the socket itself
            # was refused (a proxy that blocks upgrades), not once it had opened.
            if not opened and failure.outcome is Outcome.RETRY and self._poll_task is None:
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
        await self._send(ws, SUBSCRIBE_ALL)
        first = True
        while True:
            raw = await self._receive(ws, keepalive(self.period, first=first), first=first)
            if raw is None:  # quiet, but it answered the probe
                continue
            try:
                body = loads(raw)
                if first:
                    problem = first_message_problem(body)
                    if problem is not None:
                        raise NotMetricsFeed(problem)
                    first = False
                self._handle(ws, body)
            except ProtocolError as exc:
                # One bad frame is not worth dropping a good connection for.
                log.warning("ignoring malformed message: %s", exc)

    async def _receive(
        self, ws: ClientConnection, timing: Keepalive, *, first: bool
    ) -> str | bytes | None:
        """The next message; None when none came but the server answered a ping meanwhile.

        Raises NoAnswer when a quiet server does not answer the ping either (frozen, or the
        link is dead), well before websockets' own keepalive (20 s + 20 s) would notice.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timing.quiet):
                return await ws.recv()
        pong: Awaitable[float] | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timing.pong_wait):  # sending may wait too
                pong = await ws.ping()
                return await ws.recv()
        if isinstance(pong, asyncio.Future) and pong.done():
            if first:
                raise NotMetricsFeed("no metrics from this URL: check --url")
            return None
        # A frozen peer would not answer a close either: drop the link now rather than wait
        # close_timeout for the handshake.
        if ws.transport is not None:
            ws.transport.abort()
        raise NoAnswer(f"no answer for {timing.bound:g}s")

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
            self.interval = announced_interval(body)
            self._inferred = None
            if self.interval is None:  # an older server: pace the timers by the samples
                self._inferred = infer_interval(self._samples, DEFAULT_INTERVAL)
            self._post(HistoryReceived(snapshots, self.interval))
        elif kind == RANGE_TYPE:
            self._answer_range(body.get("id"), body)
        elif kind == "ping":
            asyncio.get_running_loop().create_task(self._send(ws, PONG))
        elif kind == "error" and self._range_waiting(body.get("id")):
            self._answer_range(body["id"], RangeError(*reversed(error_text(body))))
        elif kind == "error":
            err = body.get("error")
            err = err if isinstance(err, dict) else {}
            self._post(ServerError(str(err.get("code", "")), str(err.get("message", ""))))

    def _range_waiting(self, rid: Any) -> bool:
        return type(rid) is int and rid in self._ranges

    def _answer_range(self, rid: Any, answer: Any) -> None:
        future = self._ranges.get(rid) if self._range_waiting(rid) else None
        if future is None or future.done():
            return  # a late answer to a request given up on
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    def _learn_interval(self, metrics: Metrics) -> None:
        """Refine the interval from recent samples (history may have been short or empty)."""
        self._samples.append(metrics)
        if self.interval is None:
            self._inferred = infer_interval(self._samples, self.period)

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
                        metrics, stated = await fetch_rest_body(http, self.rest_url)
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
                    if stated is not None:
                        self.interval = stated
                    self._post(MetricsUpdated(metrics, "poll", self.interval))
                    await asyncio.sleep(self.period)
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
