"""Helpers of the benches, and the process harness the tests share with them.

Every figure is measured next to its reference in the same run, because the machines these run
on are shared and noisy: only ratios and percentiles taken side by side are meaningful.

The harness (``free_port``, ``wait_until``, ``ServerProcess``: a metrics-server subprocess on a
free port, waited for until /healthz answers, stopped with a signal, its stderr kept) is here
once for both: the tests import ``bench._common`` (pytest puts the repository root on the path,
see ``pythonpath`` in pyproject.toml). This module imports nothing of ``bench`` itself, so it
also loads as a plain ``_common``.

Run as a script, this module is also the reference server of the fan-out and memory benches:
``python -m bench._common refserver --port P --interval S --payload-file F [--deflate]``, a bare
websockets server that sends the payload on connect and ``broadcast()``s it every S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_COMPLETED = re.compile(rb'"completed":(\d+)')
#: How long a server may take to answer /healthz: a cold interpreter on a loaded machine.
STARTUP = 20.0


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


def add_baseline_arg(ap: argparse.ArgumentParser) -> None:
    """``--baseline SRC``: also run the code of another ``src/`` tree (an export of an earlier
    commit's), driven by this bench in the same run, so that before and after share the
    machine's moment."""
    ap.add_argument(
        "--baseline", metavar="SRC", help="also run the code from this src/ tree, same run"
    )


def print_header(title: str) -> None:
    m = machine()
    print(f"# {title}")
    print(f"# {m['date']}  nproc={m['nproc']}  cpu={m['cpu']}  python={m['python']}")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it, so collisions are unlikely)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def wait_until(
    predicate: Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` without blocking the event loop; AssertionError after ``within`` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


def block_until(predicate: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    """``wait_until`` for code without an event loop: poll, sleeping; returns what
    ``predicate`` returned once it is true."""
    deadline = time.monotonic() + within
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.01)
    return result


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without METRICS_* settings (a user's token would change what is
    measured or tested), unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


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


def run_to_end(
    *args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m metrics_server *args`` when it is expected to end by itself (help, version,
    refusals), with the environment of ``ServerProcess``; its exit code and output as text."""
    return subprocess.run(
        [sys.executable, "-m", "metrics_server", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        cwd=cwd,
        timeout=STARTUP,
    )


class ServerProcess:
    """``python -m metrics_server *flags`` in a subprocess that listens on ``port``.

    The flags go to the command line as they are: name the port with ``--port`` (or
    ``METRICS_PORT`` in ``env``). The environment is ``clean_env(env)``. stderr goes to the file
    ``log`` (an anonymous one by default), never to a pipe that a chatty server could fill;
    ``stderr`` reads it at any time. Wait for it with ``wait_ready()`` or ``await ready()``;
    ``stop()`` signals it and returns its exit code; leaving a ``with`` block kills it if it is
    still running.
    """

    def __init__(
        self,
        port: int,
        *flags: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log: str | Path | None = None,
        tls: Any = None,
    ) -> None:
        self.port = port
        #: An ``ssl.SSLContext`` that trusts the server's certificate, for a server with TLS.
        self.tls = tls
        # Append mode: the child writes at the end whatever this process reads meanwhile.
        self._log = open(log, "a+b") if log is not None else tempfile.TemporaryFile("a+b")  # noqa: SIM115
        self._last_log = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metrics_server", *flags],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=clean_env(env),
            cwd=cwd,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/ws/metrics", scheme: str = "ws") -> str:
        """``scheme`` ws (wss with TLS), or http for REST (https with TLS)."""
        if self.tls is not None:
            scheme = {"ws": "wss", "http": "https"}.get(scheme, scheme)
        return f"{scheme}://{HOST}:{self.port}{path}"

    @property
    def stderr(self) -> str:
        """What it has logged so far (all of it, once closed)."""
        if self._log.closed:
            return self._last_log
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def _check(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}: {self.stderr}")
        if time.monotonic() > deadline:
            self.proc.kill()  # of no use now; its log stays readable
            self.proc.wait()
            raise TimeoutError(f"server did not answer /healthz in time: {self.stderr}")

    def wait_ready(self, within: float = STARTUP) -> Self:
        """Poll /healthz until it answers 200 (for code without an event loop)."""
        deadline = time.monotonic() + within
        with httpx.Client(timeout=1, verify=self.tls or True) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url("/healthz", "http")).status_code == 200:
                        return self
                self._check(deadline)
                time.sleep(0.05)

    async def ready(self, within: float = STARTUP) -> Self:
        """Poll /healthz until it answers 200, without blocking the event loop."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=1, verify=self.tls or True) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(self.url("/healthz", "http"))).status_code == 200:
                        return self
                self._check(deadline)
                await asyncio.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, within: float = 10.0) -> int:
        """Send ``sig``, wait ``within`` s for the exit (then SIGKILL), return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def close(self) -> None:
        """Kill it if it still runs; close the log (its file, if named, stays)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._last_log = self.stderr
            self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServerHandle:
    """A ``MetricsServer`` in this process (``config`` a ``ServerConfig``), which can be
    stopped and started again on the same port: the first start takes the config's port (0:
    one the OS picks), later ones the port it got."""

    def __init__(self, config: Any) -> None:
        self.cfg = config
        self.srv: Any = None  # the running MetricsServer
        self.port = 0

    async def start(self) -> Any:
        from dataclasses import replace

        from metrics_server.app import MetricsServer  # here: the ref server loads this module

        cfg = replace(self.cfg, port=self.port) if self.port else self.cfg
        srv = await MetricsServer(cfg).start()
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
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{self.port}/ws/metrics"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def service(self) -> Any:
        assert self.srv is not None and self.srv.service is not None
        return self.srv.service


@dataclass(frozen=True)
class Cert:
    """A self-signed certificate for 127.0.0.1 and localhost; it is its own CA."""

    certfile: str
    keyfile: str


def make_cert(where: Path) -> Cert | None:
    """A throwaway certificate in ``where``, made with the openssl command, else with the
    ``cryptography`` package; None when neither is there."""
    certfile, keyfile = where / "cert.pem", where / "key.pem"
    if shutil.which("openssl"):
        args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        args += " -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        out = ["-keyout", str(keyfile), "-out", str(certfile)]
        subprocess.run(["openssl", *args.split(), *out], check=True, capture_output=True)
        return Cert(str(certfile), str(keyfile))
    try:
        return _cert_with_cryptography(certfile, keyfile)
    except ImportError:
        return None


def _cert_with_cryptography(certfile: Path, keyfile: Path) -> Cert:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
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


@contextlib.contextmanager
def spawn(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[psutil.Process]:
    """Start a server subprocess, wait until it listens, and stop it (SIGTERM) afterwards."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(env),
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


@contextlib.contextmanager
def metrics_server(
    port: int,
    db: str | Path,
    *,
    interval: float = 5.0,
    push_interval: float = 0.25,
    src: str | Path | None = None,
) -> Iterator[psutil.Process]:
    """The real metrics-server, in its own process so its CPU and RSS are its own.

    ``src``: run the package from another source tree (e.g. an export of an earlier commit's
    ``src/``) to measure before and after side by side.
    """
    store = "--store" if "://" in str(db) else "--db"  # a store URL (postgresql://...)
    flags = ["--port", str(port), store, str(db)]
    flags += ["--interval", str(interval), "--push-interval", str(push_interval)]
    env = {"PYTHONPATH": str(src)} if src else None
    with ServerProcess(port, *flags, env=env, cwd=ROOT) as server:
        server.wait_ready()
        yield psutil.Process(server.pid)
        server.stop()


def ref_server(
    port: int, payload_file: str | Path, *, interval: float, deflate: bool = False
) -> contextlib.AbstractContextManager[psutil.Process]:
    """The reference: a bare websockets server that broadcasts a fixed payload."""
    args = [sys.executable, "-m", "bench._common", "refserver", "--port", str(port)]
    args += ["--interval", str(interval), "--payload-file", str(payload_file)]
    return spawn(args + (["--deflate"] if deflate else []), port)


def sample_payload() -> str:
    """A real metrics message with large, realistic figures (what the fan-out broadcasts)."""
    return wire().encode_metrics(big_metrics(), "interval")


def wire() -> Any:  # the ref server imports this module: no protocol import at the top
    """The message encoder of the tree on the path: ``metrics_protocol.wire``, or in a tree
    from before that package (a ``--baseline``), ``metrics_server.protocol``. The older
    module is tried first: under ``--baseline`` this checkout's ``metrics_protocol`` is still
    importable (it is installed), and would measure this tree's encoder in the other's place."""
    try:
        from metrics_server import protocol as p  # type: ignore[attr-defined]
    except ImportError:
        from metrics_protocol import wire as p  # type: ignore[no-redef]
    return p


def run_in_tree(src: str | Path, module: str, *args: str) -> Any:
    """``python -m MODULE *args`` with the packages of the ``src/`` tree SRC first on the path
    (the benches still from this checkout), for what a bench measures in-process, such as an
    encoder or ``get_metrics()``: the JSON on the last line of its output."""
    env = clean_env({"PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])})
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} under {src} exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def big_metrics() -> Any:
    from decimal import Decimal

    p = wire()
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


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One frame as a client writes it (RFC 6455 5.2), or as a broken client would: masked or
    not, reserved bits, any opcode and size."""
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


def raw_websocket(port: int, path: str = "/ws/metrics", timeout: float = 30) -> socket.socket:
    """A blocking socket past the handshake, with not one byte of the server's frames read."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: no frame is read
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(f"handshake refused: {head[:40]!r}")
    return sock


@dataclass
class Flood:
    """Writes ``blob`` (whole frames) over and over on a raw WebSocket that never reads, as fast
    as the socket takes it; when the server cuts it off, it connects again and goes on, so the
    pressure stays constant, as in an attack. A thread with blocking sockets, so that it cannot
    slow an event loop. Runs until ``stop`` is set or ``seconds`` have passed."""

    port: int
    blob: bytes = field(repr=False)
    seconds: float = math.inf
    path: str = "/ws/metrics"
    #: A connection that lasts longer than this is an error (and is given up).
    cut_within: float = math.inf
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    connections: int = 0
    sent: int = 0
    cut_after: list[float] = field(default_factory=list)  # per connection the server cut off
    endings: Counter[str] = field(default_factory=Counter)  # how they ended: ConnectionReset...
    last: float = 0.0  # how long the last connection had lasted when the flood ended
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread = field(init=False, repr=False)

    def start(self) -> Self:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def finish(self) -> Self:
        """Stop it and wait for its thread."""
        self.stop.set()
        self.thread.join()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                sock = raw_websocket(self.port, self.path)
            except OSError as exc:
                self.errors.append(f"flooder handshake: {type(exc).__name__}: {exc}")
                self.stop.wait(1)
                continue
            self.connections += 1
            sock.settimeout(0.2)
            start, offset = time.monotonic(), 0
            try:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        n = sock.send(self.blob[offset:] + self.blob[:offset])  # frames in order
                        self.sent += n
                        offset = (offset + n) % len(self.blob)
                    if time.monotonic() - start > self.cut_within:
                        self.errors.append(f"flooder not cut off within {self.cut_within:g} s")
                        break
                self.last = time.monotonic() - start
            except OSError as exc:  # reset, broken pipe: the server dropped it
                self.cut_after.append(time.monotonic() - start)
                self.endings[type(exc).__name__] += 1
            finally:
                sock.close()


# --------------------------------------------------------------------------- reference server


async def _refserve(port: int, interval: float, payload: str, deflate: bool) -> None:
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
