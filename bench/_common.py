"""Shared bench helpers: ports, server subprocesses, CPU/RSS of a pid, percentiles, raw clients.

Every figure is measured next to its reference in the same run, because the machines these run
on are shared and noisy: only ratios and percentiles taken side by side are meaningful.

Run as a script, this module is also the reference server of the fan-out and memory benches:
``python bench/_common.py refserver --port P --interval S --payload-file F [--deflate]``, a bare
websockets server that sends the payload on connect and ``broadcast()``s it every S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_COMPLETED = re.compile(rb'"completed":(\d+)')


# --------------------------------------------------------------------------- machine, stats


def machine() -> dict[str, str]:
    """What docs/PERFORMANCE.md records next to every figure."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def raise_nofile(want: int = 20_000) -> int:
    """Raise the soft fd limit (children inherit it); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY else max(soft, want)
    if new != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def print_header(title: str) -> None:
    m = machine()
    print(f"# {title}")
    print(f"# {m['date']}  nproc={m['nproc']}  cpu={m['cpu']}  python={m['python']}")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all threads)."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss_bytes(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port}")


@contextlib.contextmanager
def spawn(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[psutil.Process]:
    """Start a server subprocess, wait until it listens, and stop it (SIGTERM) afterwards."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    try:
        wait_port(port, proc)
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metrics_server(
    port: int,
    db: str | Path,
    *,
    interval: float = 5.0,
    push_interval: float = 0.25,
    src: str | Path | None = None,
) -> contextlib.AbstractContextManager[psutil.Process]:
    """The real metrics-server, in its own process so its CPU and RSS are its own.

    ``src``: run the package from another source tree (e.g. an export of an earlier commit's
    ``src/``) to measure before and after side by side.
    """
    args = [sys.executable, "-m", "metrics_server", "--port", str(port), "--db", str(db)]
    args += ["--interval", str(interval), "--push-interval", str(push_interval)]
    return spawn(args, port, env={"PYTHONPATH": str(src)} if src else None)


def ref_server(
    port: int, payload_file: str | Path, *, interval: float, deflate: bool = False
) -> contextlib.AbstractContextManager[psutil.Process]:
    """The reference: a bare websockets server that broadcasts a fixed payload."""
    args = [sys.executable, str(Path(__file__).resolve()), "refserver", "--port", str(port)]
    args += ["--interval", str(interval), "--payload-file", str(payload_file)]
    return spawn(args + (["--deflate"] if deflate else []), port)


def sample_payload() -> str:
    """A real metrics message with large, realistic figures (what the fan-out broadcasts)."""
    from metrics_protocol import wire as p

    return p.encode_metrics(big_metrics(), "interval")


def big_metrics() -> Any:  # the ref server imports this module: no protocol import at the top
    from decimal import Decimal

    from metrics_protocol import wire as p

    return p.Metrics(
        timestamp=datetime(2025, 11, 4, 10, 30, 0, 123000, tzinfo=UTC),
        revenue=p.Revenue(
            Decimal("98765432109.87"),
            Decimal("123456789.01"),
            Decimal("876543210.98"),
            Decimal("3456789012.34"),
        ),
        active_users=p.ActiveUsers(1_234_567, 98_765_432, 2_345_678),
        transactions=p.Transactions(987_654_321, 12_345, 975_000_000, 12_641_976),
        content=p.Content(9_876_543_210, 975_000_000, Decimal("9.87")),
    )


# --------------------------------------------------------------------------- raw clients


@dataclass
class Stats:
    """What a fleet of raw clients saw. ``first_seen[completed]`` lists receipt times."""

    connected: int = 0
    frames: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    closed: int = 0
    first_seen: dict[int, list[float]] = field(default_factory=dict)


