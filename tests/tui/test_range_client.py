"""MetricsClient.request_range over a real socket: answers matched by id, refusals, a closed
connection, and a server that answers late or to someone else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from metrics_protocol.wire import (
    ActiveUsers,
    Content,
    Metrics,
    Revenue,
    Transactions,
    encode,
    encode_history,
    encode_metrics,
    loads,
)
from metrics_tui.client import MetricsClient
from metrics_tui.history import RangeError

from .conftest import wait_until

Behaviour = Callable[[ServerConnection, dict[str, Any]], Any]


def snapshot(now: datetime) -> Metrics:
    return Metrics(
        timestamp=now,
        revenue=Revenue(*(Decimal(v) for v in ("1212.75", "12.50", "1212.75", "1212.75"))),
        active_users=ActiveUsers(2, 2, 2),
        transactions=Transactions(4, 1, 2, 1),
        content=Content(10, 2, Decimal("20.00")),
    )


@contextlib.asynccontextmanager
async def feed(on_range: Behaviour) -> AsyncIterator[str]:
    """A metrics feed that greets like the server and hands each range request to
    ``on_range``."""

    async def handler(ws: ServerConnection) -> None:
        now = datetime.now(UTC)
        await ws.send(encode_history([snapshot(now)], interval=3600))
        await ws.send(encode_metrics(snapshot(now), "change"))
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                msg = loads(raw)
                if msg.get("type") == "range":
                    await on_range(ws, msg)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/metrics"


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[MetricsClient]:
    client = MetricsClient(url, lambda message: None)
    task = asyncio.create_task(client.run())
    try:
        await wait_until(lambda: client._ws is not None, what="the connection")
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def answer(msg: dict[str, Any], **extra: Any) -> str:
    return encode({"type": "range", "id": msg["id"], "step": msg["step"], "points": [], **extra})


async def test_answers_are_matched_by_id() -> None:
    """Two requests in flight, answered in the opposite order, each get their own."""
    held: list[dict[str, Any]] = []

    async def later(ws: ServerConnection, msg: dict[str, Any]) -> None:
        held.append(msg)
        if len(held) == 2:
            for m in reversed(held):
                await ws.send(answer(m, to=m["to"]))

    async with feed(later) as url, connected(url) as client:
        a, b = await asyncio.gather(
            client.request_range("2026-11-01", "2026-11-02", "1h"),
            client.request_range("2026-11-02", "2026-11-03", "1h"),
        )
        assert (a["to"], b["to"]) == ("2026-11-02", "2026-11-03")
        assert client._ranges == {}


async def test_a_refusal_names_its_reason() -> None:
    async def refuse(ws: ServerConnection, msg: dict[str, Any]) -> None:
        err = {
            "code": "invalid_range",
            "message": "'step' must be one of 1m ...",
            "parameter": "step",
        }
        await ws.send(encode({"type": "error", "id": msg["id"], "error": err}))

    async with feed(refuse) as url, connected(url) as client:
        with pytest.raises(RangeError) as caught:
            await client.request_range("2026-11-01", "2026-11-02", "2h")
        assert caught.value.code == "invalid_range" and "'step'" in str(caught.value)
        assert client._ws is not None  # the connection stays open


async def test_a_closed_connection_fails_the_request_at_once() -> None:
    async def hang_up(ws: ServerConnection, msg: dict[str, Any]) -> None:
        await ws.close()

    async with feed(hang_up) as url, connected(url) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await client.request_range("2026-11-01", "2026-11-02", "1h", wait=10)
        assert time.monotonic() - started < 2  # not the 10 s deadline


async def test_late_and_stray_answers_are_ignored() -> None:
    late_sent = asyncio.Event()

    async def slow(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["to"] == "2026-11-02":
            await ws.send(answer({**msg, "id": 999}))  # someone else's id
            await asyncio.sleep(0.3)
            await ws.send(answer(msg))  # after the client gave up
            late_sent.set()
        else:
            await ws.send(answer(msg, to=msg["to"]))

    async with feed(slow) as url, connected(url) as client:
        with pytest.raises(TimeoutError):
            await client.request_range("2026-11-01", "2026-11-02", "1h", wait=0.1)
        await asyncio.wait_for(late_sent.wait(), 5)
        # The late answer went nowhere, and the connection still serves the next request.
        later = await client.request_range("2026-11-02", "2026-11-03", "1h")
        assert later["to"] == "2026-11-03" and client._ranges == {}
