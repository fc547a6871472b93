"""Snapshot cost flat with history: ``get_metrics()`` and the REST route, 10,000 vs 10,000,000
stored events, timed alternately in the same run.

Both databases are built quickly with SQL (``WITH RECURSIVE``) into the store's own schema, with
consistent rollups (transactions, counters, revenue buckets, users' latest times) computed from
the generated events. Events arrive at the same steady rate (one every 0.25 s) in both, so the
recent past -- which a snapshot does depend on (active users) -- is the same; only the length of
history differs. Targets: big/small <= 1.2 and big <= 1 ms per ``get_metrics()``.

    python -m bench.snapshot            # 10,000 vs 1,000,000 events
    python -m bench.snapshot --full     # 10,000 vs 10,000,000 events (takes a minute or more)
    python -m bench.snapshot --baseline SRC   # also the code from SRC, same run (SQLite)
    python -m bench.snapshot --store postgresql://postgres@127.0.0.1:5432/test [--full]

With ``--store``, both stores are PostgreSQL schemas (made, filled with ``generate_series``
and dropped by the run), the services run on PostgresStore and the REST servers on
``--store URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import _common as c
from metrics_server.service import MetricsService
from metrics_server.store import SQLiteStore

STEP = 0.25  # seconds between generated events
USERS = 100_000

_BUILD = """
WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM x WHERE i < :n)
INSERT INTO events (seq, ts, type, user_id, content_id, txn_id, status, amount_cents)
SELECT i, :now - (:n - i) * :step,
       CASE WHEN i % 10 < 4 THEN 'content_view' WHEN i % 10 < 8 THEN 'user_activity'
            ELSE 'transaction' END,
       'u' || (i * 7919 % :users),
       CASE WHEN i % 10 < 4 OR i % 10 = 8 THEN 'c' || (i % 997) END,
       CASE WHEN i % 10 = 8 THEN 't' || i WHEN i % 10 = 9 THEN 't' || (i - 1) END,
       CASE WHEN i % 10 = 8 THEN 'pending' WHEN i % 10 = 9 THEN 'completed' END,
       CASE WHEN i % 10 = 8 THEN 100 + i % 10000 END
FROM x;
INSERT INTO transactions (id, status, amount_cents, user_id, content_id, created_ts)
SELECT p.txn_id, CASE WHEN d.seq IS NULL THEN 'pending' ELSE 'completed' END,
       p.amount_cents, p.user_id, p.content_id, p.ts
FROM events p LEFT JOIN events d ON d.seq = p.seq + 1
WHERE p.status = 'pending';
CREATE TEMP TABLE done AS
SELECT d.ts AS ts, p.amount_cents AS cents
FROM events d JOIN events p ON p.seq = d.seq - 1 WHERE d.status = 'completed';
UPDATE counters SET value = CASE name
    WHEN 'views' THEN (SELECT count(*) FROM events WHERE type = 'content_view')
    WHEN 'txn_total' THEN (SELECT count(*) FROM transactions)
    WHEN 'pending' THEN (SELECT count(*) FROM transactions WHERE status = 'pending')
    WHEN 'completed' THEN (SELECT count(*) FROM transactions WHERE status = 'completed')
    WHEN 'failed' THEN 0
    WHEN 'revenue_cents' THEN (SELECT coalesce(sum(cents), 0) FROM done) END;
INSERT INTO revenue_buckets SELECT CAST(ts / 900 AS INTEGER) AS b, sum(cents) FROM done GROUP BY b;
INSERT INTO users SELECT user_id, max(ts) FROM events GROUP BY user_id;
"""


def build(path: Path, n: int, now: float) -> None:
    """A database of ``n`` events in the store's schema, rollups consistent with the events."""
    SQLiteStore(path).close()  # the schema, exactly as the server makes it
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")  # building, not serving: durability is not the point
    con.execute("BEGIN")
    script = _BUILD
    for k, v in {":now": now, ":step": STEP, ":users": USERS, ":n": n}.items():  # ":n" last
        script = script.replace(k, repr(v))
    con.executescript(script)
    con.close()


