"""The status line tells the truth: a frozen server, a wrong path, the producers' endpoint, an
interval nobody stated, and a narrow pane."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from bench._common import ServerProcess
from metrics_tui import formatting
from metrics_tui.app import MetricsApp
from metrics_tui.client import MetricsClient
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    Status,
)
from metrics_tui.policy import Failure, Outcome, after_failure, first_message_problem, keepalive
from metrics_tui.widgets.status import Part, fit, status_parts
from metrics_tui.wire import NoAnswer, NotMetricsFeed, fetch_once

from .conftest import ServerHandle, running, server_config, wait_until
from .test_fallback import UpgradeBlockingProxy
from .test_snapshots import HISTORY, LATEST


def fitted(parts: Sequence[Part], width: int) -> tuple[list[str], str]:
    """What ``fit`` keeps of each part, and the line that makes (separators between)."""
    chosen = fit(parts, width)
    line = "".join(
        (p.sep if any(chosen[:i]) else "") + c
        for i, (p, c) in enumerate(zip(parts, chosen, strict=True))
        if c
    )
    return chosen, line


class Recorder:
    """A MetricsClient's ``post``: keeps every message, for the test to look at."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, message: Any) -> None:
        self.messages.append(message)

    @property
    def statuses(self) -> list[Status]:
        return [m.status for m in self.messages if isinstance(m, ConnectionChanged)]

    @property
    def status(self) -> Status | None:
        return self.statuses[-1] if self.statuses else None

    @property
    def updates(self) -> list[MetricsUpdated]:
        return [m for m in self.messages if isinstance(m, MetricsUpdated)]


@contextlib.asynccontextmanager
async def client_running(url: str) -> AsyncIterator[tuple[MetricsClient, Recorder]]:
    rec = Recorder()
    client = MetricsClient(url, rec)
    task = asyncio.create_task(client.run())
    try:
        yield client, rec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --------------------------------------------------------------------------- a frozen server


@pytest.fixture
def server_process(
    tmp_path: Path, db_path: Path, free_port: int, cli_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """``metrics-server --interval 1`` in a subprocess; resumed and killed after the test."""
    flags = ["--port", str(free_port), "--db", str(db_path), "--interval", "1"]
    with ServerProcess(free_port, *flags, env=cli_env, cwd=tmp_path) as server:
        try:
            yield server
        finally:
            server.proc.send_signal(signal.SIGCONT)


async def test_a_frozen_server_says_no_answer_within_two_intervals(
    server_process: ServerProcess,
) -> None:
    proc, port = server_process.proc, server_process.port
    await server_process.ready()
    async with client_running(f"ws://127.0.0.1:{port}/ws/metrics") as (client, rec):
        await wait_until(
            lambda: client.status.state is ConnState.LIVE and client.interval == 1.0,
            what="live, with the server's interval",
        )
        # Right after a sample: the worst case, a whole quiet period before the probe.
        seen = len(rec.updates)
        await wait_until(lambda: len(rec.updates) > seen, what="an update")
        proc.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        bound = keepalive(1.0).bound  # 2 s quiet + 2 s for the pong
        await wait_until(
            lambda: client.status.state is not ConnState.LIVE,
            within=bound + 1.5,
            what="the status to leave Live",
        )
        took = time.monotonic() - frozen_at
        left = client.status
        assert left.state is ConnState.RECONNECTING, left
        assert left.detail.startswith("no answer"), left
        assert took >= 1.0  # not a false alarm before a sample was even due
        proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: client.status.state is ConnState.LIVE, what="live again")


async def test_a_quiet_healthy_server_is_no_false_alarm(server: ServerHandle) -> None:
    """No samples at all, but it answers pings: stays Live, on one connection."""
    async with client_running(server.url) as (client, rec):
        await wait_until(lambda: client.status.state is ConnState.LIVE and bool(rec.updates))
        await server.service.stop_metrics_updates()
        quiet = keepalive(server.cfg.interval)
        await asyncio.sleep(quiet.bound + 1.0)  # long enough to be declared dead if it were
        assert [s.state for s in rec.statuses] == [ConnState.LIVE]
        assert client.attempts == 1


def test_keepalive_timing_matches_the_interval() -> None:
    five = keepalive(5.0)
    assert five.quiet > 5.0  # a sample is due every 5 s: no probe before it is late
    assert 10.0 <= five.bound <= 12.0  # "no answer" within about two intervals
    assert keepalive(2.0).bound <= 5.0
    assert keepalive(0.2).pong_wait >= 2.0  # a fast server on a busy machine: no false alarm
    assert keepalive(3600.0).bound <= 41.0  # a slow server is still asked twice a minute


