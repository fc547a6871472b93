"""Redis for the tests: the shared server, and a private ``redis-server`` to restart.

``METRICS_TEST_REDIS`` names the shared server (default redis://127.0.0.1:6379/0). A server's
keys are prefixed by its store (``metrics:<database>.<schema>:``), and every schema of a run is
``mt_<run>_<n>`` (pg_service.py), so each run has keys of its own; they expire in 10 s, and the
run deletes what is left at its end. Where Redis (or redis-py) is missing the tests skip with
the reason, unless ``METRICS_REQUIRE_SERVICES=1`` (CI), where they fail.

A test that restarts Redis starts its own, ``redis-server --port <free> --save '' --appendonly
no``, never the shared one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pg_service import Postgres, free_port, missing

REDIS_URL = os.environ.get("METRICS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _ping(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url(postgres: Postgres) -> Iterator[str]:
    """The shared Redis, or a skip (a failure in CI) saying why not. Brokers need a
    PostgreSQL store, hence ``postgres``, whose run prefix names this run's keys too."""
    try:
        import redis
    except ImportError:
        missing("redis-py is not installed: pip install -e '.[test]' (the scale extra)")
    try:
        _ping(REDIS_URL)
    except Exception as exc:  # redis.ConnectionError and kin
        missing(f"Redis unreachable at {REDIS_URL}: {' '.join(str(exc).split())}")
    yield REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    with contextlib.suppress(Exception):
        keys = list(client.scan_iter(match=f"metrics:*.{postgres.prefix}_*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free port, without persistence: a restart
    empties it, as a Redis restarted without a dump would be."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server not found on PATH")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="metrics-redis-"))
        self.tls = tls  # (certificate, key): TLS only, rediss://
        scheme = "rediss" if tls else "redis"
        self.url = f"{scheme}://localhost:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        ports = ["--port", str(self.port)]
        if self.tls:
            cert, key = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-auth-clients", "no"]  # fmt: skip
        self.proc = subprocess.Popen(
            [
                self.binary, *ports, "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the sockets of every client are closed by the kernel at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis(redis_url: str) -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis()
    except (RuntimeError, OSError) as exc:
        missing(f"cannot run a private redis-server: {exc}")
    yield server
    server.close()


@pytest.fixture
def tls_redis(redis_url: str, tmp_path: Path) -> Iterator[tuple[PrivateRedis, Path]]:
    """A private redis-server speaking TLS only, with a throwaway self-signed certificate
    for localhost: (the server, its certificate, which is its own CA)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "redis.pem", tmp_path / "redis.key"
    args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    args += " -subj /CN=localhost -addext subjectAltName=DNS:localhost"
    subprocess.run(
        [openssl, *args.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        server = PrivateRedis(tls=(cert, key))
    except (RuntimeError, OSError) as exc:
        missing(f"cannot run a private redis-server with TLS: {exc}")
    yield server, cert
    server.close()
