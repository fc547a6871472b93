"""Several servers on one PostgreSQL store: exact across instances, migrations that race,
the instance registry, and a PostgreSQL that stops and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from metrics_server.core import MAX_SUM
from metrics_server.events import EventError
from metrics_server.service import MetricsService, Receipt
from metrics_server.store import StoreError
from metrics_server.store.postgres import SCHEMA_VERSION, PostgresStore
from pg_service import Postgres, free_port, recount, with_schema

STARTUP = 15.0
IDS = 50


def pending(i: int) -> dict[str, Any]:
    return {"type": "transaction", "id": f"t{i}", "status": "pending", "amount": f"{i + 1}.25"}


def status(i: int, to: str) -> dict[str, Any]:
    return {"type": "transaction", "id": f"t{i}", "status": to}


def contenders(i: int) -> list[str]:
    """What three senders say of transaction i at once: mostly the same completion (a
    retry sent to every instance), sometimes a failure racing two completions."""
    return ["completed", "completed", "failed" if i % 5 == 0 else "completed"]


@contextlib.asynccontextmanager
async def services(url: str, n: int) -> AsyncIterator[list[MetricsService]]:
    """``n`` services, each with its own store (and connections) on the same schema."""
    out = []
    try:
        for _ in range(n):
            svc = MetricsService(PostgresStore(url))
            await svc.start()
            out.append(svc)
        yield out
    finally:
        for svc in out:
            await svc.close()


def check_outcomes(results: list[list[object]]) -> None:
    """Per id: one change wins; a repeat of it is a no-op (accepted), the loser is refused
    with the index of its event."""
    for i, got in enumerate(results):
        for to, result in zip(contenders(i), got, strict=True):
            if isinstance(result, EventError):
                assert result.index == 0 and "cannot move from" in result.message, result
            else:
                assert result in (1, Receipt(1)), (to, result)
        if i % 5:  # three completions: none refused
            assert not any(isinstance(r, Exception) for r in got), got


async def test_three_instances_count_a_completion_sent_to_all_of_them_once(
    postgres: Postgres, pg_schema: str, pg_url: str
) -> None:
    async with services(pg_url, 3) as svcs:
        for start in range(0, IDS, 10):
            await svcs[start % 3].ingest([pending(i) for i in range(start, start + 10)])
        for _ in range(2):  # and the same again: all no-ops or refusals
            results = await asyncio.gather(
                *(
                    asyncio.gather(
                        *(
                            svc.ingest([status(i, to)])
                            for svc, to in zip(svcs, contenders(i), strict=True)
                        ),
                        return_exceptions=True,
                    )
                    for i in range(IDS)
                )
            )
            check_outcomes(results)
        stored, buckets = postgres.stored(pg_schema)
        assert (stored, buckets) == postgres.recount(pg_schema)
        assert stored["txn_total"] == IDS and stored["pending"] == 0
        assert stored["completed"] + stored["failed"] == IDS
        assert stored["completed"] >= IDS * 4 // 5  # ids that only ever completed
        # Idempotency keys: one batch, one key, three instances at once: stored once.
        view = [{"type": "content_view", "contentId": "c"}]
        for k in range(10):
            got = await asyncio.gather(*(svc.submit(view, key=f"k{k}") for svc in svcs))
            assert sorted(r.duplicate for r in got) == [False, True, True], got
        assert (
            postgres.stored(pg_schema)[0]["views"] == 10 == postgres.recount(pg_schema)[0]["views"]
        )


async def test_the_overflow_guard_reads_the_stored_revenue(
    postgres: Postgres, pg_schema: str, pg_url: str
) -> None:
    """Another instance took revenue near the limit: this one, which saw none of it, refuses
    a sale that would pass it."""
    async with services(pg_url, 1) as (svc,):
        postgres.query(
            "UPDATE counters SET value = %s WHERE name = 'revenue_cents'",
            (MAX_SUM - 100,),
            pg_schema,
        )
        assert svc.rollups.counters.revenue_cents == 0
        sale = {"type": "transaction", "id": "x", "status": "completed", "amount": "1.01"}
        with pytest.raises(EventError) as err:
            await svc.ingest([sale])
        assert err.value.code == "amount_too_large" and err.value.index == 0
        await svc.ingest([{**sale, "amount": "1.00"}])  # exactly to the limit
        assert postgres.stored(pg_schema)[0]["revenue_cents"] == MAX_SUM


def test_two_stores_migrate_a_fresh_schema_at_once(
    postgres: Postgres, pg_url: str, pg_schema: str
) -> None:
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(PostgresStore(pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        rows = postgres.query("SELECT version FROM schema_version ORDER BY version", (), pg_schema)
        assert [v for (v,) in rows] == list(range(1, SCHEMA_VERSION + 1))
        assert all(s.schema_version() == SCHEMA_VERSION for s in opened)
        PostgresStore(pg_url).close()  # and once more: nothing to do
        assert len(postgres.query("SELECT * FROM counters", (), pg_schema)) == 6
    finally:
        for s in opened:
            s.close()


def test_a_schema_from_a_newer_server_is_refused(
    postgres: Postgres, pg_url: str, pg_schema: str
) -> None:
    PostgresStore(pg_url).close()
    postgres.query(
        "INSERT INTO schema_version (version, description) VALUES (%s, 'later')",
        (SCHEMA_VERSION + 1,),
        pg_schema,
    )
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}; this server"):
        PostgresStore(pg_url)


# --------------------------------------------------------------------------- real processes

BROKER = "redis://127.0.0.1:6379/15"  # only recorded for now: the broker is the next step


async def spawn(python: str, port: int, *args: str, env: dict[str, str], cwd: Path) -> Any:
    return await asyncio.create_subprocess_exec(
        python, "-m", "metrics_server", "--port", str(port), "--interval", "3600", *args,
        env=env, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def refused(python: str, *args: str, env: dict[str, str], cwd: Path) -> str:
    """Run a server expected to refuse to start; returns its one line of stderr."""
    proc = await spawn(python, free_port(), *args, env=env, cwd=cwd)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP)
    finally:
        await reap(proc)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, lines)
    return lines[0]


async def healthy(proc: Any, port: int) -> None:
    deadline = time.monotonic() + STARTUP
    while True:
        if proc.returncode is not None:
            err = await proc.stderr.read()
            pytest.fail(f"server exited {proc.returncode}: {err.decode()}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if time.monotonic() > deadline:
            pytest.fail("server did not listen in time")
        await asyncio.sleep(0.05)


async def reap(proc: Any) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def stop(proc: Any) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 10)


async def test_three_server_processes_count_a_completion_sent_to_all_of_them_once(
    python: str, cli_env: dict[str, str], tmp_path: Path, postgres: Postgres, pg_schema: str,
    pg_url: str,
) -> None:  # fmt: skip
    ports = [free_port() for _ in range(3)]
    procs = [
        await spawn(python, p, "--store", pg_url, "--broker", BROKER, env=cli_env, cwd=tmp_path)
        for p in ports
    ]
    try:
        for proc, port in zip(procs, ports, strict=True):
            await healthy(proc, port)
        lanes = [await connect(f"ws://127.0.0.1:{p}/ws/ingest") for p in ports]
        await lanes[0].send(
            json.dumps({"type": "events", "events": [pending(i) for i in range(IDS)]})
        )
        assert json.loads(await lanes[0].recv())["accepted"] == IDS
        together = asyncio.Barrier(3)
        replies: list[list[Any]] = [[None] * 3 for _ in range(IDS)]

        async def lane(n: int) -> None:
            for i in range(IDS):
                await together.wait()  # the three senders of one id, at the same moment
                await lanes[n].send(
                    json.dumps({"type": "events", "events": [status(i, contenders(i)[n])]})
                )
                replies[i][n] = json.loads(await asyncio.wait_for(lanes[n].recv(), 10))

        await asyncio.gather(*(lane(n) for n in range(3)))
        results: list[list[object]] = []
        for got in replies:
            results.append(
                [
                    1
                    if r["type"] == "ack"
                    else EventError(r["error"]["message"], r["error"]["index"])
                    for r in got
                ]
            )
        check_outcomes(results)
        stored, buckets = postgres.stored(pg_schema)
        assert (stored, buckets) == postgres.recount(pg_schema)
        assert stored["completed"] + stored["failed"] == IDS and stored["pending"] == 0
        for ws in lanes:
            await ws.close()
        assert [await stop(p) for p in procs] == [0, 0, 0]
        assert postgres.query("SELECT * FROM instances", (), pg_schema) == []  # each left
    finally:
        for proc in procs:
            await reap(proc)


async def test_instances_on_one_store_need_the_same_broker(
    python: str, cli_env: dict[str, str], tmp_path: Path, postgres: Postgres, pg_schema: str,
    pg_url: str,
) -> None:  # fmt: skip
    env, cwd = cli_env, tmp_path
    procs = []
    try:
        port = free_port()
        alone = await spawn(python, port, "--store", pg_url, env=env, cwd=cwd)
        procs.append(alone)
        await healthy(alone, port)  # a single instance without a broker is fine
        line = await refused(python, "--store", pg_url, env=env, cwd=cwd)
        assert "in use by a live metrics-server" in line and "without --broker" in line
        assert f"pid {alone.pid}" in line
        line = await refused(python, "--store", pg_url, "--broker", BROKER, env=env, cwd=cwd)
        assert "without --broker" in line
        assert await stop(alone) == 0  # a clean stop leaves the registry at once

        ports = [free_port(), free_port()]
        pair = [
            await spawn(python, p, "--store", pg_url, "--broker", BROKER, env=env, cwd=cwd)
            for p in ports
        ]
        procs += pair
        for proc, port in zip(pair, ports, strict=True):
            await healthy(proc, port)
        other = "rediss://:secret@redis.example:6380/0"
        line = await refused(python, "--store", pg_url, "--broker", other, env=env, cwd=cwd)
        assert f"with --broker {BROKER}" in line and "secret" not in line
        line = await refused(python, "--store", pg_url, env=env, cwd=cwd)
        assert f"with --broker {BROKER}" in line and "not none" in line

        for proc in pair:  # killed: their rows go stale by themselves
            proc.kill()
            await proc.wait()
        deadline = time.monotonic() + 15
        while postgres.query(
            "SELECT 1 FROM instances WHERE expires_at > clock_timestamp()", (), pg_schema
        ):
            assert time.monotonic() < deadline, "the killed instances stayed live"
            await asyncio.sleep(0.2)
        port = free_port()
        later = await spawn(python, port, "--store", pg_url, "--broker", other, env=env, cwd=cwd)
        procs.append(later)
        await healthy(later, port)
        assert await stop(later) == 0
    finally:
        for proc in procs:
            await reap(proc)


# --------------------------------------------------------------------------- PostgreSQL stops


def keyed_batch(p: int, n: int) -> list[dict[str, Any]]:
    tid = f"p{p}-{n}"
    return [
        {"type": "content_view", "contentId": f"c{n % 3}", "userId": f"u{n % 7}"},
        {"type": "user_activity", "userId": f"u{p}"},
        {"type": "transaction", "id": tid, "status": "pending", "amount": f"{n}.{p}5"},
        {"type": "transaction", "id": tid, "status": ("completed", "failed")[n % 4 == 0]},
    ]


async def test_postgres_stopped_refuses_ingest_then_recovers_by_itself(
    private_postgres: Any, start_server: Any, wait_until: Any
) -> None:
    """Stopped mid-ingest: batches are refused with store_unavailable, nothing is acked that
    is not committed; started again, ingest resumes by itself and every figure is exact."""
    import psycopg

    pg = private_postgres
    schema = f"stop_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = with_schema(pg.url, schema)
    srv = await start_server(store=url)
    producers, batches = 2, 40
    acked: list[str] = []
    refusals: list[str] = []

    async def produce(p: int) -> None:
        async with connect(srv.ingest_url) as ws:
            for n in range(batches):
                key = f"p{p}-b{n}"
                msg = json.dumps(
                    {"type": "events", "id": n, "key": key, "events": keyed_batch(p, n)}
                )
                while True:  # as a producer should: the same key until acknowledged
                    await ws.send(msg)
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if reply["type"] == "ack":
                        acked.append(key)
                        break
                    assert reply["error"]["code"] == "store_unavailable", reply
                    refusals.append(key)
                    await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(produce(p)) for p in range(producers)]
    try:
        await wait_until(lambda: len(acked) >= 10, 15)
        await loop.run_in_executor(None, pg.stop)
        await wait_until(lambda: len(refusals) >= 2, 20)
        during = len(acked)
        await asyncio.sleep(0.5)
        assert len(acked) == during  # nothing is acknowledged while it is down
        assert srv.service.store_error is not None
        await loop.run_in_executor(None, pg.start)
        back = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        recovered = time.monotonic() - back
    finally:
        for task in tasks:
            task.cancel()
    assert recovered < 20, recovered
    assert sorted(acked) == sorted(f"p{p}-b{n}" for p in range(producers) for n in range(batches))
    with psycopg.connect(url, autocommit=True) as conn:
        keys = {k for (k,) in conn.execute("SELECT key FROM batch_keys")}
        rows = conn.execute(
            "SELECT type, txn_id, status, amount_cents, ts FROM events ORDER BY seq"
        ).fetchall()
        stored = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    assert keys == set(acked)  # every ack committed, every batch once
    assert len(rows) == producers * batches * 4
    counters, _ = recount(rows)
    assert stored == counters
    m = srv.service.get_metrics()  # and the live figures are the stored ones
    assert (m.transactions.completed, m.transactions.failed, m.content.total_views) == (
        counters["completed"],
        counters["failed"],
        counters["views"],
    )
    assert m.revenue.total * 100 == counters["revenue_cents"]