_BUILD_PG = """
SET synchronous_commit = off;
INSERT INTO events (seq, ts, type, user_id, content_id, txn_id, status, amount_cents)
SELECT i, :now - (:n - i) * :step,
       CASE WHEN i % 10 < 4 THEN 'content_view' WHEN i % 10 < 8 THEN 'user_activity'
            ELSE 'transaction' END,
       'u' || (i * 7919 % :users),
       CASE WHEN i % 10 < 4 OR i % 10 = 8 THEN 'c' || (i % 997) END,
       CASE WHEN i % 10 = 8 THEN 't' || i WHEN i % 10 = 9 THEN 't' || (i - 1) END,
       CASE WHEN i % 10 = 8 THEN 'pending' WHEN i % 10 = 9 THEN 'completed' END,
       CASE WHEN i % 10 = 8 THEN 100 + i % 10000 END
FROM generate_series(1::bigint, :n) AS i;
SELECT setval(pg_get_serial_sequence('events', 'seq'), :n);
INSERT INTO transactions (id, status, amount_cents, user_id, content_id, created_ts)
SELECT 't' || i, CASE WHEN i + 1 <= :n THEN 'completed' ELSE 'pending' END, 100 + i % 10000,
       'u' || (i * 7919 % :users), 'c' || (i % 997), :now - (:n - i) * :step
FROM generate_series(8::bigint, :n, 10) AS i;
CREATE TEMP TABLE done AS
SELECT :now - (:n - i) * :step AS ts, 100 + (i - 1) % 10000 AS cents
FROM generate_series(9::bigint, :n, 10) AS i;
UPDATE counters SET value = CASE name
    WHEN 'views' THEN (SELECT count(*) FROM events WHERE type = 'content_view')
    WHEN 'txn_total' THEN (SELECT count(*) FROM transactions)
    WHEN 'pending' THEN (SELECT count(*) FROM transactions WHERE status = 'pending')
    WHEN 'completed' THEN (SELECT count(*) FROM transactions WHERE status = 'completed')
    WHEN 'failed' THEN 0
    WHEN 'revenue_cents' THEN (SELECT coalesce(sum(cents), 0) FROM done) END;
INSERT INTO revenue_buckets SELECT floor(ts / 900)::bigint AS b, sum(cents) FROM done GROUP BY b;
INSERT INTO users SELECT user_id, max(ts) FROM events GROUP BY user_id;
ANALYZE;
"""


def build_pg(url: str, n: int, now: float) -> None:
    """The same database in a PostgreSQL schema (``url`` selects it), built with SQL."""
    import psycopg

    from metrics_server.store.postgres import PostgresStore

    PostgresStore(url).close()  # the schema, exactly as the server makes it
    script = _BUILD_PG
    for k, v in {":now": now, ":step": STEP, ":users": USERS, ":n": n}.items():  # ":n" last
        script = script.replace(k, repr(v))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script)


async def _services(paths: dict[str, Path | str]) -> dict[str, MetricsService]:
    out = {}
    for name, path in paths.items():
        if "://" in str(path):
            from metrics_server.store import open_store

            store = open_store(str(path))
        else:
            store = SQLiteStore(path)
        svc = MetricsService(store)
        await svc.start()
        out[name] = svc
    return out


