"""Several servers on one PostgreSQL store and one Redis (``--broker``), in one process: one
leader computes, the others relay its publications byte for byte; lost publications are
noticed through seq and the heartbeat; with Redis down, answers come from the store.

The drills with real processes (kill -9, Redis restarted) are in test_drills.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from broker_kit import Feed, consistent, sale
from websockets.asyncio.client import connect

from metrics_protocol import wire as p
from metrics_server.app import MetricsServer, ServerConfig
from pg_service import Postgres

REST = p.REST_METRICS_PATH
#: PostgreSQL back: the pool and the lock's session reconnect (measured 1.5 s for ingest).
RECOVERY_PG = 10.0


@contextlib.asynccontextmanager
async def servers(store: str, broker: str, n: int, **cfg: Any) -> AsyncIterator[list[Any]]:
    """``n`` servers on one store and broker, started in order (the first leads)."""
    out: list[MetricsServer] = []
    config = {"port": 0, "store": store, "broker": broker, "interval": 3600.0, **cfg}
    try:
        for _ in range(n):
            out.append(await MetricsServer(ServerConfig(**config)).start())
        yield out
    finally:
        for srv in reversed(out):
            await srv.stop()


async def ingest(srv: MetricsServer, events: list[dict[str, Any]]) -> None:
    async with connect(srv.ingest_url) as ws:
        await ws.send(json.dumps({"type": "events", "events": events}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["type"] == "ack", reply


async def published(srv: MetricsServer, views: int, within: float = 10.0) -> None:
    """Wait until ``srv`` has published a snapshot with ``views`` content views."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        latest = srv.service.latest
        if latest is not None and p.loads(latest.text)["data"]["content"]["totalViews"] == views:
            return
        assert asyncio.get_running_loop().time() < deadline, f"no publication with {views} views"
        await asyncio.sleep(0.005)


