"""Fixtures for the access, TLS, limits, faults and fuzz tests: real servers, real clients.

In-process servers (``start_server``) where a test needs to reach inside (the hub's counters,
the limits); the CLI as a subprocess (``run_cli``) where what matters is what an operator sees
(exit codes, stderr, signals). Helpers are handed out as fixtures, as in ``tests/server``, so
that this directory needs no package.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

TIMEOUT = 3.0
STARTUP = 15.0  # a cold interpreter on a loaded machine


class CliServer:
    """``metrics-server`` in a subprocess; stderr goes to a file, read after it stops."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, stderr: Path, tls: ssl.SSLContext | None
    ) -> None:
        self.proc = proc
        self.port = port
        self.stderr_path = stderr
        self.tls = tls

    def url(self, path: str, scheme: str | None = None) -> str:
        """``scheme`` defaults to ws (wss with TLS); pass ``http`` for REST (https with TLS)."""
        scheme = scheme or "ws"
        if self.tls is not None:
            scheme = {"ws": "wss", "http": "https"}.get(scheme, scheme)
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _healthy(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.url("/healthz", "http")).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self) -> CliServer:
        """Poll /healthz against a deadline (for synchronous tests, e.g. hypothesis)."""
        deadline = time.monotonic() + STARTUP
        with httpx.Client(timeout=1, verify=self.tls or True) as client:
            while not self._healthy(client):
                self._check_alive()
                if time.monotonic() > deadline:
                    pytest.fail("server did not answer /healthz in time")
                time.sleep(0.05)
        return self

    async def ready(self) -> CliServer:
        """Poll /healthz against a deadline without blocking the test's event loop."""
        deadline = time.monotonic() + STARTUP
        async with httpx.AsyncClient(timeout=1, verify=self.tls or True) as client:
            while True:
                try:
                    if (await client.get(self.url("/healthz", "http"))).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                self._check_alive()
                if time.monotonic() > deadline:
                    pytest.fail("server did not answer /healthz in time")
                await asyncio.sleep(0.05)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"server exited {self.proc.returncode}: {self.stderr}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal it and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def run_cli(
    tmp_path: Path, db_path: Path, free_port: int, cli_env: dict[str, str]
) -> Iterator[Callable[..., CliServer]]:
    """``run_cli(*flags, env={...}, tls=ctx)``: a started (not yet ready) server subprocess on
    ``free_port`` with its own database and hourly ticks; killed after the test if still up."""
    procs: list[subprocess.Popen[bytes]] = []

    def run(*flags: str, env: dict[str, str] | None = None, tls: ssl.SSLContext | None = None):
        base = ["--port", str(free_port), "--db", str(db_path), "--interval", "3600"]
        stderr = tmp_path / f"stderr-{len(procs)}.txt"
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "metrics_server", *base, *flags],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**cli_env, **(env or {})},
                cwd=tmp_path,
            )
        procs.append(proc)
        return CliServer(proc, free_port, stderr, tls)

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def run_quick(
    tmp_path: Path, cli_env: dict[str, str]
) -> Callable[..., subprocess.CompletedProcess]:
    """``run_quick(*args)``: a command expected to end by itself (refusals)."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "metrics_server", *args],
            capture_output=True,
            text=True,
            env=cli_env,
            cwd=tmp_path,
            timeout=STARTUP,
        )

    return run


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost: (certfile, keyfile)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    args += " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
    subprocess.run(
        [openssl, *args.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=str(tls_files[0]))


class RawWebSocket:
    """WebSocket by hand, for clients no library would be: frames built byte by byte (masked or
    not, reserved bits, any opcode and size), and a socket that never reads past the 101."""

    @staticmethod
    def frame(
        opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
    ) -> bytes:
        """One frame as a client writes it (RFC 6455 5.2)."""
        head = bytes([(0x80 if fin else 0) | rsv | opcode])
        bit = 0x80 if mask else 0
        n = len(payload)
        if n < 126:
            head += bytes([bit | n])
        elif n < 2**16:
            head += bytes([bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([bit | 127]) + struct.pack("!Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    @staticmethod
    def connect(port: int, path: str = "/ws/metrics") -> socket.socket:
        """A socket past the handshake, with not one byte of the server's frames read."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: no frame is read
            byte = sock.recv(1)
            assert byte, head
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        return sock


@pytest.fixture
def raw_ws() -> type[RawWebSocket]:
    return RawWebSocket
