"""Resource limits: message size (CLI override), subscriber cap, inbound rate, batch size."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from metrics_server.cli import parse_config
from metrics_server.core import Plan, Rollups
from metrics_server.hub import Limits

PING = '{"type":"ping"}'


def view_batch(batch_id: Any, n: int = 1) -> str:
    events = [{"type": "content_view", "contentId": f"c{i}"} for i in range(n)]
    return json.dumps({"type": "events", "id": batch_id, "events": events})


async def greeted(url: str) -> ClientConnection:
    ws = await connect(url, open_timeout=3)
    for expected in ("history", "metrics"):
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] == expected
    return ws


async def drain(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message until the server closes the connection."""
    received: list[dict[str, Any]] = []
    try:
        while True:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    except ConnectionClosed:
        return received


# --------------------------------------------------------------------------- message size


async def test_max_message_size_flag_sets_the_subscriber_cap(run_cli) -> None:
    srv = await run_cli("--max-message-size", "1024").ready()
    ws = await greeted(srv.url("/ws/metrics"))
    head = '{"type":"ping","pad":"'
    at_limit = head + "x" * (1024 - len(head) - 2) + '"}'
    assert len(at_limit) == 1024
    await ws.send(at_limit)
    assert json.loads(await asyncio.wait_for(ws.recv(), 3)) == {"type": "pong"}
    await ws.send(at_limit.replace('"}', 'x"}'))  # one byte over
    assert await drain(ws) == []
    assert ws.close_code == 1009
    # Producers keep their own, larger cap: a 1000-event batch (far over 1 KiB) goes through.
    async with connect(srv.url("/ws/ingest")) as prod:
        await prod.send(view_batch(1, 1000))
        assert json.loads(await asyncio.wait_for(prod.recv(), 5))["accepted"] == 1000
    assert srv.stop() == 0


def test_limit_flags_map_onto_the_config(monkeypatch) -> None:
    config = parse_config(["--max-clients", "7", "--max-message-size", "2048", "--rate-limit", "5"])
    assert config.max_clients == 7
    assert config.limits == Limits(max_message=2048, rate=5.0, burst=10.0)
    monkeypatch.setenv("METRICS_MAX_CLIENTS", "3")
    assert parse_config([]).max_clients == 3
    defaults = parse_config([])
    assert defaults.limits.max_message == 64 * 1024
    assert (defaults.limits.rate, defaults.limits.burst) == (20.0, 40.0)


@pytest.mark.parametrize(
    "flags", [["--max-clients", "0"], ["--max-message-size", "-1"], ["--rate-limit", "0"]]
)
def test_nonsense_limits_exit_2(run_quick, flags: list[str]) -> None:
    result = run_quick(*flags)
    assert result.returncode == 2 and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- subscriber cap


