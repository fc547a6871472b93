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

Everything shares the machine with the servers (clients, Redis, PostgreSQL): unlimited, on 2
cores the second server competes with them for the second core, which bounds the ratio.
``--cpu-quota CORES`` stands for "one machine each": every server process (only the servers,
not the fleets, Redis or PostgreSQL) runs in a cgroup of its own (``metrics-bench-<random>``,
cgroup v1 ``cpu`` or cgroup2 ``cpu.max``; removed at the end, also on Ctrl-C or SIGTERM) capped
at CORES, so that capacity is set by the cap and not by what the rest of the machine leaves.
Pick CORES so that two capped servers plus their fleets fit well within the machine; each
step then reports the busiest server's cores against the cap and the share of CFS periods in
which it ran out of quota. The default steps follow the quota. Needs root (or a delegated
cgroup); refused in one line otherwise. The latency part always runs unlimited.

    python -m bench.scaleout                        # capacity steps of 5 s, latency 2 x 8 s
    python -m bench.scaleout --full                 # steps of 10 s, latency 3 x 15 s
    python -m bench.scaleout --cpu-quota 0.3 --skip-latency   # each server capped at 0.3 cores
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
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import psutil
from websockets.asyncio.client import connect

from bench import _common as c
from bench import latency as lat

POSTGRES = os.environ.get("METRICS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BOUND_MS = 500.0
PER_FLEET = 2500  # subscribers per client process
#: Under --cpu-quota, the default steps go up by this many subscriber-messages a second per core
#: of quota: about a tenth of what a capped server holds (a lone one at 0.3 cores held 750-900
#: subscribers at 20 broadcasts a second), fine enough for the ratio, few enough for the time.
RUNG_MESSAGES = 5_000


# --------------------------------------------------------------------------- CPU quota


class CgroupUnavailable(RuntimeError):
    """No cgroup CPU controller this process may write to."""


def _cpu_hierarchy() -> tuple[Path, bool]:
    """The root of a writable cgroup hierarchy with the CPU controller, and whether it is
    cgroup v2: v1's ``cpu`` hierarchy first (where it is mounted, v2 cannot have the
    controller), else a cgroup2 mount that offers ``cpu``."""
    with open("/proc/mounts") as f:
        mounts = [line.split() for line in f]
    for _, where, kind, opts, *_ in mounts:
        if kind == "cgroup" and "cpu" in opts.split(","):
            root = Path(where)
            if (root / "cpu.cfs_quota_us").exists() and os.access(root, os.W_OK):
                return root, False
    for _, where, kind, *_ in mounts:
        root = Path(where)
        if kind == "cgroup2" and os.access(root, os.W_OK):
            with contextlib.suppress(OSError):
                if "cpu" in (root / "cgroup.controllers").read_text().split():
                    control = root / "cgroup.subtree_control"
                    if "cpu" not in control.read_text().split():
                        control.write_text("+cpu")
                    return root, True
    raise CgroupUnavailable(
        "--cpu-quota needs a writable cgroup CPU controller (cgroup v1 'cpu' or cgroup2 with"
        " 'cpu'), and there is none here: run as root on Linux, or without --cpu-quota"
    )


class CpuQuota:
    """Puts each process given to ``place`` in a cgroup of its own capped at ``cores`` CPUs
    (CFS quota over a 100 ms period): every server gets the same fixed budget, standing for a
    machine of its own, whatever else runs here. The cgroups (``metrics-bench-<random>``) are
    removed when the context ends, a process still in one being moved back to the root."""

    PERIOD_US = 100_000

    def __init__(self, cores: float) -> None:
        self.cores = cores
        self.quota_us = max(1000, round(cores * self.PERIOD_US))
        self.root, self.v2 = _cpu_hierarchy()
        self.made: list[Path] = []

    def __enter__(self) -> CpuQuota:
        return self

    def __exit__(self, *exc: object) -> None:
        for group in reversed(self.made):
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    (self.root / "cgroup.procs").write_text(pid)
            try:
                group.rmdir()
            except OSError as e:
                print(f"could not remove cgroup {group}: {e}", file=sys.stderr)
        self.made.clear()

    def place(self, pid: int) -> Path:
        """A new capped cgroup holding ``pid`` (all its threads)."""
        group = self.root / f"metrics-bench-{secrets.token_hex(6)}"
        group.mkdir()
        self.made.append(group)
        if self.v2:
            (group / "cpu.max").write_text(f"{self.quota_us} {self.PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        (group / "cgroup.procs").write_text(str(pid))
        return group


def throttling(group: Path) -> tuple[int, int]:
    """Periods elapsed and periods in which the cgroup ran out of quota (v1 and v2 alike)."""
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat["nr_periods"]), int(stat["nr_throttled"])


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
    n: int, store: str, broker: str, push_interval: float, quota: CpuQuota | None = None
) -> Iterator[tuple[list[int], list[psutil.Process], list[Path]]]:
    """``n`` metrics-server processes on one store and broker (the first one leads): their
    ports, processes and, under a ``quota``, the cgroup each one was put in."""
    with contextlib.ExitStack() as stack:
        ports, procs, groups = [], [], []
        for _ in range(n):
            port = c.free_port()
            args = [sys.executable, "-m", "metrics_server", "--port", str(port)]
            args += ["--store", store, "--broker", broker, "--interval", "3600"]
            args += ["--push-interval", str(push_interval), "--max-clients", "100000"]
            procs.append(stack.enter_context(c.spawn(args, port)))
            ports.append(port)
            if quota is not None:
                groups.append(quota.place(procs[-1].pid))
        time.sleep(0.5)  # the relays' subscriptions are up
        yield ports, procs, groups


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
    duration: float, watched: list[psutil.Process], groups: Sequence[Path] = (),
) -> dict[str, float]:  # fmt: skip
    """One step: ``subscribers`` split over the ``subscribe`` ports (fleets of PER_FLEET),
    batches sent to ``ingest``; delivery percentiles (ms) over every receipt, from when each
    batch was due; the cores busy meanwhile, in the ``watched`` servers (their sum, and the
    busiest) and in the subscriber fleets; with the servers' cgroups, the share of CFS periods
    in which the most throttled one ran out of quota."""
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
        thr0 = [throttling(g) for g in groups]
        t0 = time.perf_counter()
        due = asyncio.run(produce(ingest, rate, batch, duration))
        wall = time.perf_counter() - t0
        cpu = [(c.cpu_seconds(p.pid) - b) / wall for p, b in zip(procs, cpu0, strict=True)]
        thr = [throttling(g) for g in groups]
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
    out["server_cpu_max"] = max(cpu[: len(watched)], default=0.0)
    out["client_cpu"] = sum(cpu[len(watched) :])
    out["throttled"] = max(
        ((t1 - t0) / max(1, p1 - p0) for (p0, t0), (p1, t1) in zip(thr0, thr, strict=True)),
        default=math.nan,
    )
    return out


