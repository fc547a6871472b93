"""Date ranges cost the same whatever the length of history: 30 days at ``1d`` and 24 h at ``1m``
(1,440 points), 10,000 vs 10,000,000 stored events, timed alternately in the same run.

The databases are those of ``bench/snapshot.py`` (built with SQL: one event every 0.25 s up to
now, 100,000 users), so the 10M one holds 29 days; their range rollups are then built by the
store's own one-time backfill from the raw events (``prepare_ranges``, what an upgraded
database goes through; timed too). Measured per request:

* in process: what the server does for one range -- parse and validate the request, read the
  rollups on the store's thread, build the points, encode the JSON -- through ``MetricsService``;
* over HTTP: ``GET /api/v1/analytics/history`` round trips against two server processes.

Targets: 30 days at 1d: big/small <= 1.5 and big <= 20 ms; 24 h at 1m: big/small <= 1.5.

    python -m bench.history            # 10,000 vs 1,000,000 events
    python -m bench.history --full     # 10,000 vs 10,000,000 events (a few minutes)
    python -m bench.history --store postgresql://postgres@127.0.0.1:5432/test [--full]

With ``--store``, both stores are PostgreSQL schemas (``bench/snapshot.py``'s, made and dropped
by the run), backfilled by PostgresStore's own ``prepare_ranges``, the services run on
PostgresStore and the HTTP servers on ``--store URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from bench import _common as c
from bench import snapshot
from metrics_protocol import wire
from metrics_server.service import MetricsService
from metrics_server.store import SQLiteStore, Store, open_store

TZ = "Europe/Paris"


def queries(now: float) -> dict[str, dict[str, str]]:
    """The two ranges, as a client would ask for them."""
    tz = ZoneInfo(TZ)
    today = datetime.fromtimestamp(now, tz).date()
    minute = datetime.fromtimestamp(now // 60 * 60, tz)
    return {
        "30 d at 1d": {
            "from": (today - timedelta(days=29)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat(),
            "step": "1d",
        },
        "24 h at 1m": {
            "from": (minute - timedelta(days=1)).isoformat(),
            "to": minute.isoformat(),
            "step": "1m",
        },
    }


def _open(path: Path | str) -> Store:
    """A SQLite file, or a PostgreSQL store URL."""
    return open_store(path) if isinstance(path, str) else SQLiteStore(path)


def prepare(path: Path | str) -> float:
    """The store's one-time backfill of the range rollups; returns its seconds."""
    store = _open(path)
    t0 = time.perf_counter()
    svc = MetricsService(store, tz=TZ)
    what = store.prepare_ranges(svc.calendar)
    took = time.perf_counter() - t0
    assert what and "built the range rollups" in what, what
    store.close()
    return took


def in_process(
    paths: dict[str, Path | str], now: float, blocks: int, calls: int
) -> dict[str, dict[str, list[float]]]:
    """Per-request microseconds, in alternating blocks, for each query and size."""
    loop = asyncio.new_event_loop()
    services = {}
    for name, path in paths.items():
        svc = MetricsService(_open(path), tz=TZ)
        loop.run_until_complete(svc.start())
        services[name] = svc

    async def answer(svc: MetricsService, q: dict[str, str]) -> str:
        return wire.encode_range(await svc.range(svc.calendar.parse(q, http=True)))

    per: dict[str, dict[str, list[float]]] = {}
    for label, q in queries(now).items():
        sizes = {
            name: len(wire.loads(loop.run_until_complete(answer(svc, q)))["points"])
            for name, svc in services.items()
        }
        assert len(set(sizes.values())) == 1, sizes  # the same points from both
        per[label] = {name: [] for name in services}
        for _ in range(blocks):
            for name, svc in services.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    loop.run_until_complete(answer(svc, q))
                per[label][name].append((time.perf_counter() - t0) / calls * 1e6)
    for svc in services.values():
        loop.run_until_complete(svc.close())
    loop.close()
    return per