async def test_subscriber_cap_answers_503_until_one_leaves(start_server, wait_until) -> None:
    srv = await start_server(max_clients=3)
    first = [await greeted(srv.url) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(srv.url, open_timeout=3)
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert json.loads(response.body)["error"]["code"] == "too_many_clients"
    # The cap is on subscribers: producers and REST are still served.
    async with connect(srv.ingest_url) as prod:
        await prod.send(view_batch(1))
        assert json.loads(await prod.recv())["type"] == "ack"
    async with httpx.AsyncClient(timeout=3) as http:
        assert (await http.get(srv.http_url + "/healthz")).status_code == 200

    await first[0].close()
    await wait_until(lambda: srv.hub.connected < 3)
    again = await greeted(srv.url)
    for ws in (*first[1:], again):
        await ws.close()


async def test_subscriber_cap_holds_against_a_simultaneous_rush(start_server) -> None:
    """Handshakes that race each other must not all slip under the cap."""
    srv = await start_server(max_clients=5)

    async def attempt() -> ClientConnection | None:
        try:
            return await connect(srv.url, open_timeout=5)
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            return None

    results = await asyncio.gather(*(attempt() for _ in range(40)))
    admitted = [ws for ws in results if ws is not None]
    try:
        assert len(admitted) == 5
        assert srv.hub.connected == 5
    finally:
        for ws in admitted:
            await ws.close()


# --------------------------------------------------------------------------- rate limits


async def test_a_ping_flood_gets_one_error_then_close_1008(start_server) -> None:
    srv = await start_server()  # the defaults: 20/s, bursts of 40, closed after 20 refusals
    flooder, bystander = await greeted(srv.url), await greeted(srv.url)
    for _ in range(200):
        await flooder.send(PING)
    received = await drain(flooder)
    assert flooder.close_code == 1008
    errors = [m for m in received if m["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["rate_limited"]
    pongs = sum(m == {"type": "pong"} for m in received)
    assert 40 <= pongs < 60  # the burst, plus what refilled meanwhile
    await bystander.send(PING)
    assert json.loads(await asyncio.wait_for(bystander.recv(), 3)) == {"type": "pong"}
    await bystander.close()


async def test_a_polite_client_is_never_limited(start_server) -> None:
    """At half the allowed rate, 100 pings in a row are all answered."""
    srv = await start_server(limits=Limits(rate=100, burst=10))
    ws = await greeted(srv.url)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(100):
        await asyncio.sleep(max(0.0, start + i / 50 - loop.time()))  # pacing, not waiting on state
        await ws.send(PING)
        assert json.loads(await asyncio.wait_for(ws.recv(), 3)) == {"type": "pong"}
    await ws.close()


async def test_producers_get_a_rate_limited_error_per_refused_batch(
    start_server, db_path: Path
) -> None:
    srv = await start_server(limits=Limits(ingest_rate=0.01, ingest_burst=3, strikes=100))
    async with connect(srv.ingest_url) as prod:
        for n in range(8):  # pipelined: the bucket has 3 tokens and refills in minutes
            await prod.send(view_batch(f"b{n}", 2))
        replies = [json.loads(await asyncio.wait_for(prod.recv(), 3)) for _ in range(8)]
    assert [r["id"] for r in replies] == [f"b{n}" for n in range(8)]
    assert [r["type"] for r in replies] == ["ack"] * 3 + ["error"] * 5
    for r in replies[3:]:
        assert r["error"]["code"] == "rate_limited" and r["error"]["message"]
    with sqlite3.connect(db_path) as conn:  # nothing of a refused batch is stored
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3 * 2
    assert srv.service.get_metrics().content.total_views == 3 * 2


async def test_producer_flood_is_closed_with_1008(start_server) -> None:
    srv = await start_server(limits=Limits(ingest_rate=0.01, ingest_burst=1, strikes=5))
    async with connect(srv.ingest_url) as prod:
        for n in range(10):
            await prod.send(view_batch(n))
        received = await drain(prod)
    assert prod.close_code == 1008
    assert [m["type"] for m in received] == ["ack"] + ["error"] * 4


async def test_batches_hold_at_most_1000_events(start_server) -> None:
    srv = await start_server()
    async with connect(srv.ingest_url) as prod:
        await prod.send(view_batch("big", 1001))
        reply = json.loads(await asyncio.wait_for(prod.recv(), 5))
        assert reply["id"] == "big" and reply["error"]["code"] == "invalid_batch"
        await prod.send(view_batch("full", 1000))
        assert json.loads(await asyncio.wait_for(prod.recv(), 5))["accepted"] == 1000


# --------------------------------------------------------------------------- memory


def test_active_user_tracking_holds_one_entry_per_user_not_per_event() -> None:
    """Memory for activeUsers must follow distinct users, not the event rate: an entry per
    event once held 300,000 of them at 1000 events/s (the 5-minute window)."""
    rollups = Rollups("UTC")
    t0 = 1_767_000_000.0
    for step in range(600):  # 10 minutes, 50 users each seen every second
        now = t0 + step
        rollups.apply(Plan([], users={f"u{i}": now for i in range(50)}), now)
        assert rollups.active_now(now) == 50
    assert len(rollups._active_heap) <= 50
    # They go quiet one by one: each leaves the count exactly 5 minutes after its last event.
    last = t0 + 599
    for i in range(50):
        rollups.apply(Plan([], users={f"u{j}": last + 1 + i for j in range(i, 50)}), last + 1 + i)
    end = last + 50
    assert rollups.active_now(end + 300 - 25) == 25  # u25..u49 were last seen at or after end-24
    assert rollups.active_now(end + 300) == 0
    assert rollups._active_heap == []
