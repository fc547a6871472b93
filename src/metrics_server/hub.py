"""Subscribers of /ws/metrics and producers on /ws/ingest: the WebSocket shell over the service.

Broadcast encodes each message once per distinct channel selection and hands it to
``websockets.broadcast``, which writes without waiting. Slow-client policy: a subscriber whose
unsent bytes exceed ``max_buffer`` is skipped (it will get the next snapshot once it drains,
and a snapshot is a whole frame, so nothing is lost by skipping one); one that stops reading
altogether is closed by the protocol keepalive, whose pings it no longer answers, or, when its
unsent bytes stay above ``max_buffer`` (the keepalive's ping then waits behind them), dropped
after ``Limits.output_stall`` seconds (connection.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from metrics_protocol import wire as p

from . import logs
from .connection import MAX_OUTPUT, OUTPUT_STALL, GuardedConnection
from .events import EventError
from .ranges import RangeError
from .security import RateLimiter
from .service import KeyReused, MetricsService
from .store import StoreError

log = logging.getLogger("metrics_server")


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits per connection. Subscribers send little (pings, a subscribe); producers
    send batches of up to 1000 events, hence their larger message size and rate."""

    max_message: int = 64 * 1024
    max_batch: int = p.MAX_BATCH_BYTES  # producers' messages
    rate: float = 20.0  # messages per second, sustained
    burst: float = 40.0
    ingest_rate: float = 500.0
    ingest_burst: float = 1000.0
    #: Refused messages in a row before the connection is closed with 1008.
    strikes: int = 20
    #: Outbound: unsent bytes that drop a connection at once, and seconds its unsent output may
    #: stay above ``max_buffer`` (see connection.py; a ping flood grew the server 900 MB/min).
    max_output: int = MAX_OUTPUT
    output_stall: float = OUTPUT_STALL