def over_http(
    paths: dict[str, Path | str], now: float, rounds: int
) -> dict[str, dict[str, list[float]]]:
    ports = {name: c.free_port() for name in paths}
    per: dict[str, dict[str, list[float]]] = {}
    args = [sys.executable, "-m", "metrics_server", "--interval", "3600", "--tz", TZ]
    where = {n: ("--store" if isinstance(p, str) else "--db", str(p)) for n, p in paths.items()}
    servers = [
        c.spawn([*args, "--port", str(ports[name]), *where[name]], ports[name]) for name in paths
    ]
    with servers[0], servers[1], httpx.Client(timeout=10) as http:
        for label, q in queries(now).items():
            per[label] = {name: [] for name in paths}
            for _ in range(rounds):
                for name, port in ports.items():
                    url = f"http://{c.HOST}:{port}{wire.HISTORY_PATH}"
                    t0 = time.perf_counter()
                    r = http.get(url, params=q)
                    per[label][name].append((time.perf_counter() - t0) * 1e6)
                    assert r.status_code == 200, r.text
    return per


def run(
    small: int = 10_000,
    big: int = 1_000_000,
    *,
    blocks: int = 20,
    calls: int = 20,
    rounds: int = 100,
    store: str | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Returns medians (microseconds) per query and size, and their ratios. ``store``: a
    PostgreSQL URL to build both in (schemas of their own) instead of SQLite files."""
    now = time.time()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        paths: dict[str, Path | str]
        t0 = time.perf_counter()
        if store:
            from bench.ingest import _Schemas

            schemas = _Schemas(store)
            stack.callback(schemas.close)
            paths = {"small": schemas.new("hsmall"), "big": schemas.new("hbig")}
            for name, n in (("small", small), ("big", big)):
                snapshot.build_pg(str(paths[name]), n, now)
        else:
            paths = {"small": Path(tmp, "small.db"), "big": Path(tmp, "big.db")}
            for name, n in (("small", small), ("big", big)):
                snapshot.build(Path(paths[name]), n, now)
        built = time.perf_counter() - t0
        backfill = {name: prepare(path) for name, path in paths.items()}
        out["backfill_big_s"] = backfill["big"]
        proc = in_process(paths, now, blocks, calls)
        http = over_http(paths, now, rounds)
    for label in proc:
        key = label.replace(" ", "")
        small_us, big_us = c.median(proc[label]["small"]), c.median(proc[label]["big"])
        ratio = c.median(
            [b / s for s, b in zip(proc[label]["small"], proc[label]["big"], strict=True)]
        )
        h_small, h_big = c.median(http[label]["small"]), c.median(http[label]["big"])
        out |= {
            f"{key}_small_us": small_us,
            f"{key}_big_us": big_us,
            f"{key}_ratio": ratio,
            f"{key}_http_small_us": h_small,
            f"{key}_http_big_us": h_big,
            f"{key}_http_ratio": h_big / h_small,
            f"{key}_http_p99_ratio": c.percentile(http[label]["big"], 99)
            / c.percentile(http[label]["small"], 99),
        }
        if verbose:
            print(
                f"{label}: in process {small_us / 1000:.2f} ms ({small:,} events) vs"
                f" {big_us / 1000:.2f} ms ({big:,}), ratio {ratio:.2f} (median of {blocks}"
                f" alternating blocks); HTTP p50 {h_small / 1000:.2f} vs {h_big / 1000:.2f} ms,"
                f" ratio {h_big / h_small:.2f} (p99 {out[f'{key}_http_p99_ratio']:.2f})"
            )
    if verbose:
        print(
            f"built {small:,} + {big:,} events in {built:.0f} s; range rollups backfilled from"
            f" {big:,} events in {backfill['big']:.1f} s"
        )
        d, m = "30dat1d", "24hat1m"
        print(
            f"30 d at 1d: ratio {out[f'{d}_ratio']:.2f} (target <= 1.5), big"
            f" {out[f'{d}_big_us'] / 1000:.2f} ms in process, {out[f'{d}_http_big_us'] / 1000:.2f}"
            f" ms over HTTP (target <= 20 ms); 24 h at 1m: ratio {out[f'{m}_ratio']:.2f}"
            f" (HTTP {out[f'{m}_http_ratio']:.2f}; target <= 1.5)"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="10,000,000 events")
    ap.add_argument("--store", metavar="URL", help="a PostgreSQL server to build both stores in")
    args = ap.parse_args()
    where = f" on PostgreSQL ({args.store.split('@')[-1]})" if args.store else ""
    c.print_header(f"date ranges vs stored history{where}")
    run(big=10_000_000 if args.full else 1_000_000, store=args.store)


if __name__ == "__main__":
    main()
