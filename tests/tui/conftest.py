"""Shared fixtures: a real metrics-server on a free port with a temporary SQLite store."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from metrics_server.app import MetricsServer, ServerConfig

#: Short interval so history fills and charts move within a test's time budget.
TEST_INTERVAL = 0.2


class ServerHandle:
    """A real server that a test can stop and start again on the same port."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.srv: MetricsServer | None = None
        self.port = 0

    async def start(self) -> MetricsServer:
        cfg = replace(self.cfg, port=self.port)
        srv = MetricsServer(cfg)
        await srv.start()
        self.srv, self.port = srv, srv.port
        return srv

    async def stop(self) -> None:
        if self.srv is not None:
            srv, self.srv = self.srv, None
            await srv.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/metrics"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service(self):  # type: ignore[no-untyped-def]
        assert self.srv is not None and self.srv.service is not None
        return self.srv.service


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[ServerHandle]:  # type: ignore[no-untyped-def]
    cfg = ServerConfig(
        host="127.0.0.1",
        port=0,
        db=str(tmp_path / "metrics.db"),
        interval=TEST_INTERVAL,
        tz="UTC",
        history=20,
        demo=False,
        push_interval=0.05,
    )
    handle = ServerHandle(cfg)
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


def free_port() -> int:
    """A port with nothing listening on it (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(
    predicate: Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    """Wait for a condition, yielding to the event loop; fail loudly on timeout."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)
