"""/ws/ingest: acks after commit, all-or-nothing batches, transitions, exact money, restarts."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from metrics_protocol.wire import metrics_to_dict
from metrics_server.app import MetricsServer, ServerConfig

REST = "/api/v1/analytics/realtime-metrics"


def stored_events(db: Path) -> int:
    """Counted through a fresh connection: what another process would see on disk."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def txn(id_: str, status: str, amount: Any = None, **extra: Any) -> dict[str, Any]:
    event = {"type": "transaction", "id": id_, "status": status, **extra}
    if amount is not None:
        event["amount"] = amount
    return event


def snapshot(srv: MetricsServer) -> dict[str, Any]:
    """All figures as the wire has them, minus the timestamp."""
    data = metrics_to_dict(srv.service.get_metrics())
    del data["timestamp"]
    return data


# --------------------------------------------------------------------------- acks


@pytest.mark.parametrize(
    "batch_id",
    [
        "b-1",
        42,
        0,
        None,
        True,
        {"producer": "p1", "seq": [1, "two"]},
        [1, 2],
        "",
        1.5,
        {"price": 2.25},
    ],
)
async def test_ack_echoes_any_json_id(server, producer, batch_id) -> None:
    prod = await producer(server)
    message = {
        "type": "events",
        "id": batch_id,
        "events": [{"type": "user_activity", "userId": "u"}],
    }
    await prod.ws.send(json.dumps(message))
    reply = json.loads(await asyncio.wait_for(prod.ws.recv(), 3))  # plain floats, like most clients
    assert reply == {"type": "ack", "id": batch_id, "accepted": 1}
    assert type(reply["id"]) is type(batch_id)


async def test_ack_without_id_has_a_null_id(server, producer) -> None:
    prod = await producer(server)
    await prod.ws.send(
        json.dumps({"type": "events", "events": [{"type": "user_activity", "userId": "u"}]})
    )
    reply = json.loads(await asyncio.wait_for(prod.ws.recv(), 3))
    assert reply == {"type": "ack", "id": None, "accepted": 1}


async def test_ack_comes_after_the_commit(server, producer, db_path) -> None:
    prod = await producer(server)
    total = 0
    for size in (1, 7, 1000):
        events = [
            {"type": "content_view", "contentId": f"c{i}", "userId": f"u{i}"} for i in range(size)
        ]
        reply = await prod.ok(events)
        total += size
        assert reply["accepted"] == size
        assert server.service.store.event_count() == total
        assert stored_events(db_path) == total


async def test_ingest_socket_answers_ping(server, producer) -> None:
    prod = await producer(server)
    await prod.ws.send('{"type":"ping"}')
    assert json.loads(await asyncio.wait_for(prod.ws.recv(), 3)) == {"type": "pong"}


# --------------------------------------------------------------------------- rejected batches


BAD_EVENTS = [
    pytest.param({"type": "purchase", "userId": "u"}, id="unknown-type"),
    pytest.param({"userId": "u"}, id="no-type"),
    pytest.param({"type": "user_activity"}, id="no-user"),
    pytest.param({"type": "user_activity", "userId": ""}, id="empty-user"),
    pytest.param({"type": "user_activity", "userId": 7}, id="user-not-string"),
    pytest.param({"type": "user_activity", "userId": "u", "extra": 1}, id="extra-field"),
    pytest.param({"type": "content_view"}, id="no-content"),
    pytest.param(txn("t9", "completed", "1.005"), id="three-decimals"),
    pytest.param(txn("t9", "completed", "-1.00"), id="negative"),
    pytest.param(txn("t9", "completed", "abc"), id="amount-not-number"),
    pytest.param(txn("t9", "completed", True), id="amount-bool"),
    pytest.param(txn("t9", "completed"), id="new-without-amount"),
    pytest.param(txn("t9", "refunded", "1.00"), id="bad-status"),
    pytest.param({"type": "user_activity", "userId": "u", "ts": "2025-01-01T00:00:00"}, id="naive"),
    pytest.param({"type": "user_activity", "userId": "u", "ts": "yesterday"}, id="ts-text"),
    pytest.param({"type": "user_activity", "userId": "u", "ts": -5}, id="ts-negative"),
    pytest.param("not an object", id="string-event"),
]


