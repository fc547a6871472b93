"""The live view's line chart: the samples as a braille line over round ticks, named by the
local times of the first and last sample, readable however few or flat the samples are."""

from __future__ import annotations

from dataclasses import replace

import pytest

from metrics_protocol.wire import Metrics
from metrics_tui.app import MetricsApp
from metrics_tui.messages import ConnectionChanged, ConnState, HistoryReceived, Status
from metrics_tui.widgets.charts import TrendChart
from metrics_tui.widgets.range_chart import RangeChart

from .test_snapshots import HISTORY, NOW, URL


def clock(m: Metrics) -> str:
    return m.timestamp.astimezone().strftime("%H:%M:%S")


async def drawn(history: list[Metrics], size: tuple[int, int] = (80, 24)) -> list[str]:
    """The users chart's lines once ``history`` is the live view's samples."""
    app = MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False)
    async with app.run_test(size=size) as pilot:
        app.post_message(ConnectionChanged(Status(ConnState.LIVE)))
        app.post_message(HistoryReceived(history, 5.0))
        await pilot.pause()
        plot = app.screen.query_one("#users-chart", TrendChart).query_one(RangeChart)
        assert plot.display and plot._kind == "line"
        return [plot.render_line(y).text for y in range(plot.size.height)]


def dots(lines: list[str]) -> list[int]:
    """The rows holding braille dots."""
    return [y for y, line in enumerate(lines) if any("\u2800" < c <= "\u28ff" for c in line)]


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (40, 36)])
async def test_the_ends_are_named_by_local_time_inside_the_chart(size: tuple[int, int]) -> None:
    lines = await drawn(HISTORY, size)
    width = len(lines[0])
    assert lines[-1].split() == [clock(HISTORY[0]), clock(HISTORY[-1])]
    assert len(lines[-1].rstrip()) <= width
    ticks = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    assert len(ticks) >= 3 and all(int(t) % 5 == 0 for t in ticks)  # round, whole users
    assert dots(lines)


async def test_a_single_sample_is_one_dot_on_its_own_tick() -> None:
    lines = await drawn(HISTORY[:1])
    users = HISTORY[0].active_users
    assert users is not None
    (row,) = dots(lines)
    assert lines[row].split("┤")[0].strip() == str(users.current)
    assert lines[-1].split() == [clock(HISTORY[0])]


async def test_equal_samples_are_a_flat_line_on_their_tick() -> None:
    flat = [replace(m, active_users=HISTORY[0].active_users) for m in HISTORY]
    lines = await drawn(flat)
    users = HISTORY[0].active_users
    assert users is not None
    (row,) = dots(lines)
    assert lines[row].split("┤")[0].strip() == str(users.current)
    assert 0 < row < len(lines) - 3  # in the middle, not on an edge
