"""The example clients, run as a user would, against a real server."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from metrics_server.app import MetricsServer, ServerConfig
from metrics_server.hub import Limits

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def run_example(python: str, name: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        python,
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def next_line(proc: asyncio.subprocess.Process, within: float = 10) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), within)
    assert line, "the example closed its output"
    return line.decode().rstrip("\n")


async def line_with(proc: asyncio.subprocess.Process, text: str, within: float = 10) -> str:
    """The next printed line containing ``text`` (earlier lines are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        line = await next_line(proc, max(0.01, deadline - loop.time()))
        if text in line:
            return line


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_producer_sends_acknowledged_batches(server, python) -> None:
    proc = await run_example(
        python, "producer.py", "--url", server.ingest_url, "--count", "45", "--batch", "10"
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 5
    for n, (line, size) in enumerate(zip(lines, (10, 10, 10, 10, 5), strict=True), start=1):
        assert re.match(rf"batch {n}: {size} events acked in [\d.]+ ms", line), line
    assert server.service.store.event_count() == 45
    txns = server.service.get_metrics().transactions
    assert txns is not None
    assert txns.pending + txns.completed + txns.failed == txns.total


async def test_producer_sends_a_rate_limited_batch_again(start_server, python) -> None:
    """Refused with rate_limited, a batch is sent again after a pause, and counted once."""
    server = await start_server(limits=Limits(ingest_rate=10, ingest_burst=1))
    proc = await run_example(
        python,
        *("producer.py", "--url", server.ingest_url),
        *("--count", "80", "--batch", "10", "--rate", "0"),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert len(out.decode().splitlines()) == 8
    assert "rate_limited; sending it again" in err.decode()
    assert server.service.store.event_count() == 80


async def test_producer_rides_through_a_server_restart(db_path, free_port, python) -> None:
    """Shut down and started again mid-run: every event is stored exactly once."""
    config = ServerConfig(port=free_port, db=str(db_path), interval=3600)
    srv = await MetricsServer(config).start()
    proc = await run_example(
        python,
        *("producer.py", "--url", srv.ingest_url),
        *("--count", "3000", "--batch", "100", "--rate", "3000"),
    )
    try:
        await line_with(proc, "batch 3:")
        await srv.stop()
        srv = await MetricsServer(config).start()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "sending it again" in err.decode()  # it did see the server go
        assert srv.service.store.event_count() == 3000
    finally:
        await stop(proc)
        await srv.stop()


async def test_producer_reports_an_unreachable_server(python, free_port) -> None:
    url = f"ws://127.0.0.1:{free_port}/ws/ingest"
    proc = await run_example(python, "producer.py", "--url", url)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert "Traceback" not in err.decode()
    assert len(err.decode().strip().splitlines()) == 1


async def test_subscriber_prints_a_line_per_message(server, producer, python) -> None:
    proc = await run_example(python, "subscriber.py", "--url", server.url, "--count", "2")
    try:
        first = await next_line(proc)  # the greeting's current figures
        assert re.match(r"\d\d:\d\d:\d\dZ  revenue 0\.00  users 0  txns 0 ", first), first
        prod = await producer(server)
        sale = {"type": "transaction", "id": "t1", "status": "completed", "amount": "12.30"}
        await prod.ok([sale])
        second = await next_line(proc)
        assert "revenue 12.30" in second
        assert "txns 1 (pending 0, completed 1, failed 0)" in second
        assert await asyncio.wait_for(proc.wait(), 10) == 0  # --count 2 reached
    finally:
        await stop(proc)


async def test_subscriber_reconnects_after_a_restart(db_path, free_port, python) -> None:
    config = ServerConfig(port=free_port, db=str(db_path), interval=3600)
    url = f"ws://127.0.0.1:{free_port}/ws/metrics"
    proc: asyncio.subprocess.Process | None = None
    try:
        async with MetricsServer(config):
            proc = await run_example(python, "subscriber.py", "--url", url)
            await line_with(proc, "revenue 0.00")
        async with MetricsServer(config) as srv:
            await srv.service.record_transaction("t1", "completed", "7.00")
            await line_with(proc, "revenue 7.00")  # printed from the new connection
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert "disconnected" in err and "Traceback" not in err
    finally:
        if proc is not None:
            await stop(proc)
