"""Failure drills with real processes: several metrics-server processes on one PostgreSQL
schema and one Redis, producers sending all along, subscribers on every survivor.

* kill -9 of the leader: another server computes within 5 s; the survivors' subscribers see
  at most one break in their sequence (a new epoch) and never a wrong figure; the killed
  server, started again, joins as a relay. kill -9 of a relay: nobody else notices.
* Redis killed and started again (a private redis-server): ingest is acked meanwhile, the
  relay's subscribers get nothing (stale, not wrong), and within 5 s of Redis being back every
  server streams exact figures again.

The recovery times are printed (pytest -s) and quoted in docs/SCALING.md."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from broker_kit import Feed, Instance, Producers, breaks, consistent

from metrics_server.cluster import term_of
from pg_service import Postgres

#: Every drill's bound: another server carries on, or Redis is used again, within 5 s.
RECOVERY = 5.0


def instances(
    n: int, python: str, store: str, broker: str, env: dict[str, str], tmp: Path
) -> list[Instance]:
    args = ["--store", store, "--broker", broker, "--interval", "1", "--push-interval", "0.05"]
    return [Instance(python, args, env, tmp) for _ in range(n)]


async def settle(feeds: list[Feed], postgres: Postgres, schema: str, acked: int) -> None:
    """Every feed ends on the exact figures: those a recount of the stored events gives."""
    counters, _ = postgres.recount(schema)
    assert counters["views"] == counters["completed"] == acked  # each acked sale, once
    for feed in feeds:
        await feed.until(lambda m: consistent(m[3]) == acked, within=RECOVERY)
        for message in feed.messages:
            consistent(message[3])  # never a torn or wrong snapshot on the way


async def test_kill_9_of_the_leader_then_of_a_relay(
    python: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    postgres: Postgres,
    pg_schema: str,
    pg_url: str,
    redis_url: str,
) -> None:
    a, b, c = group = instances(3, python, pg_url, redis_url, cli_env, tmp_path)
    feeds: list[Feed] = []
    try:
        for srv in group:
            await srv.start()
        assert a.leads() and not b.leads() and not c.leads()
        feeds = [await Feed.open(b.url), await Feed.open(c.url)]
        old = feeds[0].last()[0]
        assert term_of(old) >= 1  # the leader's epoch, relayed from the cache at once
        producers = Producers([b, c])
        await feeds[0].until(lambda m: consistent(m[3]) >= 5)

        await a.kill()
        killed = time.monotonic()
        for feed in feeds:
            await feed.until(lambda m: term_of(m[0]) > term_of(old), within=RECOVERY)
        took = time.monotonic() - killed
        print(f"\nkill -9 of the leader: a new leader's snapshots at its relays after {took:.2f}s")
        assert b.leads() or c.leads()
        await feeds[1].until(lambda m: consistent(m[3]) >= producers.acked, within=RECOVERY)

        for feed in feeds:  # at most one break: the new epoch
            assert len(breaks(feed)) <= 1, breaks(feed)

        await a.start()  # the killed server joins again, as a relay
        assert not a.leads()
        leader, relay = (b, c) if b.leads() else (c, b)
        survivors = [feeds[group.index(leader) - 1], await Feed.open(a.url)]
        await survivors[1].until(lambda m: term_of(m[0]) > term_of(old))
        producers.targets = [a, leader]
        before = [len(breaks(f)) for f in survivors]
        await relay.kill()  # a relay killed: the others go on, unbroken
        await asyncio.sleep(1.0)
        await producers.stop()
        feeds.append(survivors[1])
        await settle(survivors, postgres, pg_schema, producers.acked)
        assert [len(breaks(f)) for f in survivors] == before
    except AssertionError:
        for srv in group:
            if srv.log.exists():
                print(srv.log.read_text()[-3000:])
        raise
    finally:
        for feed in feeds:
            await feed.close()
        for srv in group:
            if srv.proc is not None and srv.proc.returncode is None:
                await srv.kill()


async def test_redis_killed_and_started_again(
    python: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    postgres: Postgres,
    pg_schema: str,
    pg_url: str,
    private_redis: Any,
) -> None:
    a, b = group = instances(2, python, pg_url, private_redis.url, cli_env, tmp_path)
    feeds: list[Feed] = []
    try:
        for srv in group:
            await srv.start()
        assert a.leads() and not b.leads()
        feeds = [await Feed.open(a.url), await Feed.open(b.url)]
        producers = Producers([a, b])
        await feeds[1].until(lambda m: consistent(m[3]) >= 5)

        private_redis.kill()
        down = time.monotonic()
        acked, seen = producers.acked, len(feeds[1].messages)
        await asyncio.sleep(2.0)
        # PostgreSQL is the truth: batches are acked on both servers meanwhile...
        assert producers.acked >= acked + 10, (acked, producers.acked)
        # ...the leader's own subscribers still get its exact snapshots...
        await feeds[0].until(lambda m: consistent(m[3]) >= acked + 10)
        # ...and the relay's get nothing new: their figures go stale, never wrong.
        assert len(feeds[1].messages) <= seen + 1, feeds[1].messages[seen:]
        stale = consistent(feeds[1].last()[3])

        private_redis.start()
        back = time.monotonic()
        await feeds[1].until(lambda m: consistent(m[3]) > stale + 5, within=RECOVERY)
        took = time.monotonic() - back
        print(
            f"\nRedis down {back - down:.1f}s: the relay streams again {took:.2f}s after it is back"
        )
        await producers.stop()
        await settle(feeds, postgres, pg_schema, producers.acked)
        # Streaming again in the same epoch: the relay's subscribers saw one gap at most.
        assert len(breaks(feeds[1])) <= 1 and len(breaks(feeds[0])) == 0
        assert "subscribed again" in b.log.read_text()
    except AssertionError:
        for srv in group:
            if srv.log.exists():
                print(srv.log.read_text()[-3000:])
        raise
    finally:
        for feed in feeds:
            await feed.close()
        for srv in group:
            if srv.proc is not None and srv.proc.returncode is None:
                await srv.kill()
