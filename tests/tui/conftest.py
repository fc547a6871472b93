"""Shared fixtures: a real metrics-server on a free port with a temporary SQLite store, and a
throwaway self-signed certificate for TLS tests."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from metrics_server.app import MetricsServer, ServerConfig

#: Short interval so history fills and charts move within a test's time budget.
TEST_INTERVAL = 0.2
#: The token of the ``token_server`` and ``tls_server`` fixtures.
TOKEN = "s3cret"


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
    def tls(self) -> bool:
        return bool(self.cfg.certfile)

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws/metrics"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def service(self):  # type: ignore[no-untyped-def]
        assert self.srv is not None and self.srv.service is not None
        return self.srv.service


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


@dataclass(frozen=True)
class Cert:
    """A self-signed certificate for 127.0.0.1 and localhost; it is its own CA."""

    certfile: str
    keyfile: str


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """Made with the openssl CLI, else with ``cryptography``; skipped when neither exists."""
    where = tmp_path_factory.mktemp("tls")
    certfile, keyfile = where / "cert.pem", where / "key.pem"
    if shutil.which("openssl"):
        args = shlex.split(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
            " -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        )
        out = ["-keyout", str(keyfile), "-out", str(certfile)]
        subprocess.run(["openssl", *args, *out], check=True, capture_output=True)
        return Cert(str(certfile), str(keyfile))
    try:
        return _cert_with_cryptography(certfile, keyfile)
    except ImportError:
        pytest.skip("TLS tests need the openssl CLI or the cryptography package")


def _cert_with_cryptography(certfile: Path, keyfile: Path) -> Cert:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Cert(str(certfile), str(keyfile))


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


@pytest.fixture
async def range_server() -> AsyncIterator[Any]:
    """A server that answers range requests (``/ws/metrics`` ``range`` messages and
    ``GET /api/v1/analytics/history``) with issue 11's shapes: the test double in
    ``range_double.py`` until metrics-server answers them itself."""
    from .range_double import RangeDouble

    double = await RangeDouble("Europe/Paris").start()
    try:
        yield double
    finally:
        await double.stop()
