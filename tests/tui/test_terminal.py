"""The monitor exits when its terminal goes away instead of spinning (ssh drop, tmux kill)."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import time

import psutil
import pytest

from .conftest import free_port


def spawn_in_pty() -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrics_tui", "--url", f"ws://127.0.0.1:{free_port()}/ws/metrics"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    # Wait until it has drawn something, i.e. the app is up.
    deadline = time.monotonic() + 20
    seen = b""
    while b"Connecting" not in seen and b"Reconnecting" not in seen:
        assert time.monotonic() < deadline, seen[-500:]
        try:
            seen += os.read(master, 65536)
        except OSError:
            break
    return proc, master


def drain_until_exit(proc: subprocess.Popen[bytes], master: int | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("monitor kept running after its terminal went away")
        if master is not None:
            with contextlib.suppress(OSError):
                os.read(master, 65536)
        time.sleep(0.05)
    return proc.returncode


def test_sighup_exits() -> None:
    proc, master = spawn_in_pty()
    try:
        proc.send_signal(signal.SIGHUP)
        drain_until_exit(proc, master, 10)
    finally:
        os.close(master)


def test_closed_terminal_exits_without_spinning() -> None:
    proc, master = spawn_in_pty()
    ps = psutil.Process(proc.pid)
    # The child has no controlling terminal, so no SIGHUP comes: the hang-up alone must end it.
    os.close(master)
    code = drain_until_exit(proc, None, 15)
    assert code is not None
    assert not ps.is_running() or ps.status() == psutil.STATUS_ZOMBIE


async def test_hangup_ends_the_process_even_if_shutdown_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shutdown stuck writing to a vanished terminal must not leave the process behind."""
    import threading

    from metrics_tui import app as app_module

    ended = threading.Event()
    codes: list[int] = []
    monkeypatch.setattr(app_module, "HANGUP_GRACE", 0.05)
    monkeypatch.setattr(app_module.os, "_exit", lambda code: (codes.append(code), ended.set()))
    app = app_module.MetricsApp(f"ws://127.0.0.1:{free_port()}/ws/metrics", animate=False)
    async with app.run_test(size=(80, 24)):
        monkeypatch.setattr(app, "exit", lambda *a, **k: None)  # as if shutdown never finished
        app._hangup()
        assert ended.wait(5), "the watchdog did not fire"
    assert codes == [129]
