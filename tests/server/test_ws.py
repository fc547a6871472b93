"""/ws/metrics: greeting, interval and change pushes, ping/pong, subscriptions, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from metrics_protocol.wire import format_timestamp
from metrics_server.app import MetricsServer, ServerConfig
from metrics_server.hub import Limits

SUBSCRIBER_LIMIT = 64 * 1024


def ts(data: dict[str, Any]) -> float:
    return datetime.fromisoformat(data["timestamp"]).timestamp()


def view(n: int) -> dict[str, Any]:
    return {"type": "content_view", "contentId": f"c{n}"}


# --------------------------------------------------------------------------- greeting


async def test_greeting_is_history_oldest_first_then_current(
    start_server, subscribe, wait_until, seed, shape_of
) -> None:
    srv = await start_server(interval=0.2, history=3)
    ticks: list[str] = []
    srv.service.add_listener(
        lambda m, kind: kind == "interval" and ticks.append(format_timestamp(m.timestamp))
    )
    await wait_until(lambda: len(ticks) >= 5, within=5)

    sub = await subscribe(srv)

    assert sub.history["type"] == "history"
    data = sub.history["data"]
    assert len(data) == 3  # capped at --history, although more ticks happened
    stamps = [d["timestamp"] for d in data]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    start = ticks.index(stamps[0])
    assert ticks[start : start + 3] == stamps  # consecutive interval samples, oldest first
    for d in data:
        assert shape_of(d) == shape_of(seed["data"])
    assert sub.current["type"] == "metrics"
    assert shape_of(sub.current["data"]) == shape_of(seed["data"])
    assert sub.current["data"]["timestamp"] >= stamps[-1]


async def test_fresh_server_greets_with_empty_history(server, subscribe) -> None:
    sub = await subscribe(server)
    assert sub.history == {"type": "history", "interval": server.config.interval, "data": []}
    assert sub.current["type"] == "metrics"


# --------------------------------------------------------------------------- pushes


async def test_interval_messages_arrive_every_interval(start_server, subscribe) -> None:
    srv = await start_server(interval=0.2)
    sub = await subscribe(srv)
    samples = [await sub.recv_metrics("interval", within=2) for _ in range(5)]
    stamps = [ts(m["data"]) for m in samples]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.1 <= g <= 0.4 for g in gaps), gaps
    assert 0.15 <= (stamps[-1] - stamps[0]) / 4 <= 0.3


async def test_change_arrives_within_250ms_of_the_ack(server, subscribe, producer) -> None:
    sub, prod = await subscribe(server), await producer(server)
    loop = asyncio.get_running_loop()
    for n in range(1, 4):
        await prod.ok([view(n)])
        acked = loop.time()
        msg = await sub.recv_metrics("change", within=1)
        # The coalescing window is 250 ms; allow a little for scheduling on a busy machine.
        assert loop.time() - acked < 0.25 + 0.05
        assert msg["data"]["content"]["totalViews"] == n


async def test_first_change_after_quiet_is_immediate_then_coalesced(
    start_server, subscribe, producer
) -> None:
    srv = await start_server(push_interval=0.5)
    sub, prod = await subscribe(srv), await producer(srv)
    loop = asyncio.get_running_loop()

    await prod.ok([view(1)])
    first = await sub.recv_metrics("change", within=0.15)  # far sooner than push_interval
    assert first["data"]["content"]["totalViews"] == 1

    await prod.ok([view(2)])
    second = await sub.recv_metrics("change", within=1.5)
    assert second["data"]["content"]["totalViews"] == 2
    assert ts(second["data"]) - ts(first["data"]) >= 0.5 - 0.002  # ms-rounded stamps

    await asyncio.sleep(0.6)  # a quiet spell longer than push_interval is the precondition
    await prod.ok([view(3)])
    acked = loop.time()
    third = await sub.recv_metrics("change", within=0.15)
    assert third["data"]["content"]["totalViews"] == 3
    assert loop.time() - acked < 0.15


async def test_bursts_are_coalesced_to_four_per_second(server, subscribe, producer) -> None:
    sub, prod = await subscribe(server), await producer(server)
    loop = asyncio.get_running_loop()
    received: list[tuple[float, dict[str, Any]]] = []

    async def collect_until_all_seen() -> None:
        while not received or received[-1][1]["content"]["totalViews"] < 20:
            msg = await sub.recv_metrics("change", within=5)
            received.append((loop.time(), msg["data"]))

    collector = asyncio.create_task(collect_until_all_seen())
    start = loop.time()
    for n in range(1, 21):  # 20 batches over about a second: 20 pushes if nothing coalesced
        await prod.ok([view(n)])
        await asyncio.sleep(0.05)
    await asyncio.wait_for(collector, 1)  # the last state is delivered, not dropped

    in_first_second = [d for t, d in received if t - start <= 1.0]
    assert 1 <= len(in_first_second) <= 5  # one at once, then at most one per 250 ms
    stamps = [ts(d) for _, d in received]
    assert all(b - a >= 0.25 - 0.002 for a, b in itertools.pairwise(stamps))
    views = [d["content"]["totalViews"] for _, d in received]
    assert views == sorted(views)  # never goes back


# --------------------------------------------------------------------------- ping / pong


async def test_ping_is_answered_with_pong(server, subscribe) -> None:
    sub = await subscribe(server)
    await sub.send({"type": "ping"})
    assert await sub.recv() == {"type": "pong"}


async def test_server_pings_and_accepts_the_clients_pong(start_server, subscribe) -> None:
    srv = await start_server(ping_interval=0.2)
    sub = await subscribe(srv)
    assert await sub.recv_where(lambda m: m.get("type") == "ping", within=2) == {"type": "ping"}
    await sub.send({"type": "pong"})
    await sub.roundtrip_ping()  # a reply to the pong (an error) would come first and fail this


# --------------------------------------------------------------------------- subscribe


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (["revenue", "content"], ["revenue", "content"]),
        (["content", "revenue", "content"], ["revenue", "content"]),
        (["activeUsers"], ["activeUsers"]),
        ([], []),
    ],
)
async def test_subscribe_limits_later_data_to_those_groups(
    server, subscribe, producer, channels, expected
) -> None:
    sub, other, prod = await subscribe(server), await subscribe(server), await producer(server)
    await sub.send({"type": "subscribe", "channels": channels})
    assert await sub.recv() == {"type": "subscribed", "channels": expected}

    await server.service.tick()
    interval = await sub.recv_metrics("interval")
    full = await other.recv_metrics("interval")
    assert list(interval["data"]) == [*expected, "timestamp"]
    assert {k: full["data"][k] for k in interval["data"]} == interval["data"]
    assert set(full["data"]) == {"revenue", "activeUsers", "transactions", "content", "timestamp"}

    await prod.ok([view(1)])
    change = await sub.recv_metrics("change")
    assert list(change["data"]) == [*expected, "timestamp"]


async def test_unknown_channel_is_an_error_and_changes_nothing(server, subscribe) -> None:
    sub = await subscribe(server)
    await sub.send({"type": "subscribe", "channels": ["revenue", "weather"]})
    reply = await sub.recv()
    assert reply["type"] == "error"
    assert reply["error"]["code"] == "unknown_channel"
    assert "weather" in reply["error"]["message"]
    await sub.roundtrip_ping()
    await server.service.tick()
    msg = await sub.recv_metrics("interval")
    assert set(msg["data"]) == {"revenue", "activeUsers", "transactions", "content", "timestamp"}


# --------------------------------------------------------------------------- bad input

MALFORMED = [
    pytest.param("this is not json", "invalid_json", id="not-json"),
    pytest.param('{"type": "ping"', "invalid_json", id="truncated"),
    pytest.param('{"type": "ping", "x": NaN}', "invalid_json", id="nan"),
    pytest.param(b"\xff\xfe", "invalid_json", id="binary-not-utf8"),
    pytest.param("[1, 2]", "invalid_message", id="array"),
    pytest.param("42", "invalid_message", id="number"),
    pytest.param('"ping"', "invalid_message", id="string"),
    pytest.param("null", "invalid_message", id="null"),
    pytest.param("{}", "invalid_message", id="no-type"),
    pytest.param('{"type": 5}', "invalid_message", id="type-not-string"),
    pytest.param('{"type": "hello"}', "unknown_type", id="unknown-type"),
    pytest.param('{"type": "subscribe"}', "invalid_message", id="no-channels"),
    pytest.param('{"type": "subscribe", "channels": "revenue"}', "invalid_message", id="str"),
    pytest.param('{"type": "subscribe", "channels": [1]}', "invalid_message", id="int-channel"),
    pytest.param('{"type": "subscribe", "channels": {"a": 1}}', "invalid_message", id="obj"),
]


@pytest.mark.parametrize(("raw", "code"), MALFORMED)
async def test_malformed_message_gets_an_error_and_the_connection_lives(
    server, subscribe, raw, code
) -> None:
    sub, bystander = await subscribe(server), await subscribe(server)
    await sub.send(raw)
    reply = await sub.recv()
    assert set(reply) == {"type", "error"}
    assert reply["type"] == "error"
    assert reply["error"]["code"] == code
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    await sub.roundtrip_ping()
    await bystander.roundtrip_ping()
    await server.service.tick()  # both still get broadcasts, with every group
    for client in (sub, bystander):
        msg = await client.recv_metrics("interval")
        assert set(msg["data"]) >= {"revenue", "content"}


async def test_oversized_message_closes_with_1009_and_spares_others(server, subscribe) -> None:
    sub, bystander = await subscribe(server), await subscribe(server)
    await sub.send("x" * (SUBSCRIBER_LIMIT + 1))
    with pytest.raises(ConnectionClosed):
        await sub.recv_where(lambda m: False)
    assert sub.ws.close_code == 1009
    await bystander.roundtrip_ping()


async def test_message_at_the_size_limit_is_accepted(server, subscribe) -> None:
    sub = await subscribe(server)
    head = '{"type":"ping","pad":"'
    raw = head + "x" * (SUBSCRIBER_LIMIT - len(head) - 2) + '"}'
    assert len(raw.encode()) == SUBSCRIBER_LIMIT
    await sub.send(raw)
    assert await sub.recv() == {"type": "pong"}


async def test_oversized_first_message_is_refused_too(server) -> None:
    """The cap must hold from the first frame, not only after the greeting was read."""
    async with connect(server.url) as ws:
        await ws.send("x" * (SUBSCRIBER_LIMIT + 1))
        with pytest.raises(ConnectionClosed):
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 3))
                assert msg["type"] in ("history", "metrics")
        assert ws.close_code == 1009


# --------------------------------------------------------------------------- property


@contextlib.contextmanager
def server_in_thread(config: ServerConfig) -> Iterator[MetricsServer]:
    """A real server on its own loop, for synchronous property tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    srv = MetricsServer(config)
    try:
        asyncio.run_coroutine_threadsafe(srv.start(), loop).result(10)
        yield srv
        asyncio.run_coroutine_threadsafe(srv.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
MESSAGES = (
    JSON.map(json.dumps)
    | st.text(max_size=200)
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["ping", "pong", "subscribe", "events", "Ping", ""])},
        optional={
            "channels": st.lists(st.sampled_from(["revenue", "content", "x", ""])) | JSON,
            "id": JSON,
        },
    ).map(json.dumps)
)


def test_any_text_gets_one_reply_and_never_a_close(tmp_path: Path, parse) -> None:
    config = ServerConfig(
        port=0,
        db=str(tmp_path / "m.db"),
        interval=3600,
        ping_interval=0,
        limits=Limits(rate=1e6, burst=1e6),  # this test floods on purpose
    )
    with server_in_thread(config) as srv, sync_connect(srv.url, open_timeout=5) as ws:
        assert parse(ws.recv(timeout=5))["type"] == "history"
        assert parse(ws.recv(timeout=5))["type"] == "metrics"

        @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(MESSAGES)
        def check(raw: str) -> None:
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = None
            silent = isinstance(msg, dict) and msg.get("type") == "pong"
            ws.send(raw)
            ws.send('{"type":"ping"}')  # the sentinel: its pong ends this example's replies
            replies = [parse(ws.recv(timeout=5)) for _ in range(1 if silent else 2)]
            assert replies[-1] == {"type": "pong"}
            if not silent:
                reply = replies[0]
                assert reply["type"] in ("error", "pong", "subscribed"), reply
                if reply["type"] == "error":
                    assert isinstance(reply["error"]["code"], str)
                    assert isinstance(reply["error"]["message"], str)

        check()
