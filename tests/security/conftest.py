"""Fixtures for the access, TLS, limits, faults and fuzz tests: real servers, real clients.

In-process servers (``start_server``) where a test needs to reach inside (the hub's counters,
the limits); the CLI as a subprocess (``run_cli``) where what matters is what an operator sees
(exit codes, stderr, signals). Helpers are handed out as fixtures, as in ``tests/server``, so
that this directory needs no package.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench._common import Cert, ServerProcess, frame, raw_websocket, run_to_end

#: ``metrics-server`` in a subprocess (the harness the benches share): ``ready()``,
#: ``wait_ready()``, ``stop(sig)`` (its exit code), ``stderr``, ``url(path, scheme)``, ``proc``.
CliServer = ServerProcess


@pytest.fixture
def run_cli(
    tmp_path: Path, db_path: Path, free_port: int, cli_env: dict[str, str]
) -> Iterator[Callable[..., CliServer]]:
    """``run_cli(*flags, env={...}, tls=ctx)``: a started (not yet ready) server subprocess on
    ``free_port`` with its own database and hourly ticks; killed after the test if still up."""
    servers: list[ServerProcess] = []

    def run(*flags: str, env: dict[str, str] | None = None, tls: ssl.SSLContext | None = None):
        base = ["--port", str(free_port), "--db", str(db_path), "--interval", "3600"]
        log = tmp_path / f"stderr-{len(servers)}.txt"
        server = ServerProcess(
            free_port, *base, *flags, env={**cli_env, **(env or {})}, cwd=tmp_path, log=log, tls=tls
        )
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.close()


@pytest.fixture
def run_quick(
    tmp_path: Path, cli_env: dict[str, str]
) -> Callable[..., subprocess.CompletedProcess]:
    """``run_quick(*args)``: a command expected to end by itself (refusals)."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_to_end(*args, env=cli_env, cwd=tmp_path)

    return run


@pytest.fixture
def tls_files(cert: Cert) -> tuple[Path, Path]:
    """The throwaway certificate for 127.0.0.1 and localhost: (certfile, keyfile)."""
    return Path(cert.certfile), Path(cert.keyfile)


@pytest.fixture
def client_tls(cert: Cert) -> ssl.SSLContext:
    """A client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=cert.certfile)


class RawWebSocket:
    """WebSocket by hand, for clients no library would be: frames built byte by byte (masked or
    not, reserved bits, any opcode and size), and a socket that never reads past the 101."""

    frame = staticmethod(frame)

    @staticmethod
    def connect(port: int, path: str = "/ws/metrics") -> socket.socket:
        """A socket past the handshake, with not one byte of the server's frames read."""
        return raw_websocket(port, path, timeout=5)


@pytest.fixture
def raw_ws() -> type[RawWebSocket]:
    return RawWebSocket
