"""Helpers of the broker tests (test_broker.py, test_drills.py): a workload whose every
consistent snapshot is recognisable, a subscriber that records its feed, and server processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from metrics_protocol import wire as p
from pg_service import free_port


def sale(tag: str) -> list[dict[str, Any]]:
    """One view and one completed sale of 1.00: in every consistent snapshot, views, completed
    transactions and revenue (in units) are equal."""
    return [
        {"type": "content_view", "contentId": "c", "userId": f"u{tag}"},
        {"type": "transaction", "id": f"t{tag}", "status": "completed", "amount": "1.00"},
    ]


def consistent(data: dict[str, Any]) -> int:
    """The number of sales a snapshot counts; fails when its figures disagree (a torn or
    double-counted state)."""
    views = data["content"]["totalViews"]
    assert data["transactions"]["completed"] == data["transactions"]["total"] == views, data
    assert data["revenue"]["total"] == Decimal(views), data
    return views


class Feed:
    """A subscriber that records every metrics message: (epoch, seq, kind, data, raw)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.greeting: list[Any] = []
        self.messages: list[tuple[str, int, str, dict[str, Any], str]] = []
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> Feed:
        ws = await connect(url, open_timeout=5)
        feed = cls(ws)
        deadline = time.monotonic() + 5
        while len(feed.greeting) < 2:
            assert time.monotonic() < deadline, "no greeting"
            await asyncio.sleep(0.01)
        return feed

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                msg = p.loads(raw)
                if len(self.greeting) < 2:
                    self.greeting.append(msg)
                if msg.get("type") == "metrics":
                    epoch, seq = p.position(msg)  # type: ignore[misc]
                    self.messages.append((epoch, seq, msg["kind"], msg["data"], str(raw)))

    def last(self) -> tuple[str, int, str, dict[str, Any], str]:
        return self.messages[-1]

    async def until(self, pred: Any, within: float = 5.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            if self.messages and pred(self.messages[-1]):
                return self.messages[-1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"not seen in {within}s; last: {self.messages[-1:]}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def breaks(feed: Feed) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Where a feed's sequence is not seq + 1 in one epoch: a gap or a new epoch."""
    out = []
    for (e0, s0, *_), (e1, s1, *_) in zip(feed.messages, feed.messages[1:], strict=False):
        if e1 != e0 or s1 != s0 + 1:
            out.append(((e0, s0), (e1, s1)))
    return out


class Instance:
    """A metrics-server process on a free port; its log in a file (the leader says so)."""

    def __init__(self, python: str, args: list[str], env: dict[str, str], home: Path) -> None:
        self.python, self.args, self.env, self.home = python, args, env, home
        self.port = 0
        self.proc: Any = None
        self.runs = 0
        self.log = home / "server.log"

    async def start(self, within: float = 15.0) -> Instance:
        self.port = free_port()
        self.runs += 1
        self.log = self.home / f"server-{self.port}-{self.runs}.log"
        self.proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "metrics_server", "--port", str(self.port), *self.args,
            env=self.env, cwd=self.home, stdout=asyncio.subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )  # fmt: skip
        deadline = time.monotonic() + within
        while True:
            assert self.proc.returncode is None, f"server exited: {self.log.read_text()}"
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            assert time.monotonic() < deadline, f"server did not listen: {self.log.read_text()}"
            await asyncio.sleep(0.05)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{p.WS_METRICS_PATH}"

    @property
    def ingest_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{p.WS_INGEST_PATH}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def leads(self) -> bool:
        return "computing the snapshots now" in self.log.read_text()

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 15)


class Producers:
    """Sales sent round-robin to some servers, each batch with a key and retried (on any
    error, or to the next server when the link drops) until acknowledged, as a producer
    should. ``acked`` counts batches acknowledged; ``refused`` the retries."""

    def __init__(self, targets: list[Instance], pause: float = 0.02) -> None:
        self.targets = targets
        self.pause = pause
        self.acked = 0
        self.refused = 0
        self.sent = 0
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"sale-{os.getpid()}-{n}"
            msg = p.encode({"type": "events", "id": n, "key": key, "events": sale(str(n))})
            self.sent = n
            turn = n
            while True:
                target = self.targets[turn % len(self.targets)]
                try:
                    async with connect(target.ingest_url, open_timeout=2) as ws:
                        await ws.send(msg)
                        reply = p.loads(await asyncio.wait_for(ws.recv(), 10))
                    if reply.get("type") == "ack":
                        self.acked += 1
                        break
                except Exception:  # refused, or the server is down: the next one
                    pass
                self.refused += 1
                turn += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.pause)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 30)
