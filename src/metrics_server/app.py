"""Wiring: store, service, hub and HTTP routes on one port; embeddable (tests, the demo)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import CloseCode
from websockets.server import ServerProtocol

from metrics_protocol import wire as p
from metrics_protocol.version import __version__

from . import logs
from .connection import GuardedConnection
from .demo import DemoTraffic, prepare_demo, run_demo
from .http import Access, make_router
from .hub import Hub, Limits
from .security import server_ssl_context, split_target
from .service import MetricsService
from .store import SQLiteStore, StoreError, open_store
from .telemetry import Exposition, Gauges

log = logging.getLogger("metrics_server")


class _Connection(GuardedConnection):
    """Says in the close reason why a message was too big: websockets' own reason ("frame with
    N bytes exceeds limit of M bytes") does not tell a producer what a batch may be."""

    __slots__ = ("_fail",)  # a method, not a closure: 150 bytes less per connection

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, *args, **kwargs)
        self._fail = protocol.fail
        protocol.fail = self._fail_saying_why  # type: ignore[method-assign]

    def _fail_saying_why(self, code: int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG:
            path = split_target(self.request.path)[0] if self.request else ""
            what = "a batch" if path == p.WS_INGEST_PATH else "a message"
            reason = f"message too big: {what} is at most {self.protocol.max_message_size} bytes"
        self._fail(code, reason)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    db: str = "metrics.db"
    #: A store URL (sqlite:///PATH, postgresql://...); None: the SQLite file ``db``.
    store: str | None = None
    #: A Redis URL: cross-instance fan-out and the shared snapshot cache (cluster.py).
    broker: str | None = None
    #: A private CA for a rediss:// broker.
    broker_cafile: str | None = None
    interval: float = 5.0
    tz: str = "UTC"
    history: int = 20
    demo: bool = False
    push_interval: float = 0.25
    #: Days of raw events kept (None: all of them); rollups are kept whatever it is.
    retention: float | None = None
    ping_interval: float = 30.0
    max_buffer: int = 64 * 1024
    token: str | None = None
    ingest_token: str | None = None
    origins: tuple[str, ...] | None = None
    certfile: str | None = None
    keyfile: str | None = None
    max_clients: int = 10_000
    limits: Limits = field(default_factory=Limits)
    #: Seconds a shutdown waits for the batches being committed to get their acks.
    shutdown_grace: float = 5.0
    #: Read by the CLI, which sets up logging for the whole process (logs.configure).
    log_format: str = "text"
    log_level: str = "info"


async def _start_cluster(service: MetricsService, store: Any, cfg: ServerConfig) -> Any:
    """Leader or relay through the broker (cluster.py). Redis down at start is no reason not
    to serve: ingest needs only the store, and the subscription keeps trying."""
    from .broker import BrokerError, RedisBroker
    from .cluster import Cluster

    assert cfg.broker is not None
    try:
        broker = RedisBroker(
            cfg.broker,
            f"metrics:{store.identity}:",
            cafile=cfg.broker_cafile,
            history=cfg.history,
        )
    except BrokerError as exc:
        raise StoreError(str(exc)) from None
    try:
        await broker.check()
    except BrokerError as exc:
        log.warning("%s; serving from the store until it answers", exc)
    cluster = Cluster(service, store, broker)
    await cluster.start()
    return cluster


class MetricsServer:
    """``async with MetricsServer(config) as srv:`` serves until the block ends."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.service: MetricsService | None = None
        self.hub: Hub | None = None
        self._server: Server | None = None
        self._demo: asyncio.Task[None] | None = None
        self.cluster: Any = None  # cluster.Cluster with a broker

    async def start(self) -> MetricsServer:
        cfg = self.config
        loop = asyncio.get_running_loop()
        if cfg.store:
            store = await loop.run_in_executor(None, open_store, cfg.store)
        else:
            store = await loop.run_in_executor(None, SQLiteStore, cfg.db)
        service = MetricsService(
            store,
            tz=cfg.tz,
            interval=cfg.interval,
            history=cfg.history,
            push_interval=cfg.push_interval,
            retention=cfg.retention,
        )
        traffic = DemoTraffic() if cfg.demo else None
        try:
            if cfg.broker and not hasattr(store, "try_lead"):
                raise StoreError(
                    "--broker needs a PostgreSQL --store: a SQLite file serves one server,"
                    " which has no other to tell"
                )
            await loop.run_in_executor(None, store.register, cfg.broker)
            await service.start()
            if cfg.broker:
                self.cluster = await _start_cluster(service, store, cfg)
            if traffic is not None:
                await prepare_demo(service, traffic)
            hub = Hub(
                service,
                max_buffer=cfg.max_buffer,
                ping_interval=cfg.ping_interval,
                limits=cfg.limits,
            )
            access = Access(cfg.token, cfg.ingest_token, cfg.max_clients)
            exposition = Exposition(
                service.telemetry,
                Gauges(
                    subscribers=lambda: hub.connected,
                    skipped=lambda: hub.skipped,
                    seq=lambda: service.latest.seq if service.latest else 0,
                    broker_reconnects=(
                        (lambda: self.cluster.broker.reconnects) if self.cluster else None
                    ),
                ),
                version=__version__,
                store=type(store).__name__.removesuffix("Store").lower(),  # sqlite, postgres
            )
            self._server = await serve(
                self._handler,
                cfg.host,
                cfg.port,
                process_request=make_router(
                    service.get_metrics,
                    access,
                    lambda: hub.connected,
                    interval=cfg.interval,
                    telemetry=service.telemetry,
                    exposition=exposition.render,
                    history=service,
                    current_message=functools.partial(service.rest_message, cfg.interval),
                ),
                ssl=server_ssl_context(cfg.certfile, cfg.keyfile) if cfg.certfile else None,
                # Browsers send Origin; other clients (the monitor, producers) send none, and
                # are let through, since the origin check only defends against web pages.
                origins=[*cfg.origins, None] if cfg.origins else None,
                # Producers' cap; the hub lowers it for subscribers (Limits.max_message).
                max_size=max(cfg.limits.max_batch, cfg.limits.max_message),
                # Bounded output: see connection.py. Above max_buffer the hub skips broadcasts
                # and sends wait; staying there for output_stall seconds drops the client.
                create_connection=functools.partial(
                    _Connection,
                    max_output=cfg.limits.max_output,
                    output_stall=cfg.limits.output_stall,
                ),
                write_limit=cfg.max_buffer,
                # Snapshots are a few hundred bytes: deflate would save little on the wire and
                # cost about 50 KB of memory per connection (see docs/PERFORMANCE.md).
                compression=None,
            )
        except BaseException:
            if self.cluster is not None:
                await self.cluster.stop()
                self.cluster = None
            await service.close()
            raise
        self.service, self.hub = service, hub
        hub.start()
        service.start_metrics_updates()
        if traffic is not None:
            self._demo = asyncio.create_task(run_demo(service, traffic), name="metrics-demo")
        return self

    async def _handler(self, ws: ServerConnection) -> None:
        assert self.hub is not None and self.service is not None
        path = split_target(ws.request.path)[0] if ws.request else ""
        producer = path == p.WS_INGEST_PATH
        telemetry = self.service.telemetry
        # Producers are few and long-lived: their coming and going is worth a line at info.
        # Subscribers may be thousands, all reconnecting after a restart: at debug.
        level = logging.INFO if producer else logging.DEBUG
        who = "producer" if producer else "subscriber"
        conn, peer = logs.conn_id(ws), logs.peer(ws)
        logs.event(
            level, "conn_open", "%s %s connected from %s", who, conn, peer,
            conn=conn, peer=peer, route=path,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        opened = loop.time()
        telemetry.producers += producer
        try:
            if producer:
                await self.hub.producer(ws)
            else:
                await self.hub.subscriber(ws)
        finally:
            telemetry.producers -= producer
            code, reason, seconds = ws.close_code, ws.close_reason, loop.time() - opened
            telemetry.closed[path, str(code)] += 1
            logs.event(
                level, "conn_close", "%s %s closed with code %s%s after %.1fs",
                who, conn, code, f" {reason!r}" if reason else "", seconds,
                conn=conn, peer=peer, route=path, close_code=code, close_reason=reason or None,
                seconds=round(seconds, 3),
            )  # fmt: skip

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def _host(self) -> str:
        host = self.config.host
        return f"[{host}]" if ":" in host else host

    @property
    def _tls(self) -> bool:
        return bool(self.config.certfile)

    @property
    def url(self) -> str:
        return f"{'wss' if self._tls else 'ws'}://{self._host}:{self.port}{p.WS_METRICS_PATH}"

    @property
    def ingest_url(self) -> str:
        return f"{'wss' if self._tls else 'ws'}://{self._host}:{self.port}{p.WS_INGEST_PATH}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._host}:{self.port}"

    async def stop(self) -> None:
        """Graceful: stop the demo and taking connections; let the batches being committed get
        their acks (``shutdown_grace`` seconds at most) while later ones are refused with
        ``shutting_down``; then close every client with 1001, flush and close the store."""
        if self._demo is not None:
            self._demo.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._demo
        if self._server is not None:
            self._server.close(close_connections=False)  # no new connections; these stay open
            if self.hub is not None:
                await self.hub.drain(self.config.shutdown_grace)
            # The same as close() would do, only after the drain: code 1001, going away.
            closing = [
                asyncio.create_task(ws.close(CloseCode.GOING_AWAY, "server shutting down"))
                for ws in self._server.connections
            ]
            if closing:
                await asyncio.wait(closing)
            await self._server.wait_closed()
        if self.cluster is not None:  # another server takes over computing at once
            await self.cluster.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.service is not None:
            await self.service.close()

    async def __aenter__(self) -> MetricsServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