@pytest.mark.parametrize("bad", BAD_EVENTS)
async def test_bad_event_rejects_the_whole_batch(server, producer, db_path, bad) -> None:
    prod = await producer(server)
    await prod.ok([txn("seed", "pending", "5.00", userId="u0")])
    before, count = snapshot(server), stored_events(db_path)

    batch = [
        {"type": "user_activity", "userId": "new-user"},
        {"type": "content_view", "contentId": "c1", "userId": "new-user"},
        bad,
        txn("seed", "completed"),
        txn("t-new", "completed", "3.00"),
    ]
    reply = await prod.send(batch, id="bad-batch")

    assert reply["type"] == "error"
    assert reply["id"] == "bad-batch"
    assert reply["error"]["code"] == "invalid_event"
    assert reply["error"]["index"] == 2
    assert reply["error"]["message"]
    assert snapshot(server) == before
    assert stored_events(db_path) == count
    # t-new was not stored: it is still new, so a different amount is fine.
    await prod.ok([txn("t-new", "completed", "4.00")])


async def test_event_dated_over_five_minutes_ahead_is_refused(server, producer, now) -> None:
    prod = await producer(server)
    reply = await prod.send([{"type": "user_activity", "userId": "u", "ts": now + 330}])
    assert reply["error"]["code"] == "invalid_event"
    assert reply["error"]["index"] == 0
    assert server.service.store.event_count() == 0
    await prod.ok([{"type": "user_activity", "userId": "u", "ts": now + 240}])  # clock drift


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([], id="empty"),
        pytest.param([{"type": "user_activity", "userId": "u"}] * 1001, id="1001"),
        pytest.param({"type": "user_activity", "userId": "u"}, id="object"),
        pytest.param("events", id="string"),
        pytest.param(None, id="null"),
    ],
)
async def test_batch_of_wrong_size_or_type_is_refused(server, producer, events) -> None:
    prod = await producer(server)
    reply = await prod.send(events, id=9)
    assert reply["type"] == "error"
    assert reply["id"] == 9
    assert reply["error"]["code"] == "invalid_batch"
    assert "index" not in reply["error"]
    assert server.service.store.event_count() == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("nope", "invalid_json"),
        ("[]", "invalid_message"),
        ('{"id": 1}', "invalid_message"),
        ('{"type": "metrics", "id": 1}', "unknown_type"),
        ('{"type": "events", "id": 1}', "invalid_batch"),
    ],
)
async def test_malformed_ingest_message_is_an_error_not_a_close(
    server, producer, raw, code
) -> None:
    prod = await producer(server)
    await prod.ws.send(raw)
    reply = json.loads(await asyncio.wait_for(prod.ws.recv(), 3))
    assert reply["type"] == "error"
    assert reply["error"]["code"] == code
    await prod.ok([{"type": "user_activity", "userId": "u"}])


# --------------------------------------------------------------------------- transactions


async def test_transaction_lifecycle(server, producer) -> None:
    prod = await producer(server)

    def figs() -> tuple[Any, Any]:
        s = snapshot(server)
        return s["revenue"]["total"], s["transactions"]

    await prod.ok([txn("t1", "pending", "19.99")])
    assert figs() == (
        Decimal("0.00"),
        {"total": 1, "pending": 1, "completed": 0, "failed": 0},
    )

    await prod.ok([txn("t1", "completed")])  # pending -> completed
    after_complete = figs()
    assert after_complete == (
        Decimal("19.99"),
        {"total": 1, "pending": 0, "completed": 1, "failed": 0},
    )

    for repeat in (txn("t1", "completed"), txn("t1", "completed", "19.99")):
        await prod.ok([repeat])  # a producer's retry: accepted, changes nothing
        assert figs() == after_complete

    for bad in (txn("t1", "failed"), txn("t1", "pending"), txn("t1", "completed", "20.00")):
        reply = await prod.send([bad])
        assert reply["error"]["code"] == "invalid_event", bad
        assert figs() == after_complete

    await prod.ok([txn("t2", "pending", "5.00"), txn("t2", "failed")])  # within one batch
    assert figs() == (
        Decimal("19.99"),
        {"total": 2, "pending": 0, "completed": 1, "failed": 1},
    )
    reply = await prod.send([txn("t2", "completed")])
    assert reply["error"]["code"] == "invalid_event"


async def test_conflicting_transitions_in_one_batch_store_nothing(server, producer) -> None:
    prod = await producer(server)
    reply = await prod.send(
        [txn("t1", "pending", "1.00"), txn("t1", "completed"), txn("t1", "failed")]
    )
    assert reply["error"]["index"] == 2
    assert snapshot(server)["transactions"]["total"] == 0


# --------------------------------------------------------------------------- exact money


