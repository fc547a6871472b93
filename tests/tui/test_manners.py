"""Terminal manners: NO_COLOR means no colour, TERM=dumb is refused, a token never shows in a
message, and ``--once`` gives up on a server that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.filter import Monochrome, NoColor

from metrics_tui.app import MetricsApp
from metrics_tui.colourless import Colourless

from .conftest import Cert, Pty, ServerHandle, free_port, running, server_config
from .test_fallback import UpgradeBlockingProxy

# ---------------------------------------------------------------------- NO_COLOR

#: SGR parameters that set a colour: 30-39 / 40-49 (38 and 48 take 5;n or 2;r;g;b), 90-107.
COLOUR_PARAMS = {*range(30, 50), *range(90, 98), *range(100, 108)}


def colour_codes(output: bytes) -> list[str]:
    """Every SGR sequence in a terminal stream that sets a foreground or background colour."""
    found = []
    for params in re.findall(rb"\x1b\[([0-9;:]*)m", output):
        numbers = [int(p) for p in re.split(rb"[;:]", params) if p]
        if COLOUR_PARAMS & set(numbers):
            found.append(params.decode())
    return found


def run_in_pty(args: list[str], env: dict[str, str], cwd: Path, until: bytes) -> bytes:
    """The bytes the monitor writes to a real terminal of 80x24 until ``until`` has come and
    the screen has been quiet for a moment; then it is ended."""
    term = Pty(*args, env=env, cwd=cwd)
    try:
        return term.read_until(until, within=20, quiet=0.3)
    finally:
        term.press(b"q")  # so that --demo removes its temporary database; a kill only if not
        term.wait_exit(10)
        term.close()


def test_no_color_draws_without_any_colour_code(tmp_path: Path) -> None:
    """The whole dashboard with figures, in a 24-bit terminal: bold stays, colour goes."""
    env = {"NO_COLOR": "1", "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    out = run_in_pty(["--demo"], env, tmp_path, until=b"Revenue")
    assert re.search(rb"\$[0-9][0-9,.]*", out), "no figures drawn"
    assert colour_codes(out) == []
    assert b"\x1b[1m" in out  # emphasis survives
    # And without NO_COLOR the same check sees colour: it is not blind.
    env.pop("NO_COLOR")
    out = run_in_pty(["--demo"], env, tmp_path, until=b"Revenue")
    assert colour_codes(out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("theme", [None, "ansi-dark", "textual-light"])
def test_no_color_filter_for_every_theme(monkeypatch: pytest.MonkeyPatch, theme: str) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = MetricsApp("ws://127.0.0.1:1/ws/metrics", theme=theme, connect=False)
    filters = [f for f in app._filters if isinstance(f, NoColor | Monochrome | Colourless)]
    assert [type(f) for f in filters] == [Colourless]
    style = Style(color="grey50", bgcolor="#121212", bold=True, dim=True)
    [segment] = filters[0].apply([Segment("x", style)], Color(0, 0, 0))
    assert segment.style == Style(bold=True, dim=True)


# ---------------------------------------------------------------------- TERM=dumb


def test_term_dumb_is_refused_with_one_line_naming_once(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    done = subprocess.run(
        [sys.executable, "-m", "metrics_tui", "--url", url],
        env={**env, "TERM": "dumb"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "--once" in done.stderr, done.stderr
    # --once itself has nothing to draw and still works there (here: nothing listens).
    done = subprocess.run(
        [sys.executable, "-m", "metrics_tui", "--url", url, "--once"],
        env={**env, "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 1 and "cannot get metrics" in done.stderr


# ---------------------------------------------------------------------- tokens

#: Every part of these tokens is marked, so a leak of any fragment shows.
BAD_TOKENS = [
    "tokALPHA\ntokBRAVO",  # the reported case: websockets quoted "Bearer tokALPHA"
    "tokALPHA\r\nX-Injected: tokBRAVO",
    "tokALPHA\ttokBRAVO",
    "tokALPHA\x7ftokBRAVO",
    "tokALPHAé-tokBRAVO",  # httpx (REST) sends ASCII only
    "tokALPHA\u2028tokBRAVO",
]
#: Tokens that can be sent but are refused by the server.
WRONG_TOKENS = ["tokALPHA tokBRAVO", "tokALPHA-tokBRAVO"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    return subprocess.run(
        [sys.executable, "-m", "metrics_tui", *args],
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_no_token(text: str) -> None:
    assert "ALPHA" not in text and "BRAVO" not in text, text


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_unsendable_token_is_a_usage_error_that_does_not_show_it(token: str) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    for args, env in [
        (["--once", "--token", token], None),
        (["--token", token], None),  # the monitor
        (["--once"], {"METRICS_TOKEN": token}),
    ]:
        done = run_cli("--url", url, *args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert "HTTP header" in done.stderr
        assert_no_token(done.stdout + done.stderr)


def test_a_token_in_the_url_is_not_shown_in_usage_errors() -> None:
    for url in ("http://127.0.0.1:1/ws/metrics?token=tokALPHA", "ws://h:99999/x?token=tokBRAVO"):
        done = run_cli("--url", url, "--once")
        assert done.returncode == 2, done.stderr
        assert "127.0.0.1" in done.stderr or "h:99999" in done.stderr
        assert_no_token(done.stderr)


@pytest.mark.parametrize("token", WRONG_TOKENS)
async def test_refused_token_is_not_shown(token_server: ServerHandle, token: str) -> None:
    done = await asyncio.to_thread(run_cli, "--once", "--url", token_server.url, "--token", token)
    assert done.returncode == 1 and "unauthorized" in done.stderr.lower()
    assert_no_token(done.stdout + done.stderr)


async def test_refused_token_over_rest_is_not_shown(token_server: ServerHandle) -> None:
    """A proxy that blocks upgrades: --once falls back to REST, which refuses the token."""
    proxy = UpgradeBlockingProxy(token_server.port)
    port = await proxy.start()
    try:
        url = f"ws://127.0.0.1:{port}/ws/metrics?token=tokALPHA"
        done = await asyncio.to_thread(run_cli, "--once", "--url", url, "--token", "tokBRAVO x")
        assert done.returncode == 1 and "unauthorized" in done.stderr.lower()
        assert_no_token(done.stdout + done.stderr)
    finally:
        await proxy.stop()


async def test_tls_failure_does_not_show_the_token(tls_server: ServerHandle, cert: Cert) -> None:
    url = tls_server.url + "?token=tokALPHA"
    done = await asyncio.to_thread(run_cli, "--once", "--url", url, "--token", "tokBRAVO x")
    assert done.returncode == 1 and "certificate verify failed" in done.stderr
    assert_no_token(done.stdout + done.stderr)


def test_dead_url_does_not_show_the_token() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics?token=tokALPHA"
    done = run_cli("--once", "--url", url, "--token", "tokBRAVO x")
    assert done.returncode == 1 and "cannot get metrics" in done.stderr
    assert_no_token(done.stdout + done.stderr)


async def test_right_token_with_a_space_works(tmp_path: Path) -> None:
    async for srv in running(ServerHandle(server_config(tmp_path, token="a b c"))):
        done = await asyncio.to_thread(
            run_cli, "--once", "--json", "--url", srv.url, "--token", "a b c"
        )
        assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------- --once --timeout


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A real socket that accepts every connection and never says a word."""
    held: list[socket.socket] = []
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(0.05)

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    held.append(srv.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield srv.getsockname()[1]
        finally:
            stop.set()
            thread.join()
            for conn in held:
                conn.close()


def test_once_gives_up_on_a_silent_server_after_timeout() -> None:
    with silent_server() as port:
        url = f"ws://127.0.0.1:{port}/ws/metrics?token=tokALPHA"
        started = time.monotonic()
        done = run_cli("--once", "--url", url, "--timeout", "1", "--token", "tokBRAVO")
        took = time.monotonic() - started
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"metrics-tui: no answer from {url.partition('?')[0]} within 1 s\n"
    assert took < 1 + 4  # the timeout plus an interpreter's start on a loaded machine
    assert_no_token(done.stderr)


def test_timeout_usage_errors() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    for args in (["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "nan"], ["--timeout", "x"]):
        done = run_cli("--url", url, "--once", *args)
        assert done.returncode == 2, args
    done = run_cli("--url", url, "--timeout", "3")
    assert done.returncode == 2 and "--timeout needs --once" in done.stderr
    done = run_cli("--help")
    assert "--timeout" in done.stdout and "default 5" in done.stdout
