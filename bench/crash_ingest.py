"""SIGKILL under ingest, many times: every acknowledged batch survives, replays count once.

The scenario of ``tests/test_crash.py`` (which runs it twice), as a longer run: a real server
takes batches pipelined 4 deep and is killed with SIGKILL at a random moment; a fresh process on
the same database must hold every acknowledged transaction, and replaying the batches whose ack
never came must leave every figure as if each batch had been applied exactly once. Each batch
carries an idempotency key, so that holds for content views too, which have no id of their own;
a batch refused with ``rate_limited`` is sent again, as a well-behaved producer does.

    python -m bench.crash_ingest               # 10 rounds
    python -m bench.crash_ingest --rounds 50 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench import _common as c

VIEWS = 3  # content views per batch: counted once only thanks to the batch's key
#: Pause before a rate-limited batch is sent again: at the server's 500 batches/s that refills
#: 25 of its tokens, more than the 4 batches in flight.
RATE_LIMIT_PAUSE = 0.05


def start_server(db: Path, port: int) -> c.ServerProcess:
    return c.ServerProcess(port, "--port", str(port), "--db", str(db), "--interval", "3600")


def make_batch(n: int, now: float, prefix: str) -> dict[str, Any]:
    """Fresh transaction ids (completed at once), content views and dated activity, under a
    key: a replay is a no-op."""
    events: list[dict[str, Any]] = [
        {
            "type": "transaction",
            "id": f"{prefix}b{n}-t{i}",
            "status": "completed",
            "amount": f"{1 + i}.{n % 100:02d}",
            "userId": f"u{i % 7}",
            "ts": now,
        }
        for i in range(20)
    ]
    events += [{"type": "content_view", "contentId": f"{prefix}c{n}", "ts": now}] * VIEWS
    events.append({"type": "user_activity", "userId": f"u{n % 50}", "ts": now})
    return {"type": "events", "id": n, "key": f"{prefix}b{n}", "events": events}


def batch_txns(batch: dict[str, Any]) -> set[str]:
    return {e["id"] for e in batch["events"] if e["type"] == "transaction"}


def batch_cents(batch: dict[str, Any]) -> int:
    return sum(
        int(Decimal(e["amount"]) * 100) for e in batch["events"] if e["type"] == "transaction"
    )


async def produce_until_killed(
    port: int, kill: Callable[[], None], kill_after: float, now: float, prefix: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(acknowledged batches, batches sent without an ack, batches sent again after
    ``rate_limited``) when ``kill`` (SIGKILL) lands."""
    acked: list[dict[str, Any]] = []
    sent: dict[int, dict[str, Any]] = {}
    resent = 0
    n = 0
    asyncio.get_running_loop().call_later(kill_after, kill)
    try:
        async with connect(f"ws://{c.HOST}:{port}/ws/ingest") as ws:
            while True:
                while len(sent) < 4:
                    n += 1
                    sent[n] = make_batch(n, now, prefix)
                    await ws.send(json.dumps(sent[n]))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply["type"] == "ack":
                    acked.append(sent.pop(reply["id"]))
                elif reply["error"]["code"] == "rate_limited":  # nothing stored: send it again
                    await asyncio.sleep(RATE_LIMIT_PAUSE)
                    await ws.send(json.dumps(sent[reply["id"]]))
                    resent += 1
                else:
                    raise AssertionError(f"not an ack: {reply}")
    except (ConnectionClosed, OSError):
        pass
    return acked, list(sent.values()), resent


async def one_round(db: Path, round_: int, rng: random.Random, now: float, applied: list) -> str:
    port = c.free_port()
    with start_server(db, port) as server:
        await server.ready()
        acked, unacked, resent = await produce_until_killed(
            port, server.proc.kill, rng.uniform(0.3, 1.2), now, f"r{round_}"
        )
    if not acked:
        raise AssertionError("killed before any ack: this round proved nothing")
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM transactions")}
    lost = [b["id"] for b in acked if not batch_txns(b) <= stored]
    if lost:
        raise AssertionError(f"acknowledged batches lost: {lost}")

    port = c.free_port()
    with start_server(db, port) as server:
        await server.ready()
        duplicates = 0
        async with connect(f"ws://{c.HOST}:{port}/ws/ingest") as ws:
            for batch in unacked:  # the same batches, same keys, as a producer retries them
                await ws.send(json.dumps(batch))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply["type"] != "ack":
                    raise AssertionError(f"replay refused: {reply}")
                duplicates += bool(reply.get("duplicate"))
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"http://{c.HOST}:{port}/api/v1/analytics/realtime-metrics")
        data = json.loads(resp.text, parse_float=Decimal)["data"]
        code = server.stop()
    if code != 0:
        raise AssertionError(f"SIGTERM exit code {code}")
    applied += acked + unacked
    completed = data["transactions"]["completed"]
    revenue = data["revenue"]["total"]
    views = data["content"]["totalViews"]
    want_revenue = Decimal(sum(map(batch_cents, applied))) / 100
    want = (20 * len(applied), want_revenue, VIEWS * len(applied))
    if (completed, revenue, views) != want:
        raise AssertionError(
            f"double count or loss: completed {completed} (want {want[0]}), "
            f"revenue {revenue} (want {want[1]}), views {views} (want {want[2]})"
        )
    return (
        f"{len(acked)} acked, {len(unacked)} in flight at the kill ({duplicates} of them"
        f" already stored), {resent} sent again after rate_limited"
    )


async def main(rounds: int, seed: int | None) -> int:
    rng = random.Random(seed)
    now = time.time()
    passed = failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "m.db"
        applied: list[dict[str, Any]] = []
        for round_ in range(rounds):
            try:
                line = await one_round(db, round_, rng, now, applied)
                passed += 1
                print(f"round {round_ + 1}/{rounds}: {line}")
            except AssertionError as exc:
                failures += 1
                print(f"round {round_ + 1}/{rounds}: FAILED: {exc}")
                break  # later rounds build on this database: stop at the first failure
        print(f"{passed} rounds passed, {failures} failed;")
        print(f"{len(applied)} batches ({20 * len(applied)} transactions), each counted once")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.rounds, args.seed)))
