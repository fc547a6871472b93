"""Fixtures of the monitor's tests: a real metrics-server on a free port with a temporary SQLite
store, a fast interval, and a token or TLS where a test asks for them.

``ServerHandle``, ``Cert``, ``free_port`` and ``wait_until`` come from ``bench/_common.py`` (the
harness the benches share) and stay importable from here; the ``cert`` fixture is in
tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench._common import Cert, ServerHandle, free_port, wait_until
from metrics_server.app import ServerConfig

__all__ = ["TOKEN", "Cert", "ServerHandle", "free_port", "running", "server_config", "wait_until"]

#: Short interval so history fills and charts move within a test's time budget.
TEST_INTERVAL = 0.2
#: The token of the ``token_server`` and ``tls_server`` fixtures.
TOKEN = "s3cret"


def server_config(tmp_path: Path, **changes: Any) -> ServerConfig:
    """The servers' common settings; tests add a token or a certificate."""
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
    return replace(cfg, **changes)


async def running(handle: ServerHandle) -> AsyncIterator[ServerHandle]:
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerHandle]:
    async for handle in running(ServerHandle(server_config(tmp_path))):
        yield handle


@pytest.fixture
async def token_server(tmp_path: Path) -> AsyncIterator[ServerHandle]:
    async for handle in running(ServerHandle(server_config(tmp_path, token=TOKEN))):
        yield handle


@pytest.fixture
async def tls_server(tmp_path: Path, cert: Cert) -> AsyncIterator[ServerHandle]:
    """wss:// and https:// with the throwaway certificate, and a token too."""
    cfg = server_config(tmp_path, token=TOKEN, certfile=cert.certfile, keyfile=cert.keyfile)
    async for handle in running(ServerHandle(cfg)):
        yield handle
