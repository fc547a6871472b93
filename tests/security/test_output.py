"""Output bounds: clients that flood control frames, or ask for replies and never read.

The server runs as a subprocess so that its RSS is its own (psutil). The flooders
(``bench._common.Flood``, which the soak bench runs too) are raw sockets in a thread, past the
handshake and then only writing, as fast as they can.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections import Counter
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import broadcast
from websockets.protocol import OPEN

from bench._common import Flood
from metrics_server.hub import Limits

MB = 2**20
FLOOD_SECONDS = 6.0
INTERVAL = 0.5  # the bystander's snapshots: gaps are measured against it


def assert_cut_off(flood: Flood, within: float) -> None:
    assert flood.cut_after, "the flooder was never cut off"
    assert max(flood.cut_after) < within and flood.last < within, flood


async def bystander(url: str, gaps: list[float], stop: asyncio.Event) -> None:
    """A well-behaved subscriber: the time between its interval snapshots goes in ``gaps``."""
    async with connect(url, open_timeout=5) as ws:
        last: float | None = None
        while not stop.is_set():
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            if msg.get("type") == "metrics" and msg.get("kind") == "interval":
                now = time.monotonic()
                if last is not None:
                    gaps.append(now - last)
                last = now


async def flood_against(srv, blob: bytes) -> tuple[Flood, float, list[float]]:
    """Run one flood with a bystander; return it, the server's RSS growth (MB) and the gaps."""
    proc = psutil.Process(srv.proc.pid)
    gaps: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(bystander(srv.url("/ws/metrics"), gaps, stop))
    await asyncio.sleep(2 * INTERVAL)  # pacing: a gap or two before the flood, for reference
    base = proc.memory_info().rss
    peak = base
    flood = Flood(srv.port, blob, FLOOD_SECONDS).start()
    while flood.thread.is_alive():
        peak = max(peak, proc.memory_info().rss)
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * INTERVAL)  # and after it
    stop.set()
    await watcher
    return flood, (peak - base) / MB, gaps


def assert_on_time(gaps: list[float]) -> None:
    # A snapshot every 0.5 s; on a loaded 2-core machine allow one late tick, never a stall.
    assert len(gaps) >= (FLOOD_SECONDS + 2) / INTERVAL * 0.6, gaps
    assert max(gaps) < 3 * INTERVAL, gaps


async def test_a_ping_flood_is_cut_off_and_memory_stays_bounded(run_cli, raw_ws) -> None:
    """Masked pings, nonstop, never reading: the server's RSS went up 900 MB a minute."""
    srv = await run_cli("--interval", str(INTERVAL)).ready()
    pings = b"".join(raw_ws.frame(0x9, os.urandom(125)) for _ in range(2000))  # 262 KB a round
    flood, grown, gaps = await flood_against(srv, pings)
    assert_cut_off(flood, within=3.0)
    assert grown < 50, f"server RSS grew {grown:.0f} MB under the flood"
    assert_on_time(gaps)
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr, srv.stderr
    assert "ping flood" in srv.stderr, srv.stderr  # the drop is logged, as one line


async def test_pongs_floods_count_too(run_cli, raw_ws) -> None:
    """Unsolicited pongs cost the server a parse each: they count against the same limit."""
    srv = await run_cli("--interval", str(INTERVAL)).ready()
    flood, grown, gaps = await flood_against(srv, raw_ws.frame(0xA, b"x" * 125) * 2000)
    assert_cut_off(flood, within=3.0)
    assert grown < 50
    assert_on_time(gaps)
    assert srv.stop() == 0 and "Traceback" not in srv.stderr


