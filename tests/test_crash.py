"""Every acknowledged event survives SIGKILL, and a producer's retry double-counts nothing.

A real server process takes a sustained stream of batches and is killed with SIGKILL at a random
moment; a new process on the same database must hold every acknowledged batch, and replaying
the batches that were in flight (whose ack never came) must leave the figures as if each had
been applied once. ``bench/crash_ingest.py`` runs the same scenario more times.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metrics_server",
            "--port",
            str(port),
            "--db",
            str(db),
            "--interval",
            "3600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)  # polling a condition with a deadline
    raise TimeoutError("server did not become healthy")


def make_batch(n: int, now: float, prefix: str = "") -> dict:
    """Transactions with fresh ids (completed at once) plus activity with explicit times:
    replaying the batch is a no-op for every figure."""
    events = [
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
    events.append({"type": "user_activity", "userId": f"u{n % 50}", "ts": now})
    return {"type": "events", "id": n, "events": events}


def batch_cents(batch: dict) -> int:
    return sum(
        int(Decimal(e["amount"]) * 100) for e in batch["events"] if e["type"] == "transaction"
    )


async def produce_until_killed(
    port: int, proc: subprocess.Popen[bytes], kill_after: float, now: float, prefix: str
) -> tuple[list[dict], list[dict]]:
    """Send batches back to back, pipelined 4 deep; SIGKILL the server after ``kill_after`` s.

    Returns (acknowledged batches, batches sent without an ack).
    """
    acked: list[dict] = []
    sent: dict[int, dict] = {}
    n = 0
    loop = asyncio.get_running_loop()
    loop.call_later(kill_after, proc.send_signal, signal.SIGKILL)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws/ingest") as ws:
            while True:
                while len(sent) < 4:
                    n += 1
                    sent[n] = make_batch(n, now, prefix)
                    await ws.send(json.dumps(sent[n]))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["type"] == "ack", reply
                acked.append(sent.pop(reply["id"]))
    except (ConnectionClosed, OSError):
        pass
    return acked, list(sent.values())


async def test_acked_batches_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED"))
    now = time.time()
    db = tmp_path / "m.db"
    applied: list[dict] = []  # every batch that must count exactly once
    for round_ in range(2):
        port = free_port()
        proc = start_server(db, port)
        try:
            await wait_healthy(port, proc)
            acked, unacked = await produce_until_killed(
                port, proc, rng.uniform(0.3, 1.2), now, f"r{round_}"
            )
        finally:
            proc.kill()
            proc.wait(10)
        assert acked, "the server was killed before any ack: the test proved nothing"

        # Every acknowledged transaction is on disk, read with a plain SQLite connection.
        with sqlite3.connect(db) as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM transactions")}
        for batch in acked:
            assert {e["id"] for e in batch["events"] if e["type"] == "transaction"} <= stored

        # Restart, replay what was in flight (some of it may have been committed), and check
        # that every batch counts exactly once.
        port = free_port()
        proc = start_server(db, port)
        try:
            await wait_healthy(port, proc)
            async with connect(f"ws://127.0.0.1:{port}/ws/ingest") as ws:
                for batch in unacked:
                    await ws.send(json.dumps(batch))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert reply["type"] == "ack", reply
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"http://127.0.0.1:{port}/api/v1/analytics/realtime-metrics"
                )
            data = json.loads(response.text, parse_float=Decimal)["data"]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        applied += acked + unacked
        assert data["transactions"]["completed"] == 20 * len(applied)
        assert data["revenue"]["total"] == Decimal(sum(map(batch_cents, applied))) / 100
        print(f"round {round_}: {len(acked)} acked, {len(unacked)} in flight at the kill")