# --------------------------------------------------------------------------- wrong URLs


async def test_a_wrong_path_says_not_found_and_does_not_poll(server: ServerHandle) -> None:
    url = server.url.replace("/ws/metrics", "/ws/metricz")
    async with client_running(url) as (client, rec):
        await wait_until(lambda: "not found (404)" in client.status.detail, what="a 404")
        assert client.status.state is ConnState.WRONG_URL
        assert client.status.detail == "not found (404): check --url"
        await asyncio.sleep(0.5)  # a REST poll would have answered by now (the route works)
        assert rec.updates == []
        assert ConnState.POLLING not in {s.state for s in rec.statuses}
    app = MetricsApp(url, animate=False)
    async with app.run_test(size=(80, 24)):
        await wait_until(lambda: app.status.state is ConnState.WRONG_URL, what="wrong URL")
        await wait_until(lambda: "not found (404): check --url" in str(app.status_line.render()))


async def test_the_ingest_path_is_refused_before_connecting(server: ServerHandle) -> None:
    url = server.url.replace("/ws/metrics", "/ws/ingest")
    async with client_running(url) as (client, rec):
        await wait_until(lambda: "not a metrics feed" in client.status.detail, within=1.0)
        assert client.status.state is ConnState.WRONG_URL
        assert client.status.detail.endswith("not a metrics feed: check --url")
        assert client.attempts == 0 and rec.updates == []


@pytest.mark.parametrize("path", ["/ws/metricz", "/ws/ingest"])
async def test_once_refuses_a_wrong_url_instead_of_asking_rest(
    server: ServerHandle, path: str
) -> None:
    """REST at the host's root works, and would answer for a URL the user did not give."""
    with pytest.raises(ConnectionError, match="check --url"):
        await fetch_once(server.url.replace("/ws/metrics", path), None, wait=2.0)


class PathRewritingProxy(UpgradeBlockingProxy):
    """Forwards everything, with the request path replaced: a proxy that maps a feed URL onto
    the producers' endpoint, which the monitor cannot tell from the path it was given."""

    def __init__(self, upstream_port: int, old: bytes, new: bytes) -> None:
        super().__init__(upstream_port)
        self.old, self.new = old, new

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_w.write(head.replace(self.old, self.new, 1))
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_the_producers_endpoint_behind_a_proxy_is_named_at_once(
    server: ServerHandle,
) -> None:
    proxy = PathRewritingProxy(server.port, b"GET /feed ", b"GET /ws/ingest ")
    port = await proxy.start()
    try:
        async with client_running(f"ws://127.0.0.1:{port}/feed") as (client, rec):
            await wait_until(lambda: "not a metrics feed" in client.status.detail, within=2.0)
            assert client.status.state is ConnState.WRONG_URL
            assert client.status.detail == "a producers' endpoint, not a metrics feed: check --url"
            assert client.attempts == 1 and rec.updates == []
    finally:
        await proxy.stop()


# --------------------------------------------------------------------------- the interval


