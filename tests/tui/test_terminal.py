"""The monitor exits when its terminal goes away instead of spinning (ssh drop, tmux kill)."""

from __future__ import annotations

import signal

import psutil
import pytest

from .conftest import Pty, free_port


def monitor_in_pty() -> Pty:
    """A monitor that has drawn its first screen (Connecting, or already Reconnecting)."""
    term = Pty("--url", f"ws://127.0.0.1:{free_port()}/ws/metrics")
    term.read_until(b"onnecting", within=20)
    return term


def test_sighup_exits() -> None:
    term = monitor_in_pty()
    try:
        term.proc.send_signal(signal.SIGHUP)
        assert term.wait_exit(10) is not None, "monitor kept running after SIGHUP"
    finally:
        term.close()


def test_closed_terminal_exits_without_spinning() -> None:
    term = monitor_in_pty()
    ps = psutil.Process(term.proc.pid)
    # The child has no controlling terminal, so no SIGHUP comes: the hang-up alone must end it.
    term.hang_up()
    try:
        assert term.wait_exit(15) is not None, "monitor kept running after its terminal went away"
        assert not ps.is_running() or ps.status() == psutil.STATUS_ZOMBIE
    finally:
        term.close()


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