class Hub:
    def __init__(
        self,
        service: MetricsService,
        *,
        max_buffer: int = 64 * 1024,
        ping_interval: float = 30.0,
        limits: Limits = Limits(),
    ) -> None:
        self.service = service
        self.max_buffer = max_buffer
        self.ping_interval = ping_interval
        self.limits = limits
        self.connected = 0  # subscribers, counted from the handshake (for --max-clients)
        self.subscribers: dict[ServerConnection, tuple[str, ...]] = {}
        self.skipped = 0  # messages not sent to slow subscribers
        self._latest: tuple[p.Metrics, p.Kind] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # rate-limit closes under way
        #: Set by drain(): batches from then on are refused with ``shutting_down``.
        self.draining = False
        self._busy = 0  # producer messages between being read and their answer being sent
        self._idle = asyncio.Event()
        self._idle.set()
        self.telemetry = service.telemetry
        service.add_listener(self.publish)

    def start(self) -> None:
        if self.ping_interval > 0:
            self._pinger = asyncio.create_task(self._ping_loop(), name="metrics-ping")

    async def stop(self) -> None:
        self.service.remove_listener(self.publish)
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger

    async def drain(self, grace: float) -> None:
        """Refuse new batches and wait, ``grace`` seconds at most, until every batch already
        being committed has been answered. A shutdown calls this before closing connections,
        so that a committed batch is not left without its ack (issue 8: 8 shutdowns in 10 did).
        """
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            logs.event(
                logging.WARNING,
                "shutdown_grace_exceeded",
                "%d batch(es) still unanswered after the %gs shutdown grace; closing anyway",
                self._busy,
                grace,
                batches=self._busy,
            )

    # ---- outbound

    def _send_all(self, encode: Any) -> None:
        """``encode(channels) -> str`` is called once per distinct channel selection."""
        started = time.perf_counter()
        groups: dict[tuple[str, ...], list[ServerConnection]] = defaultdict(list)
        for ws, channels in self.subscribers.items():
            transport = ws.transport
            if transport is not None and transport.get_write_buffer_size() > self.max_buffer:
                self.skipped += 1
                continue
            groups[channels].append(ws)
        for channels, conns in groups.items():
            text = encode(channels)
            broadcast(conns, text)
            self.telemetry.count_sent(text, len(conns))  # one addition per group, not per conn
        self.telemetry.broadcast_seconds.observe(time.perf_counter() - started)

    async def _send(self, ws: ServerConnection, text: str) -> None:
        self.telemetry.count_sent(text)
        await ws.send(text)

    def publish(self, metrics: p.Metrics, kind: p.Kind) -> None:
        self._latest = (metrics, kind)
        self._send_all(lambda channels: p.encode_metrics(metrics, kind, channels))

    async def _ping_loop(self) -> None:
        ping = p.encode({"type": "ping"})
        while True:
            await asyncio.sleep(self.ping_interval)
            self._send_all(lambda _channels: ping)

    # ---- /ws/metrics

    def _count_control_frames(self, ws: ServerConnection, limiter: RateLimiter) -> None:
        """Pings and pongs count against the connection's rate limit too (connection.py)."""
        if isinstance(ws, GuardedConnection):
            ws.rate_limit(limiter, self.limits.strikes)

    async def _throttled(
        self,
        ws: ServerConnection,
        limiter: RateLimiter,
        reply: Callable[[], str] | None = None,
    ) -> bool:
        """True when this message must be dropped. The first refusal in a row is answered
        (``reply`` answers every one, so a producer knows to send the batch again); a flood
        that goes on is closed with 1008."""
        if limiter.allow(asyncio.get_running_loop().time()):
            return False
        if limiter.strikes >= self.limits.strikes:
            if limiter.strikes == self.limits.strikes:
                # Not awaited here: close() waits for the peer's close frame, which sits behind
                # the flood still queued on this connection, so the caller must go on draining
                # it (each further message is dropped here) or the close takes close_timeout.
                closing = ws.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
                task = asyncio.create_task(closing)
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        elif reply is not None or limiter.strikes == 1:
            await self._send(
                ws, reply() if reply else _error(p.ERR_RATE_LIMITED, "too many messages; slow down")
            )
        return True

    async def subscriber(self, ws: ServerConnection) -> None:
        ws.protocol.max_message_size = self.limits.max_message
        limiter = RateLimiter(self.limits.rate, self.limits.burst)
        self._count_control_frames(ws, limiter)
        channels = p.CHANNELS
        self.connected += 1
        try:
            current = self.service.get_metrics()
            await self._send(
                ws, p.encode_history(list(self.service.history), channels, self.service.interval)
            )
            await self._send(ws, p.encode_metrics(current, "change", channels))
            self.subscribers[ws] = channels
            # A publish that happened while those were being written was not sent here.
            if self._latest is not None and self._latest[0].timestamp > current.timestamp:
                await self._send(ws, p.encode_metrics(*self._latest, channels))
            async for raw in ws:
                if await self._throttled(ws, limiter):
                    continue
                reply, new_channels = self._on_subscriber_message(raw)
                if new_channels is not None:
                    self.subscribers[ws] = new_channels
                if reply is not None and not isinstance(reply, str):
                    await self._send_large(ws, await reply)  # a range, read from the store
                elif reply is not None:
                    await self._send(ws, reply)
        except ConnectionClosed:
            pass
        finally:
            self.connected -= 1
            self.subscribers.pop(ws, None)

    def _on_subscriber_message(
        self, raw: str | bytes
    ) -> tuple[str | Awaitable[str] | None, tuple[str, ...] | None]:
        try:
            msg = p.loads(raw)
        except p.ProtocolError as exc:
            return _error(p.ERR_INVALID_JSON, str(exc)), None
        if not isinstance(msg, dict):
            return _error(p.ERR_INVALID_MESSAGE, "a message must be a JSON object"), None
        kind = msg.get("type")
        if kind == "ping":
            return p.encode({"type": "pong"}), None
        if kind == "pong":
            return None, None
        if kind == "subscribe":
            channels = msg.get("channels")
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                return _error(p.ERR_INVALID_MESSAGE, "'channels' must be an array of strings"), None
            unknown = [c for c in channels if c not in p.CHANNELS]
            if unknown:
                return _error(
                    p.ERR_UNKNOWN_CHANNEL,
                    f"unknown channel(s) {', '.join(map(repr, unknown))};"
                    f" channels are {', '.join(p.CHANNELS)}",
                ), None
            chosen = tuple(c for c in p.CHANNELS if c in channels)  # canonical order, no repeats
            return p.encode({"type": "subscribed", "channels": list(chosen)}), chosen
        if kind == "range":
            return self._on_range(msg), None
        if not isinstance(kind, str):
            return _error(p.ERR_INVALID_MESSAGE, "'type' must be a string"), None
        return _error(
            p.ERR_UNKNOWN_TYPE,
            f"unknown message type {kind!r}; expected ping, pong, subscribe or range",
        ), None

    async def _send_large(self, ws: ServerConnection, text: str) -> None:
        """A range answer may pass the output bound meant for snapshots (5,000 points of large
        figures are about 1.3 MB): the bound is raised by its size until it is written."""
        if not isinstance(ws, GuardedConnection):
            await self._send(ws, text)
            return
        ws.max_output += len(text)  # ASCII: json escapes the rest
        try:
            await self._send(ws, text)
        finally:
            ws.max_output -= len(text)

    async def _on_range(self, msg: dict[str, Any]) -> str:
        """``{"type":"range","id":…,"from":…,"to":…,"step":…}``: one ``range`` answer with the
        same id, or an ``invalid_range`` error naming the field."""
        ident = msg.get("id")
        try:
            answer = await self.service.range(self.service.calendar.parse(msg))
        except RangeError as exc:
            return _error(p.ERR_INVALID_RANGE, exc.message, id=ident, parameter=exc.parameter)
        except StoreError:  # the service logged it
            return _error(p.ERR_STORE_UNAVAILABLE, "the store cannot be read now; retry", id=ident)
        return p.encode_range(answer, ident)

    # ---- /ws/ingest

    async def producer(self, ws: ServerConnection) -> None:
        ws.protocol.max_message_size = self.limits.max_batch  # serve() has the larger of both
        # Producers keep one batch in flight; one that pipelines is read at most a message or
        # two ahead (websockets queues 16 by default: 16 batches of 8 MiB, measured +150 MB).
        ws.recv_messages.high, ws.recv_messages.low = 1, 0
        limiter = RateLimiter(self.limits.ingest_rate, self.limits.ingest_burst)
        self._count_control_frames(ws, limiter)
        try:
            async for raw in ws:
                # The refusal is built only when needed: it parses the batch for its id.
                if await self._throttled(ws, limiter, lambda raw=raw: _batch_refusal(raw)):
                    self.telemetry.batches["refused", p.ERR_RATE_LIMITED] += 1
                    if limiter.strikes == 1:  # the first of a run: a flood is one line
                        self._log_refusal(ws, _batch_refusal(raw))
                    continue
                self._busy += 1
                self._idle.clear()
                try:
                    reply = await self._on_batch(raw)
                    self._count_batch(ws, reply)  # before the send, which may find it closed
                    await self._send(ws, reply)
                finally:
                    self._busy -= 1
                    if not self._busy:
                        self._idle.set()
        except ConnectionClosed:
            pass

    async def _on_batch(self, raw: str | bytes) -> str:
        try:
            msg = p.loads(raw)
        except p.ProtocolError as exc:
            return _error(p.ERR_INVALID_JSON, str(exc))
        if not isinstance(msg, dict):
            return _error(p.ERR_INVALID_MESSAGE, "a message must be a JSON object")
        batch_id = msg.get("id")
        kind = msg.get("type")
        if kind == "ping":
            return p.encode({"type": "pong"})
        if kind != "events":
            return _error(
                p.ERR_UNKNOWN_TYPE if isinstance(kind, str) else p.ERR_INVALID_MESSAGE,
                f"unknown message type {kind!r}; expected events",
                id=batch_id,
            )
        if "events" not in msg:
            return _error(p.ERR_INVALID_BATCH, "'events' is required", id=batch_id)
        if self.draining:  # checked and counted (in producer()) with no await in between
            return _error(
                p.ERR_SHUTTING_DOWN,
                "the server is shutting down; nothing of this batch was stored; send it again",
                id=batch_id,
            )
        try:
            receipt = await self.service.submit(msg["events"], msg.get("key"))
        except KeyReused as exc:
            return _error(p.ERR_KEY_REUSED, str(exc), id=batch_id)
        except EventError as exc:
            if exc.index is None:
                return _error(exc.code or p.ERR_INVALID_BATCH, exc.message, id=batch_id)
            code = exc.code or p.ERR_INVALID_EVENT
            return _error(code, exc.message, id=batch_id, index=exc.index)
        except StoreError:  # the service logged it, once for the group
            return _error(
                p.ERR_STORE_UNAVAILABLE, "the store cannot take events now; retry", id=batch_id
            )
        ack = {"type": "ack", "id": batch_id, "accepted": receipt.accepted}
        if receipt.duplicate:  # the same ack as the first time, said to be a repeat
            ack["duplicate"] = True
        return p.encode(ack)

    def _count_batch(self, ws: ServerConnection, reply: str) -> None:
        """Count a batch by the answer it got (so that every refusal, whatever its path, is
        counted by its code); a refusal is also logged. Costs two prefix checks on an ack."""
        if reply.startswith('{"type":"ack"'):
            duplicate = reply.endswith(',"duplicate":true}')
            self.telemetry.batches["accepted", "duplicate" if duplicate else ""] += 1
        elif not reply.startswith('{"type":"pong"'):
            self.telemetry.batches["refused", self._log_refusal(ws, reply)] += 1

    def _log_refusal(self, ws: ServerConnection, reply: str) -> str:
        """Log a refused batch from its error message; returns the error code."""
        msg = json.loads(reply)  # ours, so it parses; only refusals pay for it
        error, batch = msg["error"], msg.get("id")
        shown = json.dumps(batch)
        if len(shown) > 100:  # an id is any JSON value: a log line must not carry megabytes
            batch = shown = shown[:97] + "..."
        logs.event(
            logging.WARNING,
            "batch_refused",
            "batch %s refused: %s (%s)",
            shown,
            error["code"],
            error["message"],
            conn=logs.conn_id(ws),
            peer=logs.peer(ws),
            route=p.WS_INGEST_PATH,
            batch=batch,
            code=error["code"],
            index=error.get("index"),
            error=error["message"],
        )
        return error["code"]


def _batch_refusal(raw: str | bytes) -> str:
    try:
        msg = p.loads(raw)
    except p.ProtocolError:
        msg = None
    batch_id = msg.get("id") if isinstance(msg, dict) else None
    return _error(p.ERR_RATE_LIMITED, "too many batches; send this one again later", id=batch_id)


def _error(code: str, message: str, **extra: Any) -> str:
    return p.encode(p.error_message(code, message, **extra))
