"""Several ``--url``: failover between two real servers; seq/epoch: a gap asks for a resync.

The failover runs the monitor under ``run_test`` against two metrics-server processes on free
ports, each with its own SQLite file. The gap is served by a test double that numbers its
snapshots 1, 2, 5, as a server behind a lossy broker would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection

from bench._common import ServerProcess, free_port, wait_until
from metrics_protocol.wire import Metrics, decode_data, encode_data
from metrics_tui.app import MetricsApp
from metrics_tui.client import MetricsClient
from metrics_tui.messages import ConnectionChanged, ConnState, HistoryReceived, MetricsUpdated


async def test_the_monitor_fails_over_to_the_next_url_and_names_it(tmp_path: Path) -> None:
    a = ServerProcess(p := free_port(), "--host", "127.0.0.1", "--port", str(p),
                      "--db", str(tmp_path / "a.db"), "--interval", "0.5")  # fmt: skip
    b = ServerProcess(q := free_port(), "--host", "127.0.0.1", "--port", str(q),
                      "--db", str(tmp_path / "b.db"), "--interval", "0.5")  # fmt: skip
    with a, b:
        await asyncio.gather(a.ready(), b.ready())
        app = MetricsApp(f"{a.url()},{b.url()}", animate=False)
        async with app.run_test(size=(100, 24)) as pilot:
            line = app.status_line
            await wait_until(lambda: app.status.state is ConnState.LIVE, 5, "live on A")
            assert app.client is not None and app.client.url == a.url()
            assert line.where == f"127.0.0.1:{a.port}"
            t0 = time.monotonic()
            a.stop(signal.SIGKILL)  # gone at once, like a crashed instance
            await wait_until(
                lambda: app.client.url == b.url() and app.status.state is ConnState.LIVE,  # type: ignore[union-attr]
                5,
                "live on B",
            )
            assert time.monotonic() - t0 < 5
            await pilot.pause()
            assert line.where == f"127.0.0.1:{b.port}"
            assert f"127.0.0.1:{b.port}" in str(line.render())
            assert app.client.attempts == 2  # B at once, no backoff after the drop


def snapshot(n: int) -> dict[str, Any]:
    """Snapshot n: every figure says n, so a wrong or reordered one shows."""
    return {
        "timestamp": f"2026-01-01T00:00:{n:02d}.000Z",
        "revenue": {"total": n, "today": n, "thisWeek": n, "thisMonth": n},
        "activeUsers": {"current": n, "today": n, "peak24h": n},
        "transactions": {"total": n, "pending": 0, "completed": n, "failed": 0},
        "content": {"totalViews": n, "totalPurchases": n, "conversionRate": 1.0},
    }


def valid(n: int) -> dict[str, Any]:
    return json.loads(encode_data(decode_data(snapshot(n))))


async def test_a_seq_gap_resyncs_once_and_shows_no_wrong_figure() -> None:
    """The double sends seq 1, 2, 5, then (asked) the history again and 5, 6; the repeated
    5 of the greeting must not show twice, and nothing older than 5 after it."""
    asked: list[str] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async def send(kind: str, n: int, **extra: Any) -> None:
            body = {"type": kind, "kind": "change", "epoch": "e1", "seq": n, **extra}
            await ws.send(json.dumps(body))

        await ws.send(json.dumps({"type": "history", "epoch": "e1", "seq": 1, "interval": 60,
                                  "data": [valid(0)]}))  # fmt: skip
        for n in (1, 2, 5):
            await send("metrics", n, data=valid(n))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "resync":
                asked.append(raw)
                history = {"type": "history", "epoch": "e1", "seq": 5, "interval": 60,
                           "data": [valid(3), valid(4)]}  # fmt: skip
                await ws.send(json.dumps(history))
                await send("metrics", 5, data=valid(5))
                await send("metrics", 4, data=valid(4))  # late and older: never shown
                await send("metrics", 6, data=valid(6))
                done.set()

    posted: list[Any] = []
    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = MetricsClient(f"ws://127.0.0.1:{port}/ws/metrics", posted.append)
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(done.wait(), 5)
            await wait_until(lambda: client.seq.held == ("e1", 6), 5, "seq 6 shown")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(asked) == 1 and client.resyncs == 1
    shown = [int(m.metrics.revenue.total) for m in posted if isinstance(m, MetricsUpdated)]
    assert shown == [1, 2, 5, 6]  # 5 once, the late 4 dropped: never back in time
    histories = [m for m in posted if isinstance(m, HistoryReceived)]
    assert len(histories) == 2  # the greeting's, and the resync's
    assert all(isinstance(m.metrics, Metrics) for m in posted if isinstance(m, MetricsUpdated))
    assert [m.status.state for m in posted if isinstance(m, ConnectionChanged)][-1] is (
        ConnState.LIVE
    )


def test_urls_of_two_schemes_are_refused() -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "metrics_tui", "--url", "ws://127.0.0.1:9/ws/metrics",
         "--url", "wss://127.0.0.1:9/ws/metrics", "--once"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2
    assert "same scheme" in run.stderr.splitlines()[-1]
