"""What an update costs on screen: no layout pass, one chart build per point, a short count-up,
and no repaint of the status line when its text has not changed (docs/PERFORMANCE.md, 7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from metrics_tui.app import MetricsApp
from metrics_tui.messages import (
    MetricsUpdated,
)
from metrics_tui.widgets.cards import MetricCard
from metrics_tui.widgets.charts import TrendChart
from metrics_tui.widgets.range_chart import RangeChart

from .conftest import wait_until
from .test_snapshots import HISTORY, LATEST, NOW, URL, feed_live

NEXT = replace(
    LATEST,
    timestamp=LATEST.timestamp + timedelta(seconds=5),
    revenue=replace(LATEST.revenue, total=LATEST.revenue.total + Decimal("1000.25")),  # type: ignore[arg-type]
)


def counting(calls: list[int], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapper


async def feed(pilot: Pilot) -> None:
    await feed_live(pilot)
    await pilot.pause(0.4)  # count-ups end


def chart_text(plot: RangeChart) -> str:
    return "\n".join(plot.render_line(y).text for y in range(plot.size.height))


def chart_plot(app: MetricsApp, chart_id: str) -> RangeChart:
    return app.screen.query_one(chart_id, TrendChart).query_one(RangeChart)


async def test_an_update_needs_no_layout_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    app = MetricsApp(URL, clock=lambda: NOW, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        layouts: list[int] = []
        monkeypatch.setattr(Screen, "_refresh_layout", counting(layouts, Screen._refresh_layout))
        app.post_message(MetricsUpdated(NEXT, "interval", 5.0))  # new point, titles, count-up
        await pilot.pause(0.5)
        assert app.screen.query_one("#revenue", MetricCard).shown["total"] == NEXT.revenue.total  # type: ignore[union-attr]
        assert layouts == []


async def test_the_line_chart_is_built_once_per_point() -> None:
    app = MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        plot = chart_plot(app, "#revenue-chart")
        before = chart_text(plot)
        builds: list[int] = []
        plot._build = counting(builds, plot._build)  # type: ignore[method-assign]
        plot.refresh()  # repainted for another reason: the kept strips are reused
        app.post_message(MetricsUpdated(LATEST, "change", 5.0))  # not a chart point
        await pilot.pause()
        assert builds == []
        app.post_message(MetricsUpdated(NEXT, "interval", 5.0))
        await pilot.pause()
        assert builds == [1]
        assert chart_text(plot) != before


async def test_first_figures_at_once_then_a_short_count_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = MetricsApp(URL, clock=lambda: NOW, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(MetricsUpdated(LATEST, "change", 5.0))
        await pilot.pause()
        card = app.screen.query_one("#revenue", MetricCard)
        assert card.shown["total"] == LATEST.revenue.total  # type: ignore[union-attr]
        frames: list[int] = []
        monkeypatch.setattr(card, "_step", counting(frames, card._step))
        app.post_message(MetricsUpdated(NEXT, "change", 5.0))
        await wait_until(lambda: card.shown == card.targets and bool(frames), what="count-up")
        assert card.shown["total"] == NEXT.revenue.total  # type: ignore[union-attr]
        assert len(frames) <= 8


async def test_status_line_repaints_only_when_its_text_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [NOW]
    app = MetricsApp(URL, clock=lambda: now[0], animate=False, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        line = app.status_line
        repaints: list[int] = []
        monkeypatch.setattr(line, "refresh", counting(repaints, line.refresh))
        app._tick()  # same second: "updated 0s ago" again
        assert repaints == []
        now[0] += 1.0
        app._tick()
        assert repaints == [1]
        await pilot.pause()
        assert "updated 1s ago" in str(line.render())


async def test_an_update_a_second_later_does_not_repaint_an_unchanged_status_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both ends of the age move on an update: the line still reads "updated 0s ago"."""
    now = [NOW]
    app = MetricsApp(URL, clock=lambda: now[0], animate=False, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        line = app.status_line
        repaints: list[int] = []
        monkeypatch.setattr(line, "refresh", counting(repaints, line.refresh))
        now[0] += 1.0
        app.post_message(MetricsUpdated(NEXT, "interval", 5.0))
        await pilot.pause()
        assert app.latest is NEXT
        assert repaints == []
        assert "updated 0s ago" in str(line.render())


async def test_a_hidden_line_chart_takes_points_without_a_repaint_and_draws_them_when_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False)
    async with app.run_test(size=(60, 20)) as pilot:  # sparklines: the line chart is hidden
        await feed(pilot)
        plot = chart_plot(app, "#revenue-chart")
        assert not plot.display
        repaints: list[int] = []
        monkeypatch.setattr(plot, "refresh", counting(repaints, plot.refresh))
        app.post_message(MetricsUpdated(NEXT, "interval", 5.0))
        await pilot.pause()
        assert plot._values[-1] == float(NEXT.revenue.total)  # type: ignore[union-attr]
        assert repaints == []
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert plot.display and repaints
        ends = [
            stamp.astimezone().strftime("%H:%M:%S")
            for stamp in (HISTORY[1].timestamp, NEXT.timestamp)
        ]
        assert chart_text(plot).splitlines()[-1].split() == ends


async def test_the_same_points_again_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    app = MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        chart = app.screen.query_one("#revenue-chart", TrendChart)
        plot = chart.query_one(RangeChart)
        repaints: list[int] = []
        monkeypatch.setattr(plot, "refresh", counting(repaints, plot.refresh))
        values = [float(m.revenue.total) for m in HISTORY]  # type: ignore[union-attr]
        chart.set_points(values, [m.timestamp for m in HISTORY])
        assert repaints == []