async def test_money_is_exact_to_the_cent_on_the_wire(server, producer, subscribe) -> None:
    prod = await producer(server)
    await prod.ok([txn(f"t{i}", "completed", "0.10") for i in range(3)])
    await prod.ok([txn("n1", "completed", 0.2)])  # a JSON number, not a string
    await prod.ok([{"type": "content_view", "contentId": "c"} for _ in range(3)])

    async with httpx.AsyncClient(base_url=server.http_url) as http:
        raw = (await http.get(REST)).text
    assert '"total":0.50,' in raw
    assert re.search(r'"conversionRate":133\.33[,}]', raw)  # 4 purchases / 3 views
    data = json.loads(raw, parse_float=Decimal)["data"]
    assert data["revenue"]["total"] == Decimal("0.50")
    for key in ("total", "today", "thisWeek", "thisMonth"):
        assert re.search(rf'"{key}":\d+\.\d\d[,}}]', raw), key

    sub = await subscribe(server)
    assert sub.current["data"]["revenue"] == data["revenue"]


# --------------------------------------------------------------------------- restarts


async def test_figures_and_history_survive_a_restart(db_path, now) -> None:
    config = ServerConfig(port=0, db=str(db_path), interval=3600)
    day = 86400
    events = [
        txn("today", "completed", "10.10", userId="u1", ts=now - 60),
        txn("week", "completed", "20.20", userId="u2", ts=now - 2 * day),
        txn("month", "completed", "30.30", ts=now - 20 * day),
        txn("old", "completed", "40.40", ts=now - 70 * day),
        txn("open", "pending", "1.00", userId="u3", ts=now - 30),
        txn("lost", "pending", "2.00", ts=now - 30),
        txn("lost", "failed", ts=now - 20),
        {"type": "content_view", "contentId": "c1", "userId": "u1", "ts": now - 10},
        {"type": "user_activity", "userId": "u4", "ts": now - 3 * 3600},
    ]
    async with MetricsServer(config) as srv, httpx.AsyncClient(base_url=srv.http_url) as http:
        async with connect(srv.ingest_url) as ws:
            await ws.send(json.dumps({"type": "events", "id": 1, "events": events}))
            assert json.loads(await ws.recv())["type"] == "ack"
        for _ in range(3):
            await srv.service.tick()
        before = (await http.get(REST)).json(parse_float=Decimal)["data"]
        history_before = [m.timestamp for m in srv.service.history]

    async with MetricsServer(config) as srv:
        async with httpx.AsyncClient(base_url=srv.http_url) as http:
            after = (await http.get(REST)).json(parse_float=Decimal)["data"]
        assert [m.timestamp for m in srv.service.history] == history_before
        async with connect(srv.url) as ws:
            history = json.loads(await ws.recv())
        assert len(history["data"]) == 3

    del before["timestamp"], after["timestamp"]
    assert after == before
    assert before["revenue"]["total"] == Decimal("101.00")
    assert before["transactions"] == {"total": 6, "pending": 1, "completed": 4, "failed": 1}


async def test_concurrent_producers_lose_nothing(server, producer) -> None:
    prods = [await producer(server) for _ in range(5)]

    async def feed(k: int, prod) -> None:
        for b in range(10):
            await prod.ok(
                [
                    txn(f"p{k}-{b}", "completed", "0.01"),
                    {"type": "content_view", "contentId": f"c{k}"},
                ]
            )

    await asyncio.gather(*(feed(k, p) for k, p in enumerate(prods)))
    figs = snapshot(server)
    assert figs["revenue"]["total"] == Decimal("0.50")
    assert figs["transactions"]["completed"] == 50
    assert figs["content"]["totalViews"] == 50
    assert server.service.store.event_count() == 100


async def test_peak_seen_before_a_restart_is_kept(db_path, now, wait_until) -> None:
    """peak24h is the largest sampled ``current``; a clean restart must not forget samples."""
    config = ServerConfig(port=0, db=str(db_path), interval=3600)
    async with MetricsServer(config) as srv:
        await srv.service.ingest(
            [{"type": "user_activity", "userId": f"u{i}", "ts": now - 299} for i in range(3)]
        )
        assert srv.service.get_metrics().active_users.peak24h == 3  # sampled while active
        await wait_until(lambda: srv.service.get_metrics().active_users.current == 0, within=5)
        before = metrics_to_dict(srv.service.get_metrics())["activeUsers"]
    async with MetricsServer(config) as srv:
        after = metrics_to_dict(srv.service.get_metrics())["activeUsers"]
    assert before["current"] == 0 and before["peak24h"] == 3
    assert after == before
