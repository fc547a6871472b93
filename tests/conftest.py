"""Fixtures shared by the server and security tests: a real server, free ports, clean env."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from metrics_server.app import MetricsServer, ServerConfig

TIMEOUT = 3.0


@pytest.fixture(autouse=True)
def no_user_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """The monitor reads $XDG_CONFIG_HOME/metrics-tui/config.toml: no test may see the one of
    whoever runs the suite (nor the configuration files their environment names)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "no-config"))
    monkeypatch.delenv("METRICS_TUI_CONFIG", raising=False)
    monkeypatch.delenv("METRICS_CONFIG", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "m.db"


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on right now (the OS picks it, so collisions are unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment for a server subprocess, without any inherited METRICS_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
async def start_server(
    db_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[MetricsServer]]]:
    """``await start_server(**config)``: a started in-process server, stopped after the test.

    Ticks are hourly unless a test asks otherwise, so no interval push interferes.
    """
    servers: list[MetricsServer] = []

    async def start(**overrides: Any) -> MetricsServer:
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "db": str(db_path),
            "interval": 3600.0,
        }
        config.update(overrides)
        srv = await MetricsServer(ServerConfig(**config)).start()
        servers.append(srv)
        return srv

    yield start
    for srv in reversed(servers):
        await srv.stop()


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(pred, within)``: poll a condition against a deadline."""

    async def wait(pred: Callable[[], bool], within: float = TIMEOUT) -> None:
        deadline = time.monotonic() + within
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.01)

    return wait
