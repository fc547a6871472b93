"""Fixtures of the monitor's tests: a real metrics-server on a free port with a temporary SQLite
store, a fast interval, and a token or TLS where a test asks for them.

``ServerHandle``, ``Cert``, ``free_port`` and ``wait_until`` come from ``bench/_common.py`` (the
harness the benches share) and stay importable from here; the ``cert`` fixture is in
tests/conftest.py."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message

from bench._common import Cert, ServerHandle, free_port, wait_until
from metrics_server.app import ServerConfig
from metrics_tui.messages import ConnectionChanged, ConnState

__all__ = [
    "TOKEN",
    "Cert",
    "Pty",
    "ServerHandle",
    "connection_log",
    "free_port",
    "running",
    "server_config",
    "wait_until",
]

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


def connection_log() -> tuple[list[ConnState], Callable[[Message], None]]:
    """The connection states the app is told of, and the message hook that records them."""
    seen: list[ConnState] = []

    def hook(message: Message) -> None:
        if isinstance(message, ConnectionChanged):
            seen.append(message.status.state)

    return seen, hook


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


class Pty:
    """``metrics-tui *args`` in a pseudo-terminal of ``size``, read as a terminal would.

    The child gets a session of its own (no controlling terminal: it sees no SIGHUP or SIGWINCH
    from the kernel, so ``resize`` sends SIGWINCH as the terminal's owner would).
    """

    def __init__(
        self,
        *args: str,
        size: tuple[int, int] = (80, 24),
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.master, slave = pty.openpty()
        self.resize(size, signal_child=False, fd=slave)
        # shutil.get_terminal_size() (which Textual's driver uses) prefers COLUMNS and LINES
        # over the terminal's own size: with them set, a resize would never be seen.
        base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metrics_tui", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**base, "TERM": "xterm-256color", **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""  # read since the last read_until

    def resize(
        self, size: tuple[int, int], *, signal_child: bool = True, fd: int | None = None
    ) -> None:
        width, height = size
        winsize = struct.pack("HHHH", height, width, 0, 0)
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, winsize)
        if signal_child:
            self.proc.send_signal(signal.SIGWINCH)

    def _read(self, wait: float) -> bool:
        """Read what is there within ``wait`` s; False once the child has closed the terminal."""
        if select.select([self.master], [], [], wait)[0]:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                return False
        return True

    def read_until(self, marker: bytes, within: float = 10.0, quiet: float = 0.0) -> bytes:
        """Read until ``marker`` appears in what was drawn since the last call (and then until
        the screen has been still for ``quiet`` s); returns all of that."""
        deadline = time.monotonic() + within
        while marker not in self.output and (left := deadline - time.monotonic()) > 0:
            if not self._read(min(left, 0.1)):
                break  # the child closed the terminal
        assert marker in self.output, f"no {marker!r} within {within}s: {self.output[-300:]!r}"
        while quiet and time.monotonic() < deadline:
            before = len(self.output)
            if not self._read(quiet) or len(self.output) == before:
                break
        seen, self.output = self.output, b""
        return seen

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def hang_up(self) -> None:
        """Close the terminal, as an ssh drop or a killed tmux pane does."""
        os.close(self.master)
        self.master = -1

    def wait_exit(self, within: float = 10.0) -> int | None:
        """Its exit code, or None if it still runs after ``within`` s; output is drained
        meanwhile, or its last writes could block."""
        deadline = time.monotonic() + within
        while self.proc.poll() is None and time.monotonic() < deadline:
            if self.master < 0 or not self._read(0.05):
                time.sleep(0.05)
        return self.proc.poll()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


#: The zone of the ``range_server`` fixture: its days are Paris days.
RANGE_ZONE = "Europe/Paris"


def past_traffic(now: float) -> list[dict[str, Any]]:
    """A sale and a visitor a day for 400 days, four an hour over the last 26 hours and one a
    minute over the last two, dated in the past: every range key has something to draw."""
    events: list[dict[str, Any]] = []
    stamps = [now - 86400 * d - 3600 * (d % 9) for d in range(1, 400)]
    stamps += [now - 900 * q - 60 * (q % 7) for q in range(1, 26 * 4)]
    stamps += [now - 60 * m - 17 for m in range(1, 120)]
    for n, ts in enumerate(stamps):
        user = f"u{n % 37}"
        cents = 500 + (n * 7919) % 40_000
        events.append({"type": "user_activity", "userId": user, "ts": ts})
        events.append(
            {
                "type": "transaction",
                "id": f"t{n}",
                "status": "failed" if n % 11 == 0 else "completed",
                "amount": f"{cents // 100}.{cents % 100:02d}",
                "userId": user,
                "ts": ts,
            }
        )
        events.append({"type": "content_view", "contentId": f"c{n % 5}", "ts": ts})
    return events


def history_requests(server: ServerHandle, status: int = 200) -> int:
    """Answers of the REST range route so far with ``status`` (the server's own counter)."""
    from metrics_protocol.wire import HISTORY_PATH

    return server.service.telemetry.http.get((HISTORY_PATH, status), 0)


@pytest.fixture
async def range_server(tmp_path: Path) -> AsyncIterator[ServerHandle]:
    """A real server in Paris time that answers range requests, with 400 days of traffic."""
    cfg = server_config(tmp_path, tz=RANGE_ZONE)
    async for handle in running(ServerHandle(cfg)):
        events = past_traffic(time.time())
        for i in range(0, len(events), 900):
            await handle.service.ingest(events[i : i + 900])
        yield handle
