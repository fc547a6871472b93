"""Durable ingest through /ws/ingest: events per second, batches of 500, default SQLite store.

The server (its own process, a fresh database) takes pre-encoded batches from ``producers``
concurrent connections, each sending its next batch when the previous one is acknowledged
(an ack means committed with a full fsync). Each batch is realistic: 40% content views, 40%
user activity, 10% new pending transactions and 10% completions of the previous batch's.
The reference, in the same run and alternating: raw ``sqlite3`` ``executemany`` of the same
event rows into the same ``events`` table, one ``BEGIN IMMEDIATE``/``COMMIT`` per 500 rows, with
the same pragmas (WAL, synchronous=FULL). Target: >= 20,000 events/s.

    python -m bench.ingest            # 2 rounds x 6 s
    python -m bench.ingest --full     # 3 rounds x 20 s
    python -m bench.ingest --baseline DIR   # also run the server from DIR (an older src/)
    python -m bench.ingest --store postgresql://postgres@127.0.0.1:5432/test [--baseline DIR]

With ``--store``, the server keeps its events in PostgreSQL (a fresh schema per round, dropped
afterwards; synchronous_commit on, so an ack is a durable commit), and the references are raw
psycopg inserts of the same event rows into the same ``events`` table, one transaction of 500
rows each, also with synchronous_commit on: ``COPY`` (what the store uses) and
``executemany`` in pipeline mode (the alternative it was measured against).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bench import _common as c
from metrics_server.events import parse_batch
from metrics_server.store.sqlite import _SCHEMA, _event_row


def make_batches(producer: int, count: int, size: int = 500) -> list[list[dict[str, object]]]:
    batches = []
    pending: list[str] = []
    n_txn = size // 10
    for b in range(count):
        events: list[dict[str, object]] = []
        for tid in pending:
            events.append({"type": "transaction", "id": tid, "status": "completed"})
        pending = [f"p{producer}-b{b}-t{i}" for i in range(n_txn)]
        for i, tid in enumerate(pending):
            events.append(
                {
                    "type": "transaction",
                    "id": tid,
                    "status": "pending",
                    "amount": f"{(i * 37) % 500}.{i % 100:02d}",
                    "userId": f"u{i}",
                    "contentId": f"c{i % 200}",
                }
            )
        while len(events) < size:
            i = len(events) + b
            if i % 2:
                events.append(
                    {"type": "content_view", "contentId": f"c{i % 200}", "userId": f"u{i % 5000}"}
                )
            else:
                events.append({"type": "user_activity", "userId": f"u{i % 5000}"})
        batches.append(events)
    return batches


async def _producer(port: int, msgs: list[str], deadline: float) -> int:
    sent = 0
    async with connect(f"ws://{c.HOST}:{port}/ws/ingest", compression=None, max_size=1 << 20) as ws:
        for msg in msgs:
            if time.perf_counter() > deadline:
                break
            await ws.send(msg)
            reply = await ws.recv()
            assert '"ack"' in str(reply), reply
            sent += 500
    return sent


def server_round(
    db: Path | str, producers: int, duration: float, batches_each: int, src: str | None = None
) -> dict[str, float]:
    port = c.free_port()
    msgs = [
        [
            json.dumps({"type": "events", "id": i, "events": b})
            for i, b in enumerate(make_batches(p, batches_each))
        ]
        for p in range(producers)
    ]
    with c.metrics_server(port, db, interval=3600, src=src) as srv:
        cpu0 = c.cpu_seconds(srv.pid)
        t0 = time.perf_counter()

        async def go() -> int:
            done = await asyncio.gather(*(_producer(port, m, t0 + duration) for m in msgs))
            return sum(done)

        events = asyncio.run(go())
        wall = time.perf_counter() - t0
        cpu = c.cpu_seconds(srv.pid) - cpu0
    if "://" in str(db):  # a PostgreSQL store URL
        import psycopg

        with psycopg.connect(str(db)) as pg:
            stored = pg.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    else:
        with contextlib.closing(sqlite3.connect(db)) as con:
            stored = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return {
        "eps": events / wall,
        "cpu_per_kevent_ms": cpu / events * 1e6,
        "acked": events,
        "stored": stored,  # after the server stopped: an acknowledged event is on disk
    }


def reference_round(db: Path, duration: float, batches: list[list[dict[str, object]]]) -> float:
    rows = [[_event_row(e) for e in parse_batch(b, time.time())] for b in batches]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.executescript(_SCHEMA)
    n = 0
    t0 = time.perf_counter()
    for r in rows:
        if time.perf_counter() - t0 > duration:
            break
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            "INSERT INTO events (ts, type, user_id, content_id, txn_id, status, amount_cents)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            r,
        )
        con.execute("COMMIT")
        n += len(r)
    wall = time.perf_counter() - t0
    con.close()
    return n / wall


# --------------------------------------------------------------------------- PostgreSQL


class _Schemas:
    """Fresh schemas on a PostgreSQL server, each a store's own world; dropped on close."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._admin = psycopg.connect(url, autocommit=True)
        self._made: list[str] = []

    def new(self, name: str) -> str:
        from urllib.parse import quote

        schema = f"bench_{name}_{os.getpid()}"
        self._admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._admin.execute(f'CREATE SCHEMA "{schema}"')
        self._made.append(schema)
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}options={quote(f'-csearch_path={schema}')}"

    def close(self) -> None:
        for schema in self._made:
            self._admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._admin.close()


