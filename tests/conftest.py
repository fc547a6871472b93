"""Fixtures shared by every test directory: a real server, free ports, a clean environment, a
throwaway certificate.

The helpers behind them (``free_port``, ``wait_until``, ``ServerHandle``, ``ServerProcess``,
``make_cert``) live once in ``bench/_common.py``, which the benches use too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench import _common
from bench._common import Cert, ServerHandle
from metrics_server.app import MetricsServer, ServerConfig

# PostgreSQL fixtures (postgres, pg_url, private_postgres) and the two-store ``stores``.
from pg_service import pg_schema, pg_url, postgres, private_postgres, stores  # noqa: F401


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
    return _common.free_port()


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment for a server subprocess, without any inherited METRICS_* settings."""
    return _common.clean_env()


@pytest.fixture
async def start_server(
    db_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[MetricsServer]]]:
    """``await start_server(**config)``: a started in-process server, stopped after the test.

    Ticks are hourly unless a test asks otherwise, so no interval push interferes.
    """
    handles: list[ServerHandle] = []

    async def start(**overrides: Any) -> MetricsServer:
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "db": str(db_path),
            "interval": 3600.0,
        }
        config.update(overrides)
        handles.append(ServerHandle(ServerConfig(**config)))
        return await handles[-1].start()

    yield start
    for handle in reversed(handles):
        await handle.stop()


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(pred, within)``: poll a condition against a deadline."""
    return _common.wait_until


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA), made once."""
    made = _common.make_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("TLS tests need the openssl command or the cryptography package")
    return made
