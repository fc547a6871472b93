"""Soak: many subscribers and a steady event stream for a long time; nothing fails, RSS is flat.

A real metrics-server (its own process, so its RSS is its own) gets ``--subscribers`` WebSocket
subscribers and ``--rate`` events a second over /ws/ingest for ``--duration`` seconds, while a
ping flooder (on unless ``--no-ping-flood``) sends masked ping frames nonstop on a raw
/ws/metrics connection, never reads, and connects again each time it is cut off. Reported:
errors (refused batches, unexpected closes, error messages, a flooder that is not cut off), the
server's RSS sampled every 5 s (the first and last minute compared, and a least-squares slope),
what each subscriber received (every one must get every message), what became of the flooder,
and whether the final figures equal what was sent.

    python -m bench.soak                         # 500 subscribers, 1000 events/s, 10 minutes
    python -m bench.soak --duration 30           # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import _common as c

RSS_EVERY = 5.0
BATCHES_PER_SECOND = 10
#: A flood connection that lasts longer than this is an error: the server cuts one off in about
#: a second (rate limit, then 1 s to read the close frame).
FLOOD_CUT_WITHIN = 5.0


@dataclass
class Tally:
    errors: list[str] = field(default_factory=list)
    per_sub: list[dict[str, int]] = field(default_factory=list)
    #: Per subscriber: metrics messages newer than ``since`` (a server timestamp), and the last
    #: ones' timestamps, to leave out those newer than the final check.
    since: str = "~"  # sorts after any timestamp: nothing counts until it is set
    counted: list[int] = field(default_factory=list)
    tails: list[collections.deque[str]] = field(default_factory=list)
    last_views: list[int] = field(default_factory=list)
    sent_views: int = 0
    sent_completed: int = 0
    sent_events: int = 0
    batches: int = 0


async def subscriber(url: str, index: int, tally: Tally, stop: asyncio.Event) -> None:
    counts = {"messages": 0, "change": 0, "interval": 0, "ping": 0}
    tally.per_sub.append(counts)
    tally.last_views.append(-1)
    tally.counted.append(0)
    tally.tails.append(collections.deque(maxlen=200))
    try:
        async with connect(url, open_timeout=30, max_queue=None) as ws:
            reader = asyncio.create_task(_read(ws, index, counts, tally))
            await stop.wait()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    except (OSError, ConnectionClosed, TimeoutError) as exc:
        tally.errors.append(f"subscriber {index}: {type(exc).__name__}: {exc}")


async def _read(ws: ClientConnection, index: int, counts: dict[str, int], tally: Tally) -> None:
    async for raw in ws:
        msg = json.loads(raw)
        counts["messages"] += 1
        kind = msg.get("type")
        if kind == "metrics":
            counts[msg["kind"]] += 1
            tally.last_views[index] = msg["data"]["content"]["totalViews"]
            stamp = msg["data"]["timestamp"]
            if stamp > tally.since:
                tally.counted[index] += 1
                tally.tails[index].append(stamp)
        elif kind == "ping":
            counts["ping"] += 1
            await ws.send('{"type":"pong"}')
        elif kind == "error":
            tally.errors.append(f"subscriber {index}: {msg}")
    tally.errors.append(f"subscriber {index}: closed by the server ({ws.close_code})")


def make_batch(n: int, size: int, tally: Tally) -> str:
    """60% views, 30% activity, 10% transactions that complete at once (fresh ids)."""
    events: list[dict[str, Any]] = []
    for i in range(size):
        r = i % 10
        if r < 6:
            events.append({"type": "content_view", "contentId": f"c{i % 40}", "userId": f"u{i}"})
            tally.sent_views += 1
        elif r < 9:
            events.append({"type": "user_activity", "userId": f"u{(n * size + i) % 5000}"})
        else:
            txn = {"type": "transaction", "id": f"s{n}-{i}", "status": "completed"}
            events.append({**txn, "amount": "9.99", "userId": f"u{i}"})
            tally.sent_completed += 1
    tally.sent_events += size
    return json.dumps({"type": "events", "id": n, "events": events})


async def producer(url: str, rate: int, tally: Tally, stop: asyncio.Event) -> None:
    """``rate`` events a second in 10 batches a second, each acked before the next."""
    size = max(1, rate // BATCHES_PER_SECOND)
    loop = asyncio.get_running_loop()
    async with connect(url, open_timeout=30) as ws:
        start, n = loop.time(), 0
        while not stop.is_set():
            n += 1
            await ws.send(make_batch(n, size, tally))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply.get("type") != "ack":
                tally.errors.append(f"batch {n}: {reply}")
            tally.batches += 1
            await asyncio.sleep(max(0.0, start + n / BATCHES_PER_SECOND - loop.time()))


def slope_mb_per_min(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [t / 60 for t, _ in samples]
    ys = [rss / 2**20 for _, rss in samples]
    return statistics.linear_regression(xs, ys).slope


async def run(subscribers: int, rate: int, duration: float, ping_flood: bool = True) -> int:
    c.raise_nofile(subscribers * 2 + 256)
    port = c.free_port()
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        server = c.ServerProcess(port, "--port", str(port), "--db", str(Path(tmp) / "soak.db"))
        try:
            await server.ready()
            ps = psutil.Process(server.pid)
            stop = asyncio.Event()
            base = f"ws://{c.HOST}:{port}"
            subs = []
            for i in range(subscribers):  # a few at a time: a burst of handshakes is not the test
                subs.append(asyncio.create_task(subscriber(f"{base}/ws/metrics", i, tally, stop)))
                if i % 50 == 49:
                    await asyncio.sleep(0.05)
            async with httpx.AsyncClient(timeout=30) as http:
                for _ in range(600):  # 30 s at most for every subscriber to be greeted
                    if len(tally.last_views) == subscribers and min(tally.last_views) >= 0:
                        break
                    await asyncio.sleep(0.05)
                first = (await http.get(f"{base}/api/v1/analytics/realtime-metrics")).json()
            tally.since = first["data"]["timestamp"]  # from here on, every message counts
            # Masked pings with 125-byte payloads, so that each pong is as big as it can be.
            pings = b"".join(c.frame(0x9, os.urandom(125)) for _ in range(2000))
            flooder = c.Flood(port, pings, cut_within=FLOOD_CUT_WITHIN)
            if ping_flood:
                flooder.start()
            t0 = time.monotonic()
            stop_producing = asyncio.Event()
            prod = asyncio.create_task(producer(f"{base}/ws/ingest", rate, tally, stop_producing))
            samples: list[tuple[float, int]] = []
            while (elapsed := time.monotonic() - t0) < duration:
                samples.append((elapsed, ps.memory_info().rss))
                if prod.done():
                    break
                await asyncio.sleep(min(RSS_EVERY, max(0.0, duration - elapsed)))
            samples.append((time.monotonic() - t0, ps.memory_info().rss))
            stop_producing.set()
            try:
                await prod
            except Exception as exc:  # reported with the other errors
                tally.errors.append(f"producer: {type(exc).__name__}: {exc}")
            if ping_flood:
                await asyncio.to_thread(flooder.finish)
            async with httpx.AsyncClient(timeout=5) as http:
                rest = (await http.get(f"{base}/api/v1/analytics/realtime-metrics")).json()
            # Every subscriber must catch up with the last figures (at most one push interval).
            want = rest["data"]["content"]["totalViews"]
            for _ in range(100):  # 5 s at most
                if min(tally.last_views) == want:
                    break
                await asyncio.sleep(0.05)
            last_stamp = rest["data"]["timestamp"]
            await asyncio.sleep(2)  # what was sent before the last check has arrived everywhere
            stop.set()
            await asyncio.gather(*subs)
        finally:
            code = server.stop(within=15)
            stderr = server.stderr
            server.close()
    elapsed = samples[-1][0]
    window = 60.0 if elapsed >= 180 else elapsed / 3  # first vs last minute (third, if short)
    first = [r for t, r in samples if t <= window]
    last = [r for t, r in samples if t >= elapsed - window]
    first_mb, last_mb = statistics.mean(first) / 2**20, statistics.mean(last) / 2**20
    tail = [(t, r) for t, r in samples if t >= elapsed / 2]
    slope_all, slope_tail = slope_mb_per_min(samples), slope_mb_per_min(tail)
    growth = last_mb - first_mb
    flat = growth <= max(5.0, 0.05 * first_mb) and slope_tail < 1.0
    msgs = sorted(c["messages"] for c in tally.per_sub)
    got = sorted(
        n - sum(stamp > last_stamp for stamp in tail)
        for n, tail in zip(tally.counted, tally.tails, strict=True)
    )
    every = got[0] == got[-1] > 0
    if not every:
        tally.errors.append(f"subscribers got {got[0]} to {got[-1]} of the same messages")
    tally.errors.extend(flooder.errors)
    changes = sorted(c["change"] for c in tally.per_sub)
    ok_views = want == tally.sent_views and all(v == want for v in tally.last_views)
    ok_completed = rest["data"]["transactions"]["completed"] == tally.sent_completed
    if "Traceback" in stderr:
        tally.errors.append("server stderr has a traceback")

    label = "minute" if window == 60 else f"{window:.0f} s"
    print(f"# soak: {subscribers} subscribers, {rate} events/s, {elapsed:.0f} s")
    print(
        f"sent: {tally.sent_events} events in {tally.batches} batches "
        f"({tally.sent_events / elapsed:.0f}/s)"
    )
    print(
        f"received per subscriber: messages min {msgs[0]} / median {msgs[len(msgs) // 2]} "
        f"/ max {msgs[-1]}; change pushes min {changes[0]} / max {changes[-1]}"
    )
    print(
        f"every subscriber got every message: {'yes' if every else 'NO'} ({got[0]} metrics "
        f"messages each from the first check to the last)"
    )
    if ping_flood:
        cuts = sorted(flooder.cut_after)
        endings = ", ".join(f"{n} {name}" for name, n in flooder.endings.most_common())
        print(
            f"ping flooder: {flooder.connections} connections, {flooder.sent / 2**20:.0f} MiB of "
            f"pings sent, {len(cuts)} cut off by the server ({endings}) after median "
            f"{statistics.median(cuts) if cuts else 0:.2f} s / max {cuts[-1] if cuts else 0:.2f} s"
        )
    print(
        f"final figures: totalViews {want} (sent {tally.sent_views}), completed "
        f"{rest['data']['transactions']['completed']} (sent {tally.sent_completed}); every "
        f"subscriber saw the final totalViews: {all(v == want for v in tally.last_views)}"
    )
    print(
        f"server RSS: first {label} {first_mb:.1f} MiB, last {label} {last_mb:.1f} MiB "
        f"({growth:+.1f} MiB); slope {slope_all:+.2f} MiB/min overall, {slope_tail:+.2f} MiB/min "
        f"over the second half; {len(samples)} samples -> {'FLAT' if flat else 'GROWING'}"
    )
    print(f"errors: {len(tally.errors)}; server exit code {code}")
    for line in tally.errors[:10]:
        print(f"  {line}")
    good = not tally.errors and flat and ok_views and ok_completed and code == 0
    return 0 if good else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--rate", type=int, default=1000, help="events a second")
    parser.add_argument("--duration", type=float, default=600, help="seconds")
    parser.add_argument(
        "--ping-flood",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a client that floods pings and never reads (default on)",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.subscribers, args.rate, args.duration, args.ping_flood)))
