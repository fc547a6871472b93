"""Scale-out: subscribers held by 1 server vs 2 behind one Redis, and cross-server latency.

Capacity, the websocket-shootout method (hashrocket/websocket-shootout): a producer makes
``--rate`` broadcasts a second on a fixed schedule (each batch completes one transaction, so
every subscriber gets one message per batch; ``--push-interval 0``); raise the subscriber
count step by step until the p99 of delivery (from when the batch was due to its receipt at
each subscriber, over every receipt of the step) passes 500 ms. The capacity is the largest
count that stayed under. With two servers (a leader and a relay on one PostgreSQL schema and
one Redis) the subscribers are split evenly between them and the producer alternates.
Subscriber fleets run in processes of their own; CLOCK_MONOTONIC is shared, so receipts and
the schedule compare directly.

Latency: an event sent to server A reaches a subscriber of server C (three servers: a
leader, A and C, both relays), at 1,000 events/s in batches of 100, 100 subscribers on C;
targets p99 <= 350 ms at the default 0.25 s push window and <= 100 ms with 0.

Everything shares the machine with the servers (clients, Redis, PostgreSQL): on 2 cores the
second server competes with them for the second core, which bounds the ratio.

    python -m bench.scaleout                        # capacity steps of 5 s, latency 2 x 8 s
    python -m bench.scaleout --full                 # steps of 10 s, latency 3 x 15 s
    python -m bench.scaleout --postgres URL --redis-server PATH
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import quote

import psutil
from websockets.asyncio.client import connect

from bench import _common as c
from bench import latency as lat

POSTGRES = os.environ.get("METRICS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BOUND_MS = 500.0
PER_FLEET = 2500  # subscribers per client process


# --------------------------------------------------------------------------- services


@contextlib.contextmanager
def private_redis(binary: str = "redis-server") -> Iterator[str]:
    """A redis-server of this run's own (no persistence), stopped at the end."""
    path = shutil.which(binary) or binary
    port = c.free_port()
    home = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [path, "--port", str(port), "--bind", c.HOST, "--save", "", "--appendonly", "no",
         "--dir", home],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        c.wait_port(port, proc)
        yield f"redis://{c.HOST}:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def schema(url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped at the end; yields the store URL that uses it."""
    import psycopg

    name = f"bench_scaleout_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


@contextlib.contextmanager
def servers(
    n: int, store: str, broker: str, push_interval: float
) -> Iterator[tuple[list[int], list[psutil.Process]]]:
    """``n`` metrics-server processes on one store and broker (the first one leads): their
    ports and processes."""
    with contextlib.ExitStack() as stack:
        ports, procs = [], []
        for _ in range(n):
            port = c.free_port()
            args = [sys.executable, "-m", "metrics_server", "--port", str(port)]
            args += ["--store", store, "--broker", broker, "--interval", "3600"]
            args += ["--push-interval", str(push_interval), "--max-clients", "100000"]
            procs.append(stack.enter_context(c.spawn(args, port)))
            ports.append(port)
        time.sleep(0.5)  # the relays' subscriptions are up
        yield ports, procs


# --------------------------------------------------------------------------- measuring


async def produce(ports: list[int], rate: float, batch: int, duration: float) -> dict[int, float]:
    """Batches on a fixed schedule, alternating between ``ports``; returns when each completed
    count was due (counts 1, 2, ... of this round). Latency is taken from the schedule, not
    from the ack: a server that falls behind delays the later batches, and that backlog is
    part of their latency (no coordinated omission)."""
    due: dict[int, float] = {}
    period = 1.0 / rate
    conns = [await connect(f"ws://{c.HOST}:{p}/ws/ingest", compression=None) for p in ports]
    try:
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < duration:
            k += 1
            due[k] = start + (k - 1) * period
            await asyncio.sleep(max(0.0, due[k] - time.perf_counter()))
            msg, _ = lat.make_batch(batch)
            ws = conns[k % len(conns)]
            await ws.send(msg)
            reply = await ws.recv()
            assert '"ack"' in str(reply), reply
    finally:
        for ws in conns:
            await ws.close()
    return due


def measure(
    ingest: list[int], subscribe: list[int], subscribers: int, rate: float, batch: int,
    duration: float, watched: list[psutil.Process],
) -> dict[str, float]:  # fmt: skip
    """One step: ``subscribers`` split over the ``subscribe`` ports (fleets of PER_FLEET),
    batches sent to ``ingest``; delivery percentiles (ms) over every receipt, from when each
    batch was due; and the cores busy meanwhile, in the ``watched`` servers and in the
    subscriber fleets."""
    ctx = mp.get_context("fork")
    fleets = []
    per_port = [subscribers // len(subscribe)] * len(subscribe)
    for i in range(subscribers % len(subscribe)):
        per_port[i] += 1
    for port, n in zip(subscribe, per_port, strict=True):
        while n > 0:
            size = min(n, PER_FLEET)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=lat._subscribers, args=(port, size, child), daemon=True)
            proc.start()
            fleets.append((proc, parent, size))
            n -= size
    try:
        for _, parent, size in fleets:
            if not parent.poll(120):
                raise TimeoutError("a fleet did not connect in time")
            assert parent.recv() == size
        time.sleep(0.5)
        procs = [*watched, *(psutil.Process(p.pid) for p, _, _ in fleets)]
        cpu0 = [c.cpu_seconds(p.pid) for p in procs]
        t0 = time.perf_counter()
        due = asyncio.run(produce(ingest, rate, batch, duration))
        wall = time.perf_counter() - t0
        cpu = [(c.cpu_seconds(p.pid) - b) / wall for p, b in zip(procs, cpu0, strict=True)]
        time.sleep(0.5)  # the last broadcasts arrive
        seen: dict[int, list[float]] = {}
        for _, parent, _ in fleets:
            parent.send("stop")
        for _, parent, _ in fleets:
            got, _ = parent.recv()
            for k, times in got.items():
                seen.setdefault(k, []).extend(times)
    finally:
        for proc, _, _ in fleets:
            proc.join(10)
    base = min(seen, default=0)  # completed before this step (the servers are reused)
    delays, missing = [], 0
    for k, t_due in due.items():
        times = seen.get(base + k, [])
        missing += subscribers - len(times)
        delays += [max(0.0, t - t_due) * 1000 for t in times]
    out = lat.summarize(delays, missing=missing, batches=len(due))
    out["server_cpu"] = sum(cpu[: len(watched)])
    out["client_cpu"] = sum(cpu[len(watched) :])
    return out