def capacity(
    store_base: str, redis_bin: str, steps: dict[int, list[int]], rate: float, duration: float,
    cpu_quota: float | None = None,
) -> dict[int, int]:  # fmt: skip
    """For each number of servers, the largest step whose p99 stayed under BOUND_MS (a step
    past the bound, or with missing receipts, ends that climb). Both configurations run at
    once and their steps alternate, so that the load of other programs on a shared machine
    falls on both alike. With ``cpu_quota``, each server runs in a cgroup of its own capped at
    that many cores (CgroupUnavailable if there is no cgroup CPU controller to write to)."""
    held = dict.fromkeys(steps, 0)
    with contextlib.ExitStack() as stack:
        quota = stack.enter_context(CpuQuota(cpu_quota)) if cpu_quota else None
        run = {}
        for n_servers in steps:
            broker = stack.enter_context(private_redis(redis_bin))
            store = stack.enter_context(schema(store_base))
            run[n_servers] = stack.enter_context(servers(n_servers, store, broker, 0, quota))
        climbing = {n: list(s) for n, s in steps.items()}
        while any(climbing.values()):
            for n_servers, todo in climbing.items():
                if not todo:
                    continue
                n = todo.pop(0)
                ports, procs, groups = run[n_servers]
                res = measure(ports, ports, n, rate, 2, duration, procs, groups)
                ok = res["p99"] <= BOUND_MS and res["missing"] == 0
                capped = ""
                if quota is not None:
                    capped = (
                        f" (busiest {res['server_cpu_max']:.2f} of its {quota.cores:g};"
                        f" out of quota in {res['throttled']:.0%} of periods)"
                    )
                print(
                    f"  {n_servers} server(s), {n:>6} subscribers: {lat.fmt(res)}"
                    f"  {'under' if ok else 'OVER'} {BOUND_MS:.0f} ms; cores busy: servers"
                    f" {res['server_cpu']:.2f}{capped}, subscriber fleets"
                    f" {res['client_cpu']:.2f}",
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
                (_, a, cc), procs, _ = stack.enter_context(servers(3, store, broker, push))
                res = measure([a], [cc], 100, 10.0, 100, duration, procs)
            pooled[push].append(res)
            print(f"  round {r + 1} push-interval {push}: {lat.fmt(res)}", flush=True)
    return {p: {k: max(x[k] for x in rs) for k in rs[0]} for p, rs in pooled.items()}


def default_steps(quota: float | None, rate: float) -> tuple[list[int], list[int]]:
    """The counts to climb through with one server and with two. Unlimited: a fixed ladder.
    Under a quota, rungs of RUNG_MESSAGES per core (75 subscribers at 0.3 cores and 20
    broadcasts a second): one server climbs rungs 2 to 20, two servers 4 to 48."""
    if quota is None:
        one = [1000, 2000, 3000, 3500, 4000, 4500, 5000, 6000, 7000, 8000]
        two = [2000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 12000, 14000]
        return one, two
    rung = max(5, round(quota * RUNG_MESSAGES / rate / 5) * 5)
    return [rung * k for k in range(2, 21)], [rung * k for k in range(4, 49)]


def _unwind(main_pid: int) -> Callable[[int, object], None]:
    """A SIGTERM handler that unwinds like Ctrl-C, so the servers stop and their cgroups are
    removed; the forked subscriber fleets inherit it, and just end."""

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        sys.exit(128 + signum)

    return handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="longer steps and rounds")
    ap.add_argument("--postgres", default=POSTGRES, help="a PostgreSQL URL (a schema is made)")
    ap.add_argument("--redis-server", default="redis-server", help="the redis-server binary")
    ap.add_argument("--rate", type=float, default=20.0, help="broadcasts a second")
    ap.add_argument(
        "--cpu-quota",
        type=float,
        metavar="CORES",
        help="cap each server (only the servers) at this many cores, in a cgroup of its own",
    )
    ap.add_argument(
        "--steps",
        help="subscriber counts to climb through with one server (default: 1000,2000,3000,"
        "3500,4000,4500,5000,6000,7000,8000; under --cpu-quota, a ladder scaled to the quota)",
    )
    ap.add_argument(
        "--steps2",
        help="subscriber counts to climb through with two servers (default: 2000,4000,5000,"
        "6000,7000,8000,9000,10000,12000,14000; under --cpu-quota, a ladder twice as high)",
    )
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    quota = args.cpu_quota
    if quota is not None and not 0.01 <= quota <= (os.cpu_count() or 1):
        ap.error(f"--cpu-quota must be between 0.01 and {os.cpu_count()} cores")
    if quota is not None and not args.skip_capacity:
        try:  # refuse now, in one line, rather than after the services are up
            _cpu_hierarchy()
        except CgroupUnavailable as e:
            sys.exit(f"scaleout: {e}")
    signal.signal(signal.SIGTERM, _unwind(os.getpid()))
    c.raise_nofile()
    step_s = 10.0 if args.full else 5.0
    c.print_header(
        f"scale-out: subscribers under p99 {BOUND_MS:.0f} ms at {args.rate:g} broadcasts/s,"
        " 1 server vs 2 behind one Redis; cross-server latency at 1,000 events/s"
        + (f"; capacity with each server capped at {quota:g} cores" if quota else "")
    )
    if not args.skip_capacity:
        steps, steps2 = default_steps(quota, args.rate)
        if args.steps:
            steps = [int(s) for s in args.steps.split(",")]
        if args.steps2:
            steps2 = [int(s) for s in args.steps2.split(",")]
        held = capacity(
            args.postgres, args.redis_server, {1: steps, 2: steps2}, args.rate, step_s, quota
        )
        one, two = held[1], held[2]
        ratio = two / one if one else math.nan
        cap = f" (each capped at {quota:g} cores)" if quota else ""
        print(
            f"capacity{cap}: 1 server {one} subscribers, 2 servers {two}: {ratio:.2f}x"
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
