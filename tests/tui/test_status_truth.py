"""The status line tells the truth: an interval nobody stated, and a narrow pane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

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
from metrics_tui.widgets.status import Part, fit, status_parts

from .test_snapshots import HISTORY, LATEST

STARTUP = 15.0  # a cold interpreter on a loaded machine


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


# --------------------------------------------------------------------------- the interval


async def test_no_interval_is_shown_before_the_server_states_it() -> None:
    app = MetricsApp("ws://127.0.0.1:9/ws/metrics", connect=False, animate=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "every" not in str(app.status_line.render())
        app.post_message(HistoryReceived(HISTORY, 2.0))
        await pilot.pause()
        assert "every 2s" in str(app.status_line.render())


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
    chosen = fit(parts, width)
    line = "".join(
        (p.sep if any(chosen[:i]) else "") + c
        for i, (p, c) in enumerate(zip(parts, chosen, strict=True))
        if c
    )
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
