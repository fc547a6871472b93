"""GET /metrics: a real server scraped over HTTP and read with prometheus_client's own parser.

The counters must move by exactly what the clients did: events by type, batches by result and
reason, messages and bytes by what the clients received.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from metrics_server import __version__
from metrics_server.hub import Limits

TOKEN = "read-5d1e77c2-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(srv: Any, **kwargs: Any) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(srv.http_url + "/metrics", **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[f"metrics_server_{name}", frozenset(labels.items())]


def labelled(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == f"metrics_server_{name}"}


async def recv(ws: ClientConnection, within: float = 5) -> str:
    text = await asyncio.wait_for(ws.recv(), within)
    assert isinstance(text, str)
    return text


def views(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"type": "content_view", "contentId": f"c{i}"} for i in range(start, start + n)]


def active(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"type": "user_activity", "userId": f"u{i}"} for i in range(start, start + n)]


def pending(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "transaction", "id": f"t{i}", "status": "pending", "amount": "1.50"}
        for i in range(n)
    ]


def completed(n: int) -> list[dict[str, Any]]:
    return [{"type": "transaction", "id": f"t{i}", "status": "completed"} for i in range(n)]


async def test_counters_move_by_exactly_what_was_sent(start_server, db_path: Path, wait_until):
    k = 3  # subscribers
    # Every batch accepted below changes a figure, so with --push-interval 0 each one is
    # exactly one broadcast. B messages fit the producer's burst; the next two are refused.
    accepted = [
        active(5) + views(4),
        pending(3) + views(2, start=4),
        completed(2) + active(2, start=5),
    ]
    keyed = active(1, start=50)
    refusals = [
        ("not json", "invalid_json"),
        ({"type": "nope"}, "unknown_type"),
        ({"type": "events", "id": "bad", "events": [{"type": "user_activity"}]}, "invalid_event"),
        ({"type": "events", "id": "k2", "key": "k1", "events": views(1)}, "key_reused"),
    ]
    # The producer's burst: the accepted batches, the keyed one and its repeat, a ping, the
    # refusals and the batch the locked store refuses; the two after them are rate limited.
    burst = len(accepted) + 2 + 1 + len(refusals) + 1
    srv = await start_server(
        push_interval=0, limits=Limits(ingest_rate=0.001, ingest_burst=float(burst))
    )
    subs = [await connect(srv.url) for _ in range(k)]
    received: list[str] = []  # every message any client got: bytes_sent is their sum
    for ws in subs:
        received += [await recv(ws), await recv(ws)]  # history, current
    await wait_until(lambda: len(srv.hub.subscribers) == k)

    prod = await connect(srv.ingest_url)
    replies: list[dict[str, Any]] = []

    async def send(message: Any) -> dict[str, Any]:
        await prod.send(message if isinstance(message, str) else json.dumps(message))
        text = await recv(prod, within=10)
        received.append(text)
        replies.append(json.loads(text))
        return replies[-1]

    for i, events in enumerate(accepted):
        assert (await send({"type": "events", "id": i, "events": events}))["type"] == "ack"
    assert (await send({"type": "events", "id": "k", "key": "k1", "events": keyed}))[
        "type"
    ] == "ack"
    assert (await send({"type": "events", "id": "k", "key": "k1", "events": keyed}))["duplicate"]
    assert (await send({"type": "ping"})) == {"type": "pong"}
    for message, code in refusals:
        assert (await send(message))["error"]["code"] == code
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        reply = await send({"type": "events", "id": "locked", "events": views(1, start=90)})
        assert reply["error"]["code"] == "store_unavailable"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for _ in range(2):  # past the burst
        assert (await send({"type": "events", "id": "fast", "events": views(1)}))["error"][
            "code"
        ] == "rate_limited"

    pushes = len(accepted) + 1  # the keyed batch too; not its repeat
    for ws in subs:
        for _ in range(pushes):
            received.append(await recv(ws))
    samples = await scrape(srv)

    stored = Counter(e["type"] for batch in [*accepted, keyed] for e in batch)
    assert labelled(samples, "events_ingested_total") == {
        frozenset({("type", t)}): float(stored[t])
        for t in ("user_activity", "content_view", "transaction")
    }
    assert labelled(samples, "batches_total") == {
        frozenset({("result", "accepted"), ("reason", "")}): pushes,
        frozenset({("result", "accepted"), ("reason", "duplicate")}): 1,
        **{
            frozenset({("result", "refused"), ("reason", code)}): n
            for code, n in [
                ("invalid_json", 1),
                ("unknown_type", 1),
                ("invalid_event", 1),
                ("key_reused", 1),
                ("store_unavailable", 1),
                ("rate_limited", 2),
            ]
        },
    }
    assert value(samples, "subscribers") == k
    assert value(samples, "producers") == 1
    sent_types = Counter(json.loads(m)["type"] for m in received)
    assert sent_types == {
        "history": k,
        "metrics": k + k * pushes,
        "ack": pushes + 1,
        "pong": 1,
        "error": len(refusals) + 1 + 2,
    }
    assert labelled(samples, "messages_sent_total") == {
        frozenset({("type", t)}): float(n) for t, n in sent_types.items()
    }
    assert value(samples, "bytes_sent_total") == sum(len(m.encode()) for m in received)
    assert value(samples, "store_errors_total") == 1
    assert value(samples, "subscribers_skipped_total") == 0
    assert value(samples, "commit_seconds_count") == pushes  # one commit each, alone
    assert value(samples, "broadcast_seconds_count") == pushes
    assert value(samples, "push_lag_seconds_count") == pushes
    assert value(samples, "push_lag_seconds_bucket", le="+Inf") == pushes
    assert 0 < value(samples, "commit_seconds_sum") < 10
    info = labelled(samples, "info")
    assert [dict(labels) for labels in info] == [{"version": __version__, "store": "sqlite"}]

    # A subscriber leaves, the producer too: gauges fall, closes are counted by code.
    await subs.pop().close()
    await prod.close()
    await wait_until(lambda: srv.hub.connected == k - 1 and srv.service.telemetry.producers == 0)
    samples = await scrape(srv)
    assert value(samples, "subscribers") == k - 1
    assert value(samples, "producers") == 0
    assert labelled(samples, "connections_closed_total") == {
        frozenset({("route", "/ws/metrics"), ("code", "1000")}): 1,
        frozenset({("route", "/ws/ingest"), ("code", "1000")}): 1,
    }
    # The first scrape is counted once it is answered, so the second one sees it.
    assert value(samples, "http_responses_total", route="/metrics", status="200") == 1
    for ws in subs:
        await ws.close()


async def test_metrics_requires_the_read_token_when_one_is_set(start_server) -> None:
    srv = await start_server(token=TOKEN, ingest_token="ingest-only")
    url = srv.http_url + "/metrics"
    async with httpx.AsyncClient(timeout=5) as http:
        for kwargs in (
            {},
            {"headers": {"Authorization": "Bearer wrong"}},
            {"params": {"token": "wrong"}},
            {"headers": {"Authorization": "Bearer ingest-only"}},  # the write token is not it
        ):
            resp = await http.get(url, **kwargs)
            assert resp.status_code == 401, kwargs
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert resp.json()["error"]["code"] == "unauthorized"
        assert (await http.head(url)).status_code == 401
        ok = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert "metrics_server_info{" in ok.text
        assert (await http.get(url, params={"token": TOKEN})).status_code == 200
        head = await http.head(url, params={"token": TOKEN})
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["Content-Length"]) > 0
        assert head.headers["Content-Type"] == ok.headers["Content-Type"]
        post = await http.post(url, params={"token": TOKEN})
        assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"
    samples = await scrape(srv, headers={"Authorization": f"Bearer {TOKEN}"})
    assert value(samples, "http_responses_total", route="/metrics", status="401") == 5


async def test_metrics_is_open_without_a_token_and_one_header_per_answer(start_server) -> None:
    srv = await start_server()
    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(srv.http_url + "/metrics", headers={"Accept": "text/plain"})
        assert resp.status_code == 200
        # Headers[...] = v appends: exactly one Content-Type, the exposition format's.
        assert resp.headers.get_list("Content-Type") == ["text/plain; version=0.0.4; charset=utf-8"]
        assert resp.headers["Connection"] == "close"  # websockets closes after an answer
        families = {f.name for f in text_string_to_metric_families(resp.text)}
        assert {"metrics_server_info", "metrics_server_events_ingested"} <= families
        assert "process_resident_memory_bytes" in {
            s.name for f in text_string_to_metric_families(resp.text) for s in f.samples
        }