async def test_replies_nobody_reads_are_bounded_and_the_client_dropped(
    start_server, wait_until, raw_ws
) -> None:
    """Valid requests at the allowed rate whose replies are never read (here errors that echo
    a long type name): output waits behind them, then the connection is dropped."""
    srv = await start_server(limits=Limits(rate=50, burst=50, output_stall=1.0))
    big = json.dumps({"type": "x" * 60_000})  # each error reply is about 60 KB
    sock = await asyncio.to_thread(raw_ws.connect, srv.port)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + 10
    sent, cut = 0, None
    try:
        while loop.time() < deadline:
            try:  # a server that holds the client stops reading: sending blocks
                async with asyncio.timeout_at(deadline):
                    await loop.sock_sendall(sock, raw_ws.frame(0x1, big.encode()))
            except TimeoutError:
                break
            except OSError:
                cut = loop.time() - start
                break
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / 40 - loop.time()))  # under the limit
            peak = max(
                (ws.transport.get_write_buffer_size() for ws in srv._server.connections),
                default=0,
            )
            assert peak <= Limits().max_output + 70_000  # one reply over, at most
    finally:
        sock.close()
    assert cut is not None, "the server still holds a client that has read nothing for 10 s"
    await wait_until(lambda: not srv._server.connections)


async def server_side(srv, wait_until) -> Any:
    """The server's connection of the one client connected to ``srv``."""
    await wait_until(lambda: len(srv._server.connections) == 1, 5, "the connection")
    return next(iter(srv._server.connections))


async def test_a_broadcast_write_below_the_write_limit_costs_no_check(
    start_server, wait_until, raw_ws, monkeypatch
) -> None:
    """Each broadcast writes once per subscriber: past the handshake, a write that leaves the
    output below the write limit makes no HTTP-phase check and reads no buffer size (both on
    every write cost 15% of fan-out CPU; docs/PERFORMANCE.md, figure 1)."""
    srv = await start_server()
    sock = await asyncio.to_thread(raw_ws.connect, srv.port)
    try:
        ws = await server_side(srv, wait_until)
        calls: Counter[str] = Counter()
        size = ws.transport.get_write_buffer_size

        def counted_size() -> int:
            calls["get_write_buffer_size"] += 1
            return size()

        monkeypatch.setattr(ws.transport, "get_write_buffer_size", counted_size)
        monkeypatch.setattr(ws, "_refuse_bad_request", lambda: calls.update(["refuse"]))
        for _ in range(100):  # 45 KB in all: the socket takes it, the output stays empty
            broadcast([ws], '{"type":"metrics"}' + " " * 430)
        assert calls == Counter()
        assert ws.protocol.state is OPEN
    finally:
        sock.close()


@pytest.mark.parametrize("size", [300_000, 30_000], ids=["one-write", "writes"])
@pytest.mark.parametrize("max_buffer", [64 * 1024, 1024 * 1024], ids=["paused", "unpaused"])
async def test_output_over_max_output_drops_in_that_write(
    start_server, wait_until, raw_ws, max_buffer, size
) -> None:
    """Over ``max_output`` unsent drops the client in the very write that went over: one write
    over it at once, or the one of several that crosses it, whether the write limit
    (``max_buffer``) is below ``max_output`` (the transport pauses writing on the way) or above
    it (it never does)."""
    max_output = 100_000
    srv = await start_server(max_buffer=max_buffer, limits=Limits(max_output=max_output))
    sock = await asyncio.to_thread(raw_ws.connect, srv.port)
    try:
        ws = await server_side(srv, wait_until)
        # A small kernel buffer (~30 KB taken): the rest stays in the transport's buffer.
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for _ in range(10):
            broadcast([ws], "x" * size)
            if ws.transport.is_closing():
                break
            assert ws.transport.get_write_buffer_size() <= max_output
        assert ws.transport.is_closing()  # aborted in that write, not at a later check
        await wait_until(lambda: not srv._server.connections, 5, "the drop")
    finally:
        sock.close()


async def test_the_connection_keeps_the_compact_attribute_layout(
    start_server, wait_until, raw_ws
) -> None:
    """CPython keeps up to 30 instance attributes in an object's compact shared-key values;
    past that each connection carries a dict of its own: with GuardedConnection's 14 more
    next to websockets' 27, 1.5 KB more per idle subscriber (docs/PERFORMANCE.md, figure 2).
    Its state lives in slots."""
    srv = await start_server()
    sock = await asyncio.to_thread(raw_ws.connect, srv.port)
    try:
        ws = await server_side(srv, wait_until)
        assert len(vars(ws)) <= 30, sorted(vars(ws))
    finally:
        sock.close()