class RawClient(asyncio.Protocol):
    """A minimal WebSocket client: handshake, count text frames, answer pings. Cheap per frame,
    so thousands fit in one process and the client side does not bound what is measured."""

    def __init__(
        self,
        path: str,
        port: int,
        stats: Stats,
        *,
        deflate: bool = False,
        track_completed: bool = False,
        on_open: Callable[[asyncio.Transport], None] | None = None,
    ) -> None:
        self.path, self.port, self.stats = path, port, stats
        self.deflate, self.track = deflate, track_completed
        self.on_open = on_open
        self.buf = bytearray()
        self.open = False
        self.last_completed = -1
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\n{ext if self.deflate else ''}\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.stats.wire_bytes += len(data)
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(RuntimeError(bytes(buf[: buf.find(b"\r\n")]).decode()))
                return
            del buf[: end + 4]
            self.open = True
            self.stats.connected += 1
            if not self.opened.done():
                self.opened.set_result(None)
            if self.on_open is not None and self.transport is not None:
                self.on_open(self.transport)
        self._frames()

    def _frames(self) -> None:
        buf, stats = self.buf, self.stats
        pos = 0
        now = time.perf_counter() if self.track else 0.0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if b1 == 126:
                if len(buf) - pos < 4:
                    break
                b1, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif b1 == 127:
                if len(buf) - pos < 10:
                    break
                b1, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + b1:
                break
            opcode = b0 & 0x0F
            if opcode == 1:
                stats.frames += 1
                stats.payload_bytes += b1
                if self.track:
                    m = _COMPLETED.search(buf, pos + head, pos + head + b1)
                    if m is not None:
                        self._seen(int(m.group(1)), now)
            elif opcode == 9 and self.transport is not None:  # ping -> pong, zero mask key
                self.transport.write(
                    bytes([0x8A, 0x80 | b1, 0, 0, 0, 0]) + bytes(buf[pos + head : pos + head + b1])
                )
            elif opcode == 8 and self.transport is not None:
                self.transport.close()
            pos += head + b1
        del buf[:pos]

    def _seen(self, completed: int, now: float) -> None:
        # Every count up to this one is now visible here (a snapshot covers all earlier batches);
        # the first message only marks where this subscriber starts.
        first = completed if self.last_completed < 0 else self.last_completed + 1
        for c in range(first, completed + 1):
            self.stats.first_seen.setdefault(c, []).append(now)
        if completed > self.last_completed:
            self.last_completed = completed

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the handshake"))


async def connect_many(
    port: int,
    n: int,
    stats: Stats,
    *,
    path: str = "/ws/metrics",
    deflate: bool = False,
    track_completed: bool = False,
    concurrency: int = 100,
) -> list[RawClient]:
    """Open ``n`` raw clients, ``concurrency`` handshakes at a time."""
    loop = asyncio.get_running_loop()
    clients: list[RawClient] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            _, proto = await loop.create_connection(
                lambda: RawClient(
                    path, port, stats, deflate=deflate, track_completed=track_completed
                ),
                HOST,
                port,
            )
            clients.append(proto)
            await asyncio.wait_for(proto.opened, 30)

    await asyncio.gather(*(one() for _ in range(n)))
    return clients


def close_all(clients: Sequence[RawClient]) -> None:
    for c in clients:
        if c.transport is not None:
            c.transport.abort()


# --------------------------------------------------------------------------- reference server


async def _refserve(port: int, interval: float, payload: str, deflate: bool) -> None:
    import signal

    from websockets.asyncio.server import ServerConnection, broadcast, serve

    conns: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(payload)
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        handler, HOST, port, compression="deflate" if deflate else None, max_size=1 << 20
    ):
        next_at = loop.time()
        while not stop.is_set():
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
            if loop.time() - next_at > interval:
                next_at = loop.time()
            broadcast(conns, payload)


def _main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refserver")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--interval", type=float, required=True)
    r.add_argument("--payload-file", required=True)
    r.add_argument("--deflate", action="store_true")
    args = ap.parse_args(argv)
    payload = Path(args.payload_file).read_text()
    asyncio.run(_refserve(args.port, args.interval, payload, args.deflate))


if __name__ == "__main__":
    _main()
