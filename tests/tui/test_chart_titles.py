"""Chart titles beside the cards: the chart plots interval samples, the card every change."""

from __future__ import annotations

from datetime import datetime, timedelta

from metrics_tui import formatting
from metrics_tui.app import MetricsApp
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    Status,
)
from metrics_tui.widgets.charts import TrendChart, chart_title

from .test_snapshots import HISTORY, LATEST


async def test_chart_titles_do_not_contradict_the_cards() -> None:
    """The chart's last sample (HISTORY[-1]) is older than the card's figure (LATEST)."""
    assert HISTORY[-1].revenue != LATEST.revenue
    app = MetricsApp("ws://127.0.0.1:9/ws/metrics", connect=False, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.post_message(ConnectionChanged(Status(ConnState.LIVE)))
        app.post_message(HistoryReceived(HISTORY, 5.0))
        app.post_message(MetricsUpdated(LATEST, "change", 5.0))
        await pilot.pause()
        span = formatting.age((HISTORY[-1].timestamp - HISTORY[0].timestamp).total_seconds())
        titles = {
            chart.id: str(chart.query_one(".chart-title").render())
            for chart in app.screen.query(TrendChart)
        }
        assert titles == {
            "revenue-chart": f"Revenue · last {span}",
            "users-chart": f"Active users · last {span}",
        }


def test_a_chart_title_names_the_span_of_its_samples() -> None:
    t0 = datetime(2025, 11, 4, 10, 0)
    assert chart_title("Revenue", []) == "Revenue · waiting for data"
    assert chart_title("Revenue", [t0]) == "Revenue"
    assert chart_title("Revenue", [t0, t0 + timedelta(seconds=95)]) == "Revenue · last 1m35s"


def test_a_span_jittered_by_the_servers_timer_keeps_one_title() -> None:
    """Samples a second apart span 18.998 s or 19.002 s: one title, not "18s" then "19s" (a
    title that flips is a repaint for nothing, and reads as if the window changed)."""
    t0 = datetime(2025, 11, 4, 10, 0)
    titles = {
        chart_title("Revenue", [t0, t0 + timedelta(seconds=19, milliseconds=ms)])
        for ms in (-3, -1, 0, 2, 4)
    }
    assert titles == {"Revenue · last 19s"}