def pg_reference_round(
    url: str, duration: float, batches: list[list[dict[str, object]]], method: str
) -> float:
    """Raw inserts of the same event rows into the store's own events table."""
    import psycopg

    from metrics_server.store.postgres import PostgresStore

    PostgresStore(url).close()  # the schema, exactly as the server makes it
    rows = [[_event_row(e) for e in parse_batch(b, time.time())] for b in batches]
    cols = "(ts, type, user_id, content_id, txn_id, status, amount_cents)"
    n = 0
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        t0 = time.perf_counter()
        for r in rows:
            if time.perf_counter() - t0 > duration:
                break
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                if method == "copy":
                    with conn.cursor().copy(f"COPY events {cols} FROM STDIN") as copy:
                        for row in r:
                            copy.write_row(row)
                else:
                    with conn.pipeline(), conn.cursor() as cur:
                        cur.executemany(
                            f"INSERT INTO events {cols} VALUES (%s, %s, %s, %s, %s, %s, %s)", r
                        )
            n += len(r)
        wall = time.perf_counter() - t0
    return n / wall


def run_pg(
    url: str,
    *,
    duration: float = 6.0,
    rounds: int = 2,
    producers: int = 4,
    verbose: bool = True,
    baseline: str | None = None,
) -> dict[str, float]:
    """The server on PostgreSQL next to raw COPY and raw executemany (pipeline mode), and
    (``baseline``) the server from another src/ tree, on a fresh schema of its own."""
    each = int(duration * 40_000 / 500 / producers) + 10
    ref_batches = make_batches(99, int(duration * 200_000 / 500) + 10)
    res: dict[str, list[float]] = {
        k: [] for k in ("srv", "srv1", "copy", "many", "cpu", "acked", "stored", "base")
    }
    schemas = _Schemas(url)
    try:
        for r in range(rounds):
            if baseline:
                b = server_round(schemas.new(f"b{r}"), producers, duration, each, baseline)
                res["base"].append(b["eps"])
                if verbose:
                    print(
                        f"round {r + 1}: baseline {b['eps']:,.0f} events/s with {producers}"
                        f" producers ({b['cpu_per_kevent_ms']:.1f} ms server CPU per 1,000"
                        " events)",
                        flush=True,
                    )
            s = server_round(schemas.new(f"s{r}"), producers, duration, each)
            s1 = server_round(schemas.new(f"o{r}"), 1, duration, each * producers)
            cp = pg_reference_round(schemas.new(f"c{r}"), duration, ref_batches, "copy")
            many = pg_reference_round(schemas.new(f"m{r}"), duration, ref_batches, "pipeline")
            res["srv"].append(s["eps"])
            res["srv1"].append(s1["eps"])
            res["cpu"].append(s["cpu_per_kevent_ms"])
            res["acked"] += [s["acked"], s1["acked"]]
            res["stored"] += [s["stored"], s1["stored"]]
            res["copy"].append(cp)
            res["many"].append(many)
            if verbose:
                print(
                    f"round {r + 1}: metrics-server on PostgreSQL {s['eps']:,.0f} events/s with"
                    f" {producers} producers ({s['cpu_per_kevent_ms']:.1f} ms server CPU per"
                    f" 1,000 events), {s1['eps']:,.0f} with 1; raw COPY {cp:,.0f}; raw"
                    f" executemany (pipeline) {many:,.0f}; ratio to COPY {s['eps'] / cp:.2f}",
                    flush=True,
                )
    finally:
        schemas.close()
    out = {
        "eps": min(res["srv"]),
        "eps_1": min(res["srv1"]),
        "copy_eps": min(res["copy"]),
        "many_eps": min(res["many"]),
        "ratio": c.median([a / b for a, b in zip(res["srv"], res["copy"], strict=True)]),
        "cpu_per_kevent_ms": c.median(res["cpu"]),
        "acked": sum(res["acked"]),
        "stored": sum(res["stored"]),
    }
    if baseline:
        out["baseline_eps"] = min(res["base"])
    if verbose:
        if baseline:
            print(f"baseline worst round: {out['baseline_eps']:,.0f} events/s")
        print(
            f"worst round: {out['eps']:,.0f} events/s (target >= 20,000:"
            f" {'met' if out['eps'] >= 20_000 else 'MISSED'}); vs raw COPY median ratio"
            f" {out['ratio']:.2f}; acknowledged {out['acked']:,.0f} events, stored"
            f" {out['stored']:,.0f}"
        )
    return out


