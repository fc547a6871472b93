"""Fixtures for the metrics-server tests: real servers on ephemeral ports, real clients.

Helpers are handed out as fixtures rather than imported, so that this directory needs no
package and cannot clash with other test directories' module names.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from metrics_server.app import MetricsServer

#: The seed's example message, verbatim: the shape every metrics message must keep.
SEED = (
    '{"type":"metrics","data":{"revenue":{"total":125000.50,"today":5420.00,'
    '"thisWeek":32100.00,"thisMonth":98500.00},"activeUsers":{"current":42,"today":1250,'
    '"peak24h":89},"transactions":{"total":5420,"pending":12,"completed":5380,"failed":28},'
    '"content":{"totalViews":125000,"totalPurchases":5380,"conversionRate":4.30},'
    '"timestamp":"2025-11-04T10:30:00.000Z"}}'
)

TIMEOUT = 3.0


def loads(text: str | bytes) -> Any:
    """Parse as a careful client would: money stays exact."""
    return json.loads(text, parse_float=Decimal)


def shape(value: Any) -> Any:
    """Key sets and leaf types, so that a renamed key or a float-for-int change is caught."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


class Subscriber:
    """A /ws/metrics client that has already read its greeting (history, then current)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.history: dict[str, Any] = {}
        self.current: dict[str, Any] = {}

    async def greet(self) -> Subscriber:
        self.history = await self.recv()
        self.current = await self.recv()
        return self

    async def recv(self, within: float = TIMEOUT) -> Any:
        return loads(await asyncio.wait_for(self.ws.recv(), within))

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv_where(self, pred: Callable[[Any], bool], within: float = TIMEOUT) -> Any:
        """The next message matching ``pred``; others (pushes, server pings) are skipped."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no matching message")
            msg = await self.recv(left)
            if pred(msg):
                return msg

    async def recv_metrics(self, kind: str, within: float = TIMEOUT) -> Any:
        return await self.recv_where(
            lambda m: m.get("type") == "metrics" and m.get("kind") == kind, within
        )

    async def roundtrip_ping(self) -> None:
        """Proves the connection still works: a ping is answered with a pong."""
        await self.send({"type": "ping"})
        reply = await self.recv_where(lambda m: m.get("type") not in ("metrics", "ping"))
        assert reply == {"type": "pong"}


class Producer:
    """A /ws/ingest client: one batch in flight at a time, as the protocol expects."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._seq = 0

    async def send(self, events: Any, **fields: Any) -> Any:
        """Send one batch and return the server's reply (ack or error)."""
        if "id" not in fields:
            self._seq += 1
            fields["id"] = f"b{self._seq}"
        await self.ws.send(json.dumps({"type": "events", **fields, "events": events}))
        return loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))

    async def ok(self, events: list[dict[str, Any]]) -> Any:
        reply = await self.send(events)
        assert reply["type"] == "ack", reply
        assert reply["accepted"] == len(events)
        return reply


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[MetricsServer]]) -> MetricsServer:
    return await start_server()


@pytest.fixture
async def subscribe() -> AsyncIterator[Callable[..., Awaitable[Subscriber]]]:
    """``await subscribe(srv)``: a connected subscriber past its greeting."""
    conns: list[ClientConnection] = []

    async def open_(srv: MetricsServer) -> Subscriber:
        ws = await connect(srv.url, open_timeout=TIMEOUT)
        conns.append(ws)
        return await Subscriber(ws).greet()

    yield open_
    for ws in conns:
        await ws.close()


@pytest.fixture
async def producer() -> AsyncIterator[Callable[..., Awaitable[Producer]]]:
    """``await producer(srv)``: a connected ingest client."""
    conns: list[ClientConnection] = []

    async def open_(srv: MetricsServer) -> Producer:
        ws = await connect(srv.ingest_url, open_timeout=TIMEOUT)
        conns.append(ws)
        return Producer(ws)

    yield open_
    for ws in conns:
        await ws.close()


@pytest.fixture
def now() -> float:
    return time.time()


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def seed() -> dict[str, Any]:
    return loads(SEED)


@pytest.fixture
def shape_of() -> Callable[[Any], Any]:
    return shape


@pytest.fixture
def parse() -> Callable[[str | bytes], Any]:
    return loads