async def rest(srv: MetricsServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        return p.loads((await http.get(REST)).text)


async def test_one_leader_and_relays_byte_for_byte(
    postgres: Postgres, pg_schema: str, pg_url: str, redis_url: str
) -> None:
    async with servers(pg_url, redis_url, 3, push_interval=0) as group:
        assert [s.cluster.leading for s in group] == [True, False, False]
        feeds = [await Feed.open(s.url) for s in group]
        try:
            epoch = feeds[0].last()[0]
            for n in range(9):
                await ingest(group[n % 3], sale(str(n)))
                # A change acked by any server reaches the subscribers of every server.
                for feed in feeds:
                    await feed.until(lambda m, n=n: m[3]["content"]["totalViews"] == n + 1)
            for feed in feeds:
                for _, _, _, data, _ in feed.messages:
                    consistent(data)
            # Every (epoch, seq) carries the same bytes on every server, in one sequence.
            by_position = [{(e, s): raw for e, s, _, _, raw in f.messages} for f in feeds]
            assert by_position[0] == by_position[1] == by_position[2]
            seqs = [s for e, s, *_ in feeds[1].messages if e == epoch]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            # A new subscriber and the REST answer of any server: the latest publication.
            latest = group[0].service.latest
            for srv in group:
                body = await rest(srv)
                assert (body["epoch"], body["seq"]) == (latest.epoch, latest.seq)
                assert body["data"] == p.loads(latest.text)["data"]
            late = await Feed.open(group[2].url)
            assert p.position(late.greeting[1]) == (latest.epoch, latest.seq)
            await late.close()
            counters, _ = postgres.recount(pg_schema)
            assert counters["views"] == counters["completed"] == 9
        finally:
            for feed in feeds:
                await feed.close()


async def test_a_relay_that_misses_publications_notices_and_reloads(
    pg_url: str, redis_url: str
) -> None:
    """Redis pub/sub is at most once: a relay that loses a publication in the middle sees the
    seq skip; one that loses the last is told by the leader's next heartbeat (every second)
    and reads the latest from the cache. Its subscribers see a gap, never a wrong figure."""
    async with servers(pg_url, redis_url, 2, push_interval=0) as (leader, relay):
        dropped: list[int] = []
        deliver = relay.cluster._on_message

        async def lossy(channel: str, data: str) -> None:
            msg = json.loads(data)
            if msg.get("type") == "metrics" and msg["data"]["content"]["totalViews"] in (2, 5):
                dropped.append(msg["seq"])
                return
            await deliver(channel, data)

        relay.cluster._on_message = lossy  # type: ignore[method-assign]
        feed = await Feed.open(relay.url)
        try:
            loop = asyncio.get_running_loop()
            for n in range(1, 6):
                await ingest(leader, sale(str(n)))
                # Each sale gets a publication of its own (two acked before the leader's next
                # snapshot would share one), so the lossy relay meets the 2nd and the 5th.
                await published(leader, n)
                if n in (1, 3, 4):
                    await feed.until(lambda m, n=n: m[3]["content"]["totalViews"] == n)
            lost_last = loop.time()
            # The fifth was lost and nothing follows it: the heartbeat brings it.
            epoch, seq, *_ = await feed.until(
                lambda m: m[3]["content"]["totalViews"] == 5, within=4
            )
            assert loop.time() - lost_last < 2.5
            assert (epoch, seq) == (leader.service.latest.epoch, leader.service.latest.seq)
            assert len(dropped) == 2
            seqs = [s for _, s, *_ in feed.messages]
            assert dropped[0] not in seqs  # the subscriber saw the gap...
            assert all(consistent(m[3]) >= 0 for m in feed.messages)  # ...and no wrong figure
        finally:
            await feed.close()


async def test_with_redis_down_ingest_is_acked_and_answers_come_from_the_store(
    postgres: Postgres, pg_schema: str, pg_url: str, private_redis: Any
) -> None:
    async with servers(pg_url, private_redis.url, 2, push_interval=0) as (leader, relay):
        feed = await Feed.open(relay.url)
        try:
            await ingest(relay, sale("a"))
            await feed.until(lambda m: m[3]["content"]["totalViews"] == 1)
            private_redis.kill()
            for n in range(3):  # PostgreSQL is the truth: acked meanwhile, on either server
                await ingest((leader, relay)[n % 2], sale(f"b{n}"))
            await asyncio.sleep(0.5)
            assert consistent(feed.last()[3]) == 1  # stale, not wrong: nothing new was sent
            # The relay's REST answer: computed from the store, in an epoch of its own.
            for _ in range(50):
                if not relay.cluster.broker.link_up:
                    break
                await asyncio.sleep(0.1)
            body = await rest(relay)
            assert body["epoch"].startswith("local.") and consistent(body["data"]) == 4
            # The leader's own subscribers are still served.
            assert consistent((await rest(leader))["data"]) == 4
            private_redis.start()
            back = asyncio.get_running_loop().time()
            await feed.until(lambda m: consistent(m[3]) == 4, within=5)
            assert asyncio.get_running_loop().time() - back < 5
            assert relay.cluster.broker.reconnects >= 1
            async with httpx.AsyncClient(base_url=relay.http_url) as http:
                text = (await http.get(p.PROMETHEUS_PATH)).text
            assert f"metrics_server_broker_reconnects_total {relay.cluster.broker.reconnects}" in (
                text.replace(".0\n", "\n")
            )
            assert f"metrics_server_seq {relay.service.latest.seq}" in text.replace(".0\n", "\n")
            counters, _ = postgres.recount(pg_schema)
            assert counters["views"] == 4
        finally:
            await feed.close()


async def test_a_broker_needs_a_postgresql_store(db_path: Any, redis_url: str) -> None:
    from metrics_server.store import StoreError

    config = ServerConfig(port=0, db=str(db_path), broker=redis_url)
    with pytest.raises(StoreError, match="--broker needs a PostgreSQL --store"):
        await MetricsServer(config).start()


async def test_tls_to_redis_checks_the_certificate(pg_url: str, tls_redis: Any) -> None:
    """rediss:// with --broker-cafile relays; without it, the self-signed certificate is
    refused (verified by default, host name included) and answers come from the store."""
    redis, ca = tls_redis
    async with servers(pg_url, redis.url, 2, push_interval=0, broker_cafile=str(ca)) as group:
        leader, relay = group
        feed = await Feed.open(relay.url)
        try:
            await ingest(leader, sale("tls"))
            await feed.until(lambda m: consistent(m[3]) == 1)
            assert relay.cluster.broker.link_up and feed.last()[0] == leader.service.epoch
        finally:
            await feed.close()
    async with servers(pg_url, redis.url, 1) as (alone,):
        await asyncio.sleep(0.5)
        assert not alone.cluster.broker.link_up and not alone.cluster.broker.answering
        # Alone, it leads: its own subscribers are served; Redis just never sees a byte.
        assert consistent((await rest(alone))["data"]) == 1
    wrong_name = redis.url.replace("localhost", "127.0.0.1")  # the certificate names localhost
    async with servers(pg_url, wrong_name, 1, broker_cafile=str(ca)) as (alone,):
        await asyncio.sleep(0.5)
        assert not alone.cluster.broker.link_up and not alone.cluster.broker.answering


async def test_postgresql_stopped_and_started_again_with_a_broker(
    private_postgres: Any, redis_url: str
) -> None:
    """The leader's lock dies with its session: nobody computes while PostgreSQL is down
    (ingest is refused, nothing is acked, subscribers keep their last exact figures); once it
    is back, a server leads again under a new epoch and every feed is exact again."""
    import psycopg

    from pg_service import with_schema

    pg = private_postgres
    name = f"brk_{time.monotonic_ns()}"
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    url = with_schema(pg.url, name)
    loop = asyncio.get_running_loop()
    async with servers(url, redis_url, 2, push_interval=0) as (first, second):
        feeds = [await Feed.open(first.url), await Feed.open(second.url)]
        try:
            await ingest(second, sale("before"))
            for feed in feeds:
                await feed.until(lambda m: consistent(m[3]) == 1)
            old = feeds[0].last()[0]
            await loop.run_in_executor(None, pg.stop)
            async with connect(second.ingest_url) as ws:
                await ws.send(json.dumps({"type": "events", "events": sale("during")}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert reply["error"]["code"] == "store_unavailable", reply
            deadline = loop.time() + 5
            while first.cluster.leading or second.cluster.leading:
                assert loop.time() < deadline, "a leader without its lock"
                await asyncio.sleep(0.05)
            await loop.run_in_executor(None, pg.start)
            back = loop.time()
            for feed in feeds:
                await feed.until(lambda m: m[0] != old, within=RECOVERY_PG)
            took = loop.time() - back
            assert first.cluster.leading != second.cluster.leading
            await ingest(first, sale("after"))
            for feed in feeds:
                await feed.until(lambda m: consistent(m[3]) == 2)
                assert all(consistent(m[3]) in (0, 1, 2) for m in feed.messages)
            print(f"\nPostgreSQL back: a leader's snapshots {took:.2f}s later")
        finally:
            for feed in feeds:
                await feed.close()


def test_only_a_leaders_epoch_has_a_term() -> None:
    from metrics_server.cluster import term_of

    assert term_of("12.0a1b2c3d4e5f") == 12
    assert term_of("123456789012") == -1  # a lone server's epoch, all digits by chance
    assert term_of("local.0a1b2c3d4e5f") == -1


async def test_a_leader_whose_figures_break_lets_go_of_the_lock(
    pg_url: str, redis_url: str
) -> None:
    """A leader that cannot apply the deltas log must not keep the lock (it would hold the
    others back with figures that missed a commit): it steps down, and a server loads the
    figures afresh from the store, under a new epoch."""
    async with servers(pg_url, redis_url, 2, push_interval=0) as (leader, relay):
        feed = await Feed.open(relay.url)
        try:
            old = feed.last()[0]

            def broken(plan: Any, now: float) -> None:
                raise RuntimeError("a bug")

            leader.service.rollups.apply = broken  # type: ignore[method-assign]
            await ingest(relay, sale("x"))
            await feed.until(lambda m: m[0] != old and consistent(m[3]) == 1, within=5)
            assert relay.cluster.leading or leader.cluster.leading
        finally:
            await feed.close()


def test_a_live_server_from_before_the_deltas_log_keeps_the_schema_back(
    postgres: Postgres, pg_url: str, pg_schema: str
) -> None:
    """A server of the version before the deltas log (schema 3) logs no deltas: a leader
    would miss its commits, so the schema is not migrated while it is live."""
    from metrics_server.store import StoreError
    from metrics_server.store.postgres import SCHEMA_VERSION, PostgresStore

    PostgresStore(pg_url).close()
    postgres.query(
        "DROP TABLE deltas; DROP SEQUENCE leader_terms; DELETE FROM schema_version WHERE"
        " version = 4; INSERT INTO instances (id, broker, host, pid, expires_at)"
        " VALUES ('old', 'redis://r:6379/0', 'h', 7, now() + interval '1 hour')",
        schema=pg_schema,
    )
    with pytest.raises(StoreError, match=r"\(host h, pid 7\) of a version without the broker"):
        PostgresStore(pg_url)
    postgres.query("DELETE FROM instances", schema=pg_schema)  # it stopped
    store = PostgresStore(pg_url)
    assert store.schema_version() == SCHEMA_VERSION == 4
    store.close()