def run(
    *,
    duration: float = 6.0,
    rounds: int = 2,
    producers: int = 4,
    baseline: str | None = None,
    single: bool = True,
    verbose: bool = True,
) -> dict[str, float]:
    """Returns the worst round's server events/s, the reference's, and their ratio."""
    each = int(duration * 40_000 / 500 / producers) + 10  # enough for well over the target
    ref_batches = make_batches(99, int(duration * 200_000 / 500) + 10)
    res: dict[str, list[float]] = {
        k: [] for k in ("srv", "srv1", "ref", "cpu", "base", "acked", "stored")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            s = server_round(Path(tmp, f"s{r}.db"), producers, duration, each)
            s1 = (
                server_round(Path(tmp, f"s1-{r}.db"), 1, duration, each * producers)
                if single
                else {"eps": float("nan")}
            )
            ref = reference_round(Path(tmp, f"r{r}.db"), duration, ref_batches)
            if baseline:
                b = server_round(Path(tmp, f"b{r}.db"), producers, duration, each, baseline)
                res["base"].append(b["eps"])
                if verbose:
                    print(
                        f"round {r + 1}: baseline {b['eps']:,.0f} events/s with {producers}"
                        f" producers ({b['cpu_per_kevent_ms']:.1f} ms CPU per 1,000 events)"
                    )
            res["srv"].append(s["eps"])
            res["acked"].append(s["acked"])
            res["stored"].append(s["stored"])
            res["cpu"].append(s["cpu_per_kevent_ms"])
            res["srv1"].append(s1["eps"])
            res["ref"].append(ref)
            if verbose:
                print(
                    f"round {r + 1}: metrics-server {s['eps']:,.0f} events/s with {producers}"
                    f" producers ({s['cpu_per_kevent_ms']:.1f} ms server CPU per 1,000 events),"
                    f" {s1['eps']:,.0f} with 1; raw sqlite3 {ref:,.0f};"
                    f" ratio {s['eps'] / ref:.2f}",
                    flush=True,
                )
    out = {
        "eps": min(res["srv"]),
        "eps_1": min(res["srv1"]),
        "ref_eps": min(res["ref"]),
        "ratio": c.median([a / b for a, b in zip(res["srv"], res["ref"], strict=True)]),
        "cpu_per_kevent_ms": c.median(res["cpu"]),
        "acked": sum(res["acked"]),
        "stored": sum(res["stored"]),
    }
    if baseline:
        out["baseline_eps"] = min(res["base"])
    if verbose:
        print(
            f"worst round: {out['eps']:,.0f} events/s (target >= 20,000:"
            f" {'met' if out['eps'] >= 20_000 else 'MISSED'}); vs raw sqlite3 median ratio"
            f" {out['ratio']:.2f}"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="3 rounds of 20 s")
    ap.add_argument("--baseline", metavar="SRC", help="also run the server from this src/ tree")
    ap.add_argument("--store", metavar="URL", help="a PostgreSQL server to measure the store on")
    args = ap.parse_args()
    where = f" on PostgreSQL ({args.store.split('@')[-1]})" if args.store else ""
    c.print_header(f"durable ingest, batches of 500{where}")
    if args.store:
        if args.full:
            run_pg(args.store, duration=20.0, rounds=3, baseline=args.baseline)
        else:
            run_pg(args.store, baseline=args.baseline)
    elif args.full:
        run(duration=20.0, rounds=3, baseline=args.baseline)
    else:
        run(baseline=args.baseline)


if __name__ == "__main__":
    main()
