"""/ws/ingest at its limits: the largest amount, the largest total, strict amount text, the
timestamp window, and the largest batch, each as a producer meets them on the wire."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from metrics_protocol.wire import MAX_BATCH_BYTES
from metrics_server.app import MetricsServer, ServerConfig
from metrics_server.cli import parse_config
from metrics_server.hub import Limits
from metrics_server.store import SQLiteStore

MAX_SUM = 2**63 - 1  # SQLite's largest integer
TOP = "1000000000.00"  # the largest amount a transaction may have


def txn(id_: str, amount: Any, status: str = "completed") -> dict[str, Any]:
    return {"type": "transaction", "id": id_, "status": status, "amount": amount}


def stored(db: Path, sql: str) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()


@pytest.mark.parametrize(
    "amount",
    [
        "1000000000.01",
        "100000000000.00",  # the issue's: 923 batches of 1,000 of these overflowed
        1000000001,
        "1" + "0" * 30,
    ],
)
async def test_an_amount_over_the_maximum_is_amount_too_large(
    server, producer, db_path, amount
) -> None:
    prod = await producer(server)
    reply = await prod.send([txn("ok", "1.00"), txn("big", amount)], id="b")
    assert reply["type"] == "error" and reply["id"] == "b"
    assert reply["error"]["code"] == "amount_too_large"
    assert reply["error"]["index"] == 1
    assert TOP in reply["error"]["message"]
    assert server.service.store.event_count() == 0
    await prod.ok([txn("top", TOP)])  # the maximum itself is fine


@pytest.mark.parametrize(
    "amount",
    ["1_000", "\u0661\u0662", "\uff15", " 3.10", "+5", "5.", ".5", "1e2", "12.500", "1,000"],
)
async def test_amount_text_is_ascii_digits_with_at_most_two_decimals(
    server, producer, amount
) -> None:
    prod = await producer(server)
    reply = await prod.send([{"type": "user_activity", "userId": "u"}, txn("t", amount)])
    assert reply["error"]["code"] == "invalid_event" and reply["error"]["index"] == 1
    assert "ASCII digits" in reply["error"]["message"]
    assert server.service.store.event_count() == 0


async def test_no_batch_can_take_revenue_past_64_bits(producer, db_path: Path) -> None:
    """Revenue this close to 2^63 - 1 cents takes 92 million maximal sales; the counter is
    written directly, as if they had happened."""
    SQLiteStore(db_path).close()
    start = MAX_SUM - 10**11 + 1  # one maximal sale more would pass the limit by a cent
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE counters SET value = ? WHERE name = 'revenue_cents'", (start,))
    config = ServerConfig(port=0, db=str(db_path), interval=3600)
    srv = await MetricsServer(config).start()
    prod = await producer(srv)
    reply = await prod.send([txn("a", "0.01"), txn("b", TOP)], id="over")
    assert reply["error"]["code"] == "amount_too_large" and reply["error"]["index"] == 1
    assert "$92,233,720,368,547,758.07" in reply["error"]["message"]
    assert srv.service.store.event_count() == 0
    # Exactly up to the limit is fine, and the stored counter stays an exact integer.
    await prod.ok([txn("a", "999999999.99")])
    assert stored(
        db_path, "SELECT typeof(value), value FROM counters WHERE name = 'revenue_cents'"
    ) == (
        "integer",
        MAX_SUM,
    )
    reply = await prod.send([txn("c", "0.01", "pending"), txn("c", "0.01")])
    assert reply["error"]["code"] == "amount_too_large" and reply["error"]["index"] == 1
    total = srv.service.get_metrics().revenue.total  # type: ignore[union-attr]
    assert str(total) == "92233720368547758.07"
    await srv.stop()
    again = await MetricsServer(config).start()  # and a restart loads it
    try:
        total = again.service.get_metrics().revenue.total  # type: ignore[union-attr]
        assert str(total) == "92233720368547758.07"
    finally:
        await again.stop()


@pytest.mark.parametrize(
    "ts",
    [
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00+00:01",
        "0001-01-01T00:00:00Z",
        -62135596800,
        "9999-12-31T23:59:59-12:00",
    ],
)
async def test_times_outside_the_window_are_refused_with_the_window_named(
    start_server, producer, ts
) -> None:
    srv = await start_server(tz="America/New_York")
    prod = await producer(srv)
    event = {**txn("x", "5.00"), "ts": ts}
    reply = await prod.send([{"type": "user_activity", "userId": "u"}, event], id=7)
    assert reply["id"] == 7 and reply["error"]["code"] == "invalid_event"
    assert reply["error"]["index"] == 1
    assert "2000-01-01T00:00:00Z" in reply["error"]["message"]
    assert srv.service.store.event_count() == 0
    await prod.ok([{**txn("y", "5.00"), "ts": "2000-01-01T00:00:00Z"}])  # the window's start


def worst_case_batch() -> str:
    """1,000 transactions with every field at its longest: ids of 200 characters outside the
    BMP, which json.dumps (ensure_ascii, as by default) writes as 12-byte surrogate pairs."""
    digits = [chr(0x1F600 + d) for d in range(64)]
    pad = "\U0001f600" * 200
    stamp = datetime.now(timezone(timedelta(hours=5, minutes=45))).isoformat(
        timespec="microseconds"
    )
    events = []
    for i in range(1000):
        ident = (digits[i // 64] + digits[i % 64] + pad)[:200]
        events.append(
            {
                "type": "transaction",
                "id": ident,
                "status": "completed",
                "amount": TOP,
                "userId": pad,
                "contentId": pad,
                "ts": stamp,
            }
        )
    return json.dumps({"type": "events", "id": pad, "events": events})


async def test_a_full_batch_of_maximal_events_fits(server, producer) -> None:
    raw = worst_case_batch()
    assert 7_000_000 < len(raw) <= MAX_BATCH_BYTES  # the 1 MiB cap closed it with 1009
    prod = await producer(server)
    await prod.ws.send(raw)
    reply = json.loads(await asyncio.wait_for(prod.ws.recv(), 30))
    assert reply["type"] == "ack" and reply["accepted"] == 1000, reply
    assert server.service.get_metrics().transactions.completed == 1000  # type: ignore[union-attr]


async def test_a_batch_over_the_limit_is_closed_saying_why(start_server) -> None:
    srv = await start_server(limits=Limits(max_batch=4096, max_message=1024))
    async with connect(srv.ingest_url) as ws:
        await ws.send(json.dumps({"type": "events", "id": 1, "events": [txn("t", "1.00")] * 80}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1009
    assert ws.close_reason == "message too big: a batch is at most 4096 bytes"
    async with connect(srv.url) as sub:  # subscribers keep their own, tighter cap
        await sub.send("x" * 1025)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(sub.recv(), 5)
    assert sub.close_code == 1009
    assert sub.close_reason == "message too big: a message is at most 1024 bytes"


def test_max_batch_size_is_a_setting_with_a_default_that_fits(monkeypatch) -> None:
    assert parse_config([]).limits.max_batch == MAX_BATCH_BYTES == 8 * 1024 * 1024
    assert parse_config(["--max-batch-size", "4096"]).limits.max_batch == 4096
    monkeypatch.setenv("METRICS_MAX_BATCH_SIZE", "70000")
    limits = parse_config([]).limits
    assert (limits.max_batch, limits.max_message) == (70000, 64 * 1024)
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--max-batch-size", "0"])
    assert exit_.value.code == 2
