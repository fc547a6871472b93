"""Faults: a store that cannot write, and SIGTERM with clients attached."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

REST = "/api/v1/analytics/realtime-metrics"


def views(batch_id: Any, n: int) -> str:
    events = [{"type": "content_view", "contentId": f"c{i}"} for i in range(n)]
    return json.dumps({"type": "events", "id": batch_id, "events": events})


async def recv_json(ws: ClientConnection, within: float = 5) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def test_locked_store_refuses_batches_serves_readers_and_recovers(
    start_server, db_path: Path
) -> None:
    srv = await start_server(push_interval=0)
    async with connect(srv.ingest_url) as prod, connect(srv.url) as sub:
        await recv_json(sub), await recv_json(sub)  # greeting
        await prod.send(views("before", 3))
        assert (await recv_json(prod))["type"] == "ack"
        assert (await recv_json(sub))["data"]["content"]["totalViews"] == 3

        locker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
            await prod.send(views("during", 5))
            reply = await recv_json(prod, within=10)  # after the store's busy timeout
            assert reply["type"] == "error" and reply["id"] == "during"
            assert reply["error"]["code"] == "store_unavailable" and reply["error"]["message"]

            # Readers keep the last figures: REST, a new subscriber, the connected one.
            async with httpx.AsyncClient(timeout=3) as http:
                rest = (await http.get(srv.http_url + REST)).json()
            assert rest["data"]["content"]["totalViews"] == 3
            async with connect(srv.url) as late:
                assert (await recv_json(late))["type"] == "history"
                assert (await recv_json(late))["data"]["content"]["totalViews"] == 3
            await sub.send('{"type":"ping"}')
            assert await recv_json(sub) == {"type": "pong"}  # no change push came for "during"
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        # Released: the very next batch is acknowledged, with nothing of the refused one.
        await prod.send(views("after", 2))
        assert await recv_json(prod) == {"type": "ack", "id": "after", "accepted": 2}
        assert (await recv_json(sub))["data"]["content"]["totalViews"] == 5
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5


async def test_sigterm_closes_every_client_with_1001_within_a_second(
    run_cli, db_path: Path
) -> None:
    srv = await run_cli().ready()
    subs = [await connect(srv.url("/ws/metrics")) for _ in range(20)]
    prods = [await connect(srv.url("/ws/ingest")) for _ in range(3)]
    for sub in subs:
        await recv_json(sub), await recv_json(sub)
    for n, prod in enumerate(prods):
        await prod.send(views(n, 10))
        assert (await recv_json(prod))["type"] == "ack"

    async def closed_after(ws: ClientConnection, t0: float) -> float:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed:
            return time.monotonic() - t0

    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    delays = await asyncio.gather(*(closed_after(ws, t0) for ws in [*subs, *prods]))
    print(f"SIGTERM: {len(delays)} clients closed, slowest after {max(delays):.3f} s")
    assert max(delays) < 1.0, f"slowest close after {max(delays):.3f} s"
    assert {ws.close_code for ws in [*subs, *prods]} == {1001}
    assert await asyncio.to_thread(srv.proc.wait, 10) == 0
    assert "Traceback" not in srv.stderr
    with sqlite3.connect(db_path) as conn:  # flushed: every acknowledged event is on disk
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 30
