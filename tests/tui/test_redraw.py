"""One redraw mechanism: the app's reactives, followed by the dashboard's widgets.

A widget the dashboard cannot find is an error, not a blank; nothing is drawn into a screen
that is gone; and a value set again to what it was redraws nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.css.query import NoMatches
from textual.widget import Widget

from metrics_tui.app import MetricsApp
from metrics_tui.messages import ConnectionChanged, ConnState, MetricsUpdated, Status
from metrics_tui.widgets.cards import MetricCard
from metrics_tui.widgets.charts import TrendChart
from metrics_tui.widgets.status import StatusLine

from .test_repaints import NEXT, counting, feed
from .test_snapshots import LATEST, NOW, URL


@pytest.mark.parametrize(("kind", "old"), [(MetricCard, "users"), (TrendChart, "users-chart")])
async def test_a_renamed_widget_id_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, kind: type[Widget], old: str
) -> None:
    init = kind.__init__

    def renamed(self: Widget, *args: Any, id: str | None = None, **kwargs: Any) -> None:
        init(self, *args, id="renamed" if id == old else id, **kwargs)  # type: ignore[misc]

    monkeypatch.setattr(kind, "__init__", renamed)
    app = MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False)
    with pytest.raises(NoMatches):
        async with app.run_test(size=(80, 24)) as pilot:
            await feed(pilot)
            app.post_message(MetricsUpdated(NEXT, "interval", 5.0))
            await pilot.pause()


async def test_the_same_state_again_redraws_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    app = MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        screen = app.screen
        refreshes: list[int] = []
        for widget in [*screen.query(MetricCard), *screen.query(TrendChart), app.status_line]:
            monkeypatch.setattr(widget, "refresh", counting(refreshes, widget.refresh))
        app.post_message(MetricsUpdated(LATEST, "change", 5.0))  # what is on screen already
        app.post_message(ConnectionChanged(Status(ConnState.LIVE)))
        await pilot.pause()
        app._tick()  # the same second
        assert refreshes == []
        app.post_message(MetricsUpdated(NEXT, "change", 5.0))
        await pilot.pause()
        assert refreshes  # a new figure is drawn


async def test_nothing_is_drawn_into_a_screen_that_is_gone() -> None:
    """The shutdown case: state that changes after the dashboard went reaches no widget."""
    now = [NOW]
    app = MetricsApp(URL, clock=lambda: now[0], animate=False, connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(pilot)
        line = app.status_line
        await pilot.press("q")
    assert app.return_code == 0
    assert not app.screen_stack
    drawn = str(line.render())
    now[0] += 120
    app._tick()
    app.on_metrics_updated(MetricsUpdated(NEXT, "interval", 5.0))
    app.on_connection_changed(ConnectionChanged(Status(ConnState.OFFLINE)))
    assert app.stale and app.latest is NEXT  # the state still moves...
    assert line.status.state is ConnState.LIVE  # ...but no widget follows it
    assert str(line.render()) == drawn
    assert isinstance(line, StatusLine)