def time_calls(fn: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def time_blocks(
    services: dict[str, MetricsService], blocks: int, calls: int
) -> dict[str, list[float]]:
    """``get_metrics()`` in ``blocks`` alternating blocks of ``calls``: us per call, per block."""
    per: dict[str, list[float]] = {"small": [], "big": []}
    for _ in range(blocks):
        for name in ("small", "big"):
            per[name].append(time_calls(services[name].get_metrics, calls) * 1e6)
    return per


def tree_side(where: str, small: int, big: int, now: float, blocks: int, calls: int) -> None:
    """What ``--baseline`` runs under the other tree: both databases built in ``where`` in
    that tree's own schema, its ``get_metrics()`` timed the same way; JSON on stdout."""
    paths: dict[str, Path | str] = {"small": Path(where, "small.db"), "big": Path(where, "big.db")}
    for name, n in (("small", small), ("big", big)):
        build(Path(paths[name]), n, now)
    loop = asyncio.new_event_loop()
    services = loop.run_until_complete(_services(paths))
    per = time_blocks(services, blocks, calls)
    for svc in services.values():
        loop.run_until_complete(svc.close())
    loop.close()
    print(json.dumps(per))


def run(
    small: int = 10_000,
    big: int = 1_000_000,
    *,
    blocks: int = 30,
    calls: int = 300,
    rest_calls: int = 200,
    store: str | None = None,
    baseline: str | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Returns per-call medians (microseconds) for both sizes and their ratios. ``store``: a
    PostgreSQL URL to build both in (schemas of their own) instead of SQLite files.
    ``baseline``: the same, in the same run, for the code of that ``src/`` tree (SQLite only;
    its figures under keys that start with ``base_``)."""
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        paths: dict[str, Path | str]
        t0 = time.perf_counter()
        if store:
            from bench.ingest import _Schemas

            schemas = _Schemas(store)
            stack.callback(schemas.close)
            paths = {"small": schemas.new("small"), "big": schemas.new("big")}
            for name, n in (("small", small), ("big", big)):
                build_pg(str(paths[name]), n, now)
        else:
            paths = {"small": Path(tmp, "small.db"), "big": Path(tmp, "big.db")}
            for name, n in (("small", small), ("big", big)):
                build(Path(paths[name]), n, now)
        built = time.perf_counter() - t0
        loop = asyncio.new_event_loop()
        services = loop.run_until_complete(_services(paths))
        assert services["big"].store.event_count() == big  # type: ignore[attr-defined]
        sm, bg = services["small"].get_metrics(), services["big"].get_metrics()
        assert sm.active_users and bg.active_users
        assert sm.active_users.current == bg.active_users.current  # the same recent past
        per = time_blocks(services, blocks, calls)
        for svc in services.values():
            loop.run_until_complete(svc.close())
        loop.close()
        servers = {name: (path, None) for name, path in paths.items()}
        if baseline:
            where = Path(tmp, "base")
            where.mkdir()
            args = (where, small, big, now, blocks, calls)
            per |= {
                f"base_{k}": v
                for k, v in c.run_in_tree(
                    baseline, "bench.snapshot", "--tree-side", *map(str, args)
                ).items()
            }
            for name in ("small", "big"):
                servers[f"base_{name}"] = (where / f"{name}.db", baseline)
        rest: dict[str, list[float]] = {name: [] for name in servers}
        ports = {name: c.free_port() for name in servers}
        with contextlib.ExitStack() as running, httpx.Client() as http:
            for name, (path, src) in servers.items():
                running.enter_context(c.metrics_server(ports[name], path, interval=3600, src=src))
            urls = {
                n: f"http://{c.HOST}:{p}/api/v1/analytics/realtime-metrics"
                for n, p in ports.items()
            }
            for _ in range(rest_calls):
                for name, url in urls.items():
                    t = time.perf_counter()
                    r = http.get(url)
                    rest[name].append((time.perf_counter() - t) * 1e6)
                    assert r.status_code == 200
    out = {
        "small_us": c.median(per["small"]),
        "big_us": c.median(per["big"]),
        "ratio": c.median([b / s for s, b in zip(per["small"], per["big"], strict=True)]),
        "rest_small_p50_us": c.median(rest["small"]),
        "rest_big_p50_us": c.median(rest["big"]),
        "rest_ratio_p50": c.median(rest["big"]) / c.median(rest["small"]),
        "rest_ratio_p99": c.percentile(rest["big"], 99) / c.percentile(rest["small"], 99),
    }
    if baseline:
        small_b, big_b = per["base_small"], per["base_big"]
        out |= {
            "base_small_us": c.median(small_b),
            "base_big_us": c.median(big_b),
            "base_ratio": c.median([b / s for s, b in zip(small_b, big_b, strict=True)]),
            "base_rest_small_p50_us": c.median(rest["base_small"]),
            "base_rest_big_p50_us": c.median(rest["base_big"]),
            "base_rest_ratio_p50": c.median(rest["base_big"]) / c.median(rest["base_small"]),
        }
    if verbose:
        print(f"built {small:,} + {big:,} events in {built:.0f} s")
        print(
            f"get_metrics(): {small:,} events {out['small_us']:.1f} us, {big:,} events"
            f" {out['big_us']:.1f} us; ratio (median of {blocks} alternating blocks)"
            f" {out['ratio']:.2f} (target <= 1.2), big {out['big_us'] / 1000:.3f} ms"
            f" (target <= 1 ms)"
        )
        print(
            f"REST route, round trip over keep-alive: p50 {out['rest_small_p50_us']:.0f} us vs"
            f" {out['rest_big_p50_us']:.0f} us; ratio p50 {out['rest_ratio_p50']:.2f},"
            f" p99 {out['rest_ratio_p99']:.2f}"
        )
        if baseline:
            print(
                f"baseline get_metrics(): {out['base_small_us']:.1f} us, {out['base_big_us']:.1f}"
                f" us; ratio {out['base_ratio']:.2f}. REST p50 {out['base_rest_small_p50_us']:.0f}"
                f" us vs {out['base_rest_big_p50_us']:.0f} us; ratio p50"
                f" {out['base_rest_ratio_p50']:.2f}"
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="10,000,000 events")
    ap.add_argument("--store", metavar="URL", help="a PostgreSQL server to build both stores in")
    c.add_baseline_arg(ap)
    ap.add_argument("--tree-side", nargs=6, help=argparse.SUPPRESS)  # what --baseline runs
    args = ap.parse_args()
    if args.tree_side:
        where, small, big, now, blocks, calls = args.tree_side
        tree_side(where, int(small), int(big), float(now), int(blocks), int(calls))
        return
    where = f" on PostgreSQL ({args.store.split('@')[-1]})" if args.store else ""
    c.print_header(f"snapshot cost vs stored history{where}")
    run(big=10_000_000 if args.full else 1_000_000, store=args.store, baseline=args.baseline)


if __name__ == "__main__":
    main()
