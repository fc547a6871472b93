"""Date ranges from a server on ``--store postgresql://…``: the same answers as a SQLite server
fed the same events (every step, JSON and CSV), across pruning with --retention and a
restart, and on a schema from before the range rollups (built once from its raw events)."""

from __future__ import annotations

from pathlib import Path

import httpx
from test_history import HISTORY, ZONE, get_all, params, traffic

from metrics_server.app import MetricsServer, ServerConfig
from pg_service import Postgres


def config(store: str, **more: object) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=0, store=store, interval=3600.0, **more)  # type: ignore[arg-type]


async def test_history_on_postgres_answers_as_sqlite(start_server, producer, now, pg_url) -> None:
    on_sqlite = await start_server(tz=ZONE)
    on_postgres = await start_server(tz=ZONE, store=pg_url)
    for srv in (on_sqlite, on_postgres):
        await (await producer(srv)).ok(traffic(now))
    assert await get_all(on_postgres, now) == await get_all(on_sqlite, now)
    for fmt in ("json", "csv"):
        bodies = []
        for srv in (on_sqlite, on_postgres):
            async with httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
                resp = await http.get(HISTORY, params=params(now, "1h", format=fmt))
                assert resp.status_code == 200, resp.text
                bodies.append(resp.text)
        assert bodies[0] == bodies[1]


async def test_ranges_on_postgres_are_unchanged_after_pruning_and_a_restart(
    producer, now, pg_url
) -> None:
    async with MetricsServer(config(pg_url, tz=ZONE, retention=1.5)) as srv:
        await (await producer(srv)).ok(traffic(now))
        before = await get_all(srv, now)
        assert srv.service is not None
        await srv.service.tick()  # the sample prunes: noon 2 and 3 days ago are > 36 h old
        assert srv.service.store.event_count() == 5
        assert await get_all(srv, now) == before
    async with MetricsServer(config(pg_url, tz=ZONE)) as again:
        assert await get_all(again, now) == before


async def test_a_schema_from_before_range_rollups_is_migrated_and_backfilled(
    start_server, producer, now, postgres: Postgres, pg_url, pg_schema, caplog
) -> None:
    async with MetricsServer(config(pg_url, tz=ZONE)) as srv:
        await (await producer(srv)).ok(traffic(now))
        before = await get_all(srv, now)
    postgres.query(  # what version 2 left: no range tables at all
        "DROP TABLE range_buckets, user_minutes, meta;"
        " DELETE FROM schema_version WHERE version = 3",
        schema=pg_schema,
    )
    caplog.set_level("INFO", logger="metrics_server")
    again = await start_server(tz=ZONE, store=pg_url)
    assert "built the range rollups from 15 stored events" in caplog.text
    assert await get_all(again, now) == before
    assert postgres.query("SELECT max(version) FROM schema_version", schema=pg_schema) == [(3,)]


async def test_a_change_of_zone_on_postgres_rebuilds_hours_and_days(
    start_server, producer, now, pg_url, tmp_path: Path
) -> None:
    async with MetricsServer(config(pg_url, tz=ZONE)) as paris:
        await (await producer(paris)).ok(traffic(now))
    moved = await start_server(tz="Asia/Kathmandu", store=pg_url)
    fresh = await start_server(tz="Asia/Kathmandu", db=str(tmp_path / "fresh.db"))
    await (await producer(fresh)).ok(traffic(now))
    assert await get_all(moved, now) == await get_all(fresh, now)