async def test_no_interval_is_shown_before_the_server_states_it() -> None:
    app = MetricsApp("ws://127.0.0.1:9/ws/metrics", connect=False, animate=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "every" not in str(app.status_line.render())
        app.post_message(HistoryReceived(HISTORY, 2.0))
        await pilot.pause()
        assert "every 2s" in str(app.status_line.render())


@pytest.fixture
async def server_every_2s(tmp_path: Path) -> AsyncIterator[ServerHandle]:
    async for handle in running(ServerHandle(server_config(tmp_path, interval=2.0))):
        yield handle


async def test_polling_shows_the_interval_the_server_states(server_every_2s: ServerHandle) -> None:
    proxy = UpgradeBlockingProxy(server_every_2s.port)
    port = await proxy.start()
    try:
        app = MetricsApp(f"ws://127.0.0.1:{port}/ws/metrics", animate=False)
        async with app.run_test(size=(80, 24)):
            await wait_until(lambda: app.status.state is ConnState.POLLING, what="polling")
            await wait_until(lambda: app.latest is not None, what="a REST snapshot")
            await wait_until(lambda: "every 2s" in str(app.status_line.render()))
            assert "every 5s" not in str(app.status_line.render())
    finally:
        await proxy.stop()


# --------------------------------------------------------------------------- a narrow pane


@pytest.mark.parametrize(("width", "height"), [(80, 24), (60, 20), (40, 15)])
async def test_the_age_survives_a_narrow_pane(width: int, height: int) -> None:
    now = [1000.0]
    app = MetricsApp(
        "ws://127.0.0.1:3200/ws/metrics", clock=lambda: now[0], connect=False, animate=False
    )
    async with app.run_test(size=(width, height)) as pilot:
        app.post_message(ConnectionChanged(Status(ConnState.LIVE)))
        app.post_message(HistoryReceived(HISTORY, 5.0))
        app.post_message(MetricsUpdated(LATEST, "change", 5.0))
        await pilot.pause()
        now[0] += 65.0  # a minute offline
        status = Status(
            ConnState.RECONNECTING,
            attempt=8,
            retry_at=now[0] + 16,
            detail="connection refused 127.0.0.1:3200",
        )
        app.post_message(ConnectionChanged(status))
        await pilot.pause()
        line = str(app.status_line.render())
        assert line.startswith("Reconnecting"), line
        assert "1m05s" in line, line
        assert len(line) <= width - 2, line  # inside the padding
        if width >= 80:
            assert "in 16s" in line and "stale" in line and "connection refused" in line, line


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(ConnState),
    attempt=st.integers(0, 120),
    wait=st.floats(0, 3600),
    detail=st.text(st.characters(codec="ascii", categories=["L", "N", "P", "Zs"]), max_size=90),
    age=st.floats(0, 40 * 86400),
    stale=st.booleans(),
    interval=st.none() | st.floats(0.1, 3600),
    paused=st.booleans(),
    insecure=st.booleans(),
    width=st.integers(38, 200),
)
def test_every_line_fits_and_keeps_the_age(
    state: ConnState,
    attempt: int,
    wait: float,
    detail: str,
    age: float,
    stale: bool,
    interval: float | None,
    paused: bool,
    insecure: bool,
    width: int,
) -> None:
    """From 40 columns (38 inside the padding) up, whatever the state: it fits, and the age of
    the figures on screen is on it."""
    status = Status(state, attempt, 1000.0 + wait, detail)
    parts = status_parts(
        status,
        1000.0,
        age=age,
        stale=stale,
        interval=interval,
        paused=paused,
        shown_at=datetime(2025, 11, 4, 10, 30, tzinfo=UTC) if paused else None,
        insecure=insecure,
    )
    chosen, line = fitted(parts, width)
    assert cell_len(line) <= width, line
    assert formatting.age(age) in line, line
    assert chosen[0], line  # the state word
    if paused:
        assert "PAUSED" in line


def test_a_reason_is_cut_before_it_is_dropped() -> None:
    parts = [
        Part(("Reconnecting",)),
        Part(("connection refused 127.0.0.1:3200", ""), (70,), elastic=True),
    ]
    assert fit(parts, 48) == ["Reconnecting", "connection refused 127.0.0.1:3200"]
    assert fit(parts, 40) == ["Reconnecting", "connection refused 127.0…"]
    assert fit(parts, 24) == ["Reconnecting", ""]  # "connecti…" would say nothing


# --------------------------------------------------------------------------- the policy


def test_failures_are_classified_without_sockets() -> None:
    def refused(code: int) -> InvalidStatus:
        return InvalidStatus(Response(code, "x", Headers()))

    assert after_failure(refused(404)) == Failure(Outcome.WRONG_URL, "not found (404): check --url")
    assert after_failure(refused(401)).outcome is Outcome.UNAUTHORIZED
    assert after_failure(refused(403)) == Failure(Outcome.RETRY, "HTTP 403")  # REST may help
    assert after_failure(NoAnswer("no answer for 11s")) == Failure(
        Outcome.RETRY, "no answer for 11s"
    )
    assert after_failure(NotMetricsFeed("x: check --url")).outcome is Outcome.WRONG_URL
    assert after_failure(ConnectionRefusedError()).outcome is Outcome.RETRY


def test_the_first_message_tells_a_metrics_feed() -> None:
    assert first_message_problem({"type": "history", "data": []}) is None
    assert first_message_problem({"type": "metrics", "data": {}}) is None
    ingest = {
        "type": "error",
        "error": {
            "code": "unknown_type",
            "message": "unknown message type 'subscribe'; expected events",
        },
    }
    assert first_message_problem(ingest) == "a producers' endpoint, not a metrics feed: check --url"
    assert "not a metrics feed" in (first_message_problem({"type": "hello"}) or "")
    assert "not a metrics feed" in (first_message_problem([1, 2]) or "")
