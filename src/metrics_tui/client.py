"""The connection: WebSocket with backoff, REST polling fallback, posted as Textual messages.

No widget touches a socket. The client runs as one task in the app's event loop and reports
everything through ``post`` (normally ``App.post_message``), so it can be tested on its own
and the app can be driven without a network.

Like websockets' own split between its protocol and its I/O, every decision (when to retry,
when to poll REST, when to give up, what the status line says) is made by ``policy.Policy``
from what happened; this module only moves bytes, waits, and reports what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from metrics_protocol.wire import CHANNELS, ProtocolError, decode_data, encode, loads
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
    HistoryReceived,
    MetricsUpdated,
    ServerError,
    Status,
)
from metrics_tui.policy import (
    Action,
    Connect,
    Drop,
    Ended,
    Event,
    Failure,
    Keepalive,
    Opened,
    Outcome,
    Policy,
    PollFailed,
    PollOk,
    Reconnect,
    SeqState,
    Start,
    StartPolling,
    StopPolling,
    Tick,
    Verdict,
    Wait,
    after_failure,
    first_message_problem,
    keepalive,
    on_history,
    on_metrics,
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
    is_unauthorized,
    position,
    redact,
    rest_url,
    split_urls,
    url_problem,
    ws_options,
)

log = logging.getLogger(__name__)

#: Sent on connect. A metrics server already sends every channel, so this changes nothing
#: there; the producers' endpoint answers it with an ``unknown_type`` error, which tells at
#: once that the URL is wrong (it would otherwise say nothing at all).
SUBSCRIBE_ALL = encode({"type": "subscribe", "channels": list(CHANNELS)})
#: Asks a server that numbers its snapshots (seq) for its greeting again: history, then the
#: latest metrics. Only a server that sends seq is ever asked, and every such server answers it.
RESYNC = encode({"type": "resync"})


class MetricsClient:
    """Keeps one metrics feed alive and reports it.

    Its own connect loop (rather than ``websockets``' reconnecting iterator) so the status line
    can say which attempt this is and how long until the next one. Given several URLs (or
    one comma-separated string of them), it fails over between them as the policy says.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        post: Callable[[Any], object],
        *,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
        max_retries: int | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_timeout: float = 10.0,
    ) -> None:
        self.urls = split_urls(url) if isinstance(url, str) else tuple(url)
        if not self.urls:
            raise ValueError("no URL to connect to")
        self._post = post
        self._token = token
        self._tls = tls
        #: Handshakes tried so far (for tests and diagnostics: proves there is no tight loop).
        self.attempts = 0
        self.policy = Policy(
            url_problem=next(filter(None, map(url_problem, self.urls)), None),
            has_token=bool(token),
            max_retries=max_retries,
            rng=rng or random.Random(),
            servers=len(self.urls),
        )
        self.state = self.policy.initial()
        #: Where the feed is in the server's sequence (seq/epoch), across connections.
        self.seq = SeqState()
        #: Resyncs asked for (for tests: a gap asks once).
        self.resyncs = 0
        self._clock = clock
        self._open_timeout = open_timeout
        #: The interval the server has stated (in its history, or its REST answer); None
        #: until it has. Only this is ever shown.
        self.interval: float | None = None
        #: What the connect loop does next (``Connect`` or ``Wait``), as the policy said.
        self._next: Connect | Wait = Connect()
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._status = self.state.status
        #: Range requests sent and not yet answered, by id.
        self._ranges: dict[int, asyncio.Future[Any]] = {}
        self._range_id = 0
        self._shown_url = self.url

    # ------------------------------------------------------------------ control

    @property
    def status(self) -> Status:
        return self._status

    @property
    def url(self) -> str:
        """The URL the client is on (or connecting to, or will try next)."""
        return self.urls[self.state.index]

    @property
    def rest_url(self) -> str:
        return rest_url(self.url)

    @property
    def period(self) -> float:
        """The interval the timers go by: the stated one, else the default 5 s."""
        return self.interval or DEFAULT_INTERVAL

    def reconnect_now(self) -> None:
        """Skip the current wait (or leave Offline); if connected, reconnect from scratch."""
        self._step(Reconnect())

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
        """Connect, consume, and reconnect as the policy says, until cancelled."""
        try:
            self._step(Start())
            while True:
                self._wake.clear()
                action = self._next
                if isinstance(action, Connect):
                    self._step(await self._connect())
                elif await self._wait(action.seconds):
                    self._step(Tick())
        finally:
            await self._stop_polling()

    # ------------------------------------------------------------------ the policy

    def _step(self, event: Event) -> None:
        """Tell the policy what happened, and do what it says."""
        self.state, actions = self.policy.next(self.state, event, self._clock())
        for action in actions:
            self._do(action)
        status = self.state.status
        if status != self._status or self.url != self._shown_url:
            self._status, self._shown_url = status, self.url
            self._post(ConnectionChanged(status, self.url))

    def _do(self, action: Action) -> None:
        match action:
            case Connect() | Wait():
                self._next = action
                self._wake.set()  # ends a wait under way (``r``)
            case Drop():
                if self._ws is not None:
                    asyncio.get_running_loop().create_task(self._ws.close())
            case StartPolling():
                if self._poll_task is None or self._poll_task.done():
                    self._poll_task = asyncio.create_task(self._poll_loop())
            case StopPolling():
                task, self._poll_task = self._poll_task, None
                if task is not None:
                    task.cancel()

    async def _wait(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: for good); False if the policy asked for something else."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
                return False
        return True

    # ------------------------------------------------------------------ the socket

    async def _connect(self) -> Ended:
        """One connection, from the handshake until it ends; reports ``Opened`` on the way."""
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
                self._ws = ws
                self._step(Opened())
                await self._consume(ws)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure means: reconnect (or tell what to fix)
            failure = after_failure(exc)
            # The URL may carry ?token=: never log it as given.
            log.info("connection to %s failed: %s", redact(self.url), failure.detail)
        finally:
            self._ws = None
        return Ended(failure)

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
            self.seq, verdict = on_metrics(self.seq, position(body))
            if verdict is Verdict.DROP:  # older than what is shown, or shown already
                return
            self._post(MetricsUpdated(metrics, sample, self.interval))  # type: ignore[arg-type]
            if verdict is Verdict.RESYNC:
                self.resyncs += 1
                log.info("seq gap or new epoch at %s: asking for the history again", self.seq)
                asyncio.get_running_loop().create_task(self._send(ws, RESYNC))
        elif kind == "history":
            data = body.get("data")
            if not isinstance(data, list):
                raise ProtocolError("'data' of history must be a list")
            snapshots = [decode_data(item) for item in data]
            self.seq = on_history(self.seq, position(body))
            self.interval = announced_interval(body)
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

    @staticmethod
    async def _send(ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(text)

    # ------------------------------------------------------------------ REST fallback

    async def _poll_loop(self) -> None:
        """Poll the REST endpoint every interval while the WebSocket is retried behind it.

        Ends after the first failed poll (the policy starts it again after the next refused
        handshake), or when the policy stops it.
        """
        import httpx  # only here: most sessions never poll, and it costs start-up time

        async with http_client(self._token, self._tls, self._open_timeout) as http:
            while True:
                try:
                    metrics, stated = await fetch_rest_body(http, self.rest_url)
                except (httpx.HTTPError, ProtocolError, OSError) as exc:
                    log.info("REST poll failed: %s", describe_error(exc))
                    self._poll_task = None  # ending by itself: nothing to cancel
                    self._step(PollFailed(refused=is_unauthorized(exc)))
                    return
                if stated is not None:
                    self.interval = stated
                self._step(PollOk())
                self._post(MetricsUpdated(metrics, "poll", self.interval))
                await asyncio.sleep(self.period)

    async def _stop_polling(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