def capacity(
    store_base: str, redis_bin: str, steps: dict[int, list[int]], rate: float, duration: float
) -> dict[int, int]:
    """For each number of servers, the largest step whose p99 stayed under BOUND_MS (a step
    past the bound, or with missing receipts, ends that climb). Both configurations run at
    once and their steps alternate, so that the load of other programs on a shared machine
    falls on both alike."""
    held = dict.fromkeys(steps, 0)
    with contextlib.ExitStack() as stack:
        run = {}
        for n_servers in steps:
            broker = stack.enter_context(private_redis(redis_bin))
            store = stack.enter_context(schema(store_base))
            run[n_servers] = stack.enter_context(servers(n_servers, store, broker, 0))
        climbing = {n: list(s) for n, s in steps.items()}
        while any(climbing.values()):
            for n_servers, todo in climbing.items():
                if not todo:
                    continue
                n = todo.pop(0)
                ports, procs = run[n_servers]
                res = measure(ports, ports, n, rate, 2, duration, procs)
                ok = res["p99"] <= BOUND_MS and res["missing"] == 0
                print(
                    f"  {n_servers} server(s), {n:>6} subscribers: {lat.fmt(res)}"
                    f"  {'under' if ok else 'OVER'} {BOUND_MS:.0f} ms; cores busy: servers"
                    f" {res['server_cpu']:.2f}, subscriber fleets {res['client_cpu']:.2f}",
                    flush=True,
                )
                if ok:
                    held[n_servers] = n
                else:
                    todo.clear()
    return held


def latency(
    store_base: str, redis_bin: str, duration: float, rounds: int
) -> dict[float, dict[str, float]]:
    """Acked by A, received at C: three servers (the first leads)."""
    pooled: dict[float, list[dict[str, float]]] = {0.25: [], 0.0: []}
    for r in range(rounds):
        for push in pooled:
            with contextlib.ExitStack() as stack:
                broker = stack.enter_context(private_redis(redis_bin))
                store = stack.enter_context(schema(store_base))
                (_, a, cc), procs = stack.enter_context(servers(3, store, broker, push))
                res = measure([a], [cc], 100, 10.0, 100, duration, procs)
            pooled[push].append(res)
            print(f"  round {r + 1} push-interval {push}: {lat.fmt(res)}", flush=True)
    return {p: {k: max(x[k] for x in rs) for k in rs[0]} for p, rs in pooled.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="longer steps and rounds")
    ap.add_argument("--postgres", default=POSTGRES, help="a PostgreSQL URL (a schema is made)")
    ap.add_argument("--redis-server", default="redis-server", help="the redis-server binary")
    ap.add_argument("--rate", type=float, default=20.0, help="broadcasts a second")
    ap.add_argument(
        "--steps",
        default="1000,2000,3000,3500,4000,4500,5000,6000,7000,8000",
        help="subscriber counts to climb through with one server",
    )
    ap.add_argument(
        "--steps2",
        default="2000,4000,5000,6000,7000,8000,9000,10000,12000,14000",
        help="subscriber counts to climb through with two servers",
    )
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    c.raise_nofile()
    step_s = 10.0 if args.full else 5.0
    steps = [int(s) for s in args.steps.split(",")]
    c.print_header(
        f"scale-out: subscribers under p99 {BOUND_MS:.0f} ms at {args.rate:g} broadcasts/s,"
        " 1 server vs 2 behind one Redis; cross-server latency at 1,000 events/s"
    )
    if not args.skip_capacity:
        steps2 = [int(s) for s in args.steps2.split(",")]
        held = capacity(args.postgres, args.redis_server, {1: steps, 2: steps2}, args.rate, step_s)
        one, two = held[1], held[2]
        ratio = two / one if one else math.nan
        print(
            f"capacity: 1 server {one} subscribers, 2 servers {two}: {ratio:.2f}x"
            f" (target >= 1.7)  {'met' if ratio >= 1.7 else 'MISSED'}"
        )
    if not args.skip_latency:
        res = latency(
            args.postgres, args.redis_server, 15.0 if args.full else 8.0, 3 if args.full else 2
        )
        w, z = res[0.25], res[0.0]
        print(
            f"cross-server, push-interval 0.25: p50 {w['p50']:.1f} ms, p99 {w['p99']:.1f} ms"
            f" (target <= 350)  {'met' if w['p99'] <= 350 else 'MISSED'}"
        )
        print(
            f"cross-server, push-interval 0:    p50 {z['p50']:.1f} ms, p99 {z['p99']:.1f} ms"
            f" (target <= 100)  {'met' if z['p99'] <= 100 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
