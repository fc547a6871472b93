"""Pilot tests against a real metrics-server on a free port."""

from __future__ import annotations

from decimal import Decimal

import httpx
from textual.command import CommandPalette
from textual.message import Message
from textual.widgets import Sparkline

from metrics_protocol.wire import REST_METRICS_PATH, decode_data, loads
from metrics_tui.app import CHART_POINTS, MetricsApp
from metrics_tui.messages import ConnState, HistoryReceived
from metrics_tui.screens.help import HelpScreen
from metrics_tui.widgets.cards import MetricCard, card_values
from metrics_tui.widgets.charts import TrendChart
from metrics_tui.widgets.range_chart import RangeChart

from .conftest import ServerHandle, connection_log, free_port, wait_until

EVENTS = [
    {"type": "user_activity", "userId": "u1"},
    {"type": "user_activity", "userId": "u2"},
    {"type": "transaction", "id": "t1", "status": "completed", "amount": "12.50", "userId": "u1"},
    {"type": "transaction", "id": "t2", "status": "completed", "amount": "1200.25", "userId": "u2"},
    {"type": "transaction", "id": "t3", "status": "failed", "amount": "5.00", "userId": "u2"},
    {"type": "transaction", "id": "t4", "status": "pending", "amount": "7.00", "userId": "u1"},
]


async def rest_snapshot(server: ServerHandle):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        r = await http.get(server.http_url + REST_METRICS_PATH)
        r.raise_for_status()
        return decode_data(loads(r.content)["data"])


def card_text(app: MetricsApp, card_id: str) -> str:
    return str(app.screen_stack[0].query_one(f"#{card_id}", MetricCard).render())


def state(app: MetricsApp) -> ConnState:
    return app.status.state


def revenue_total(app: MetricsApp) -> Decimal | None:
    """The total revenue of the app's latest snapshot, if it has one."""
    latest = app.latest
    return None if latest is None or latest.revenue is None else latest.revenue.total


async def test_cards_show_the_servers_figures(server: ServerHandle) -> None:
    await server.service.ingest(EVENTS)
    expected = await rest_snapshot(server)
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=(120, 40)):
        want = card_values(expected)
        screen = app.screen_stack[0]
        await wait_until(
            lambda: all(
                screen.query_one(f"#{cid}", MetricCard).shown == vals for cid, vals in want.items()
            ),
            what="cards to match the server",
        )
        assert want["revenue"]["total"] == Decimal("1212.75")
        assert "$1,212.75" in card_text(app, "revenue")
        tx = card_text(app, "transactions")
        assert "Failed" in tx and tx.rstrip().endswith("1")
        assert "Pending" in tx
        assert "2 ●" in card_text(app, "users")
        assert state(app) is ConnState.LIVE


async def test_charts_hold_twenty_points_right_after_connect(server: ServerHandle) -> None:
    await wait_until(
        lambda: len(server.service.history) == CHART_POINTS, within=20, what="server history"
    )
    histories: list[HistoryReceived] = []

    def hook(message: Message) -> None:
        if isinstance(message, HistoryReceived):
            histories.append(message)

    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await wait_until(lambda: bool(histories), what="history message")
        await pilot.pause()
        assert len(histories[0].snapshots) == CHART_POINTS
        assert len(app.points) == CHART_POINTS
        for chart_id in ("#revenue-chart", "#users-chart"):
            chart = app.screen_stack[0].query_one(chart_id, TrendChart)
            assert len(chart.query_one(Sparkline).data or []) == CHART_POINTS
            plot = chart.query_one(RangeChart)
            assert plot.display and len(plot._values) == CHART_POINTS
        # the server names its sampling interval in the history message
        assert abs(histories[0].interval - server.cfg.interval) < 0.05


async def test_interval_updates_add_points_and_changes_do_not(server: ServerHandle) -> None:
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.latest is not None, what="first snapshot")
        await server.srv.service.stop_metrics_updates()  # type: ignore[union-attr]
        await pilot.pause()
        before = len(app.points)
        await server.service.ingest(EVENTS[:3])
        await wait_until(lambda: revenue_total(app) == Decimal("12.50"), what="change update")
        assert len(app.points) == before
        await server.service.tick()
        await wait_until(lambda: len(app.points) == min(before + 1, 20), what="interval point")


async def test_status_follows_server_stop_and_restart(server: ServerHandle) -> None:
    seen, hook = connection_log()
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await wait_until(lambda: state(app) is ConnState.LIVE and app.latest is not None)
        figures = card_text(app, "revenue")
        await server.stop()
        await wait_until(
            lambda: state(app) in (ConnState.RECONNECTING, ConnState.CONNECTING),
            what="reconnecting status",
        )
        await pilot.pause()
        body = app.screen_stack[0].query_one("#body")
        assert body.has_class("-stale")
        assert card_text(app, "revenue") == figures  # last good figures stay on screen
        assert app.screen_stack[0].query_one("#revenue", MetricCard).border_subtitle == "stale"
        await server.start()
        await wait_until(lambda: state(app) is ConnState.LIVE, within=40, what="live again")
        await wait_until(lambda: not body.has_class("-stale"), what="fresh figures")
        assert ConnState.RECONNECTING in seen


async def test_max_retries_goes_offline_and_r_retries() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    seen, hook = connection_log()
    app = MetricsApp(url, animate=False, max_retries=1)
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await wait_until(lambda: state(app) is ConnState.OFFLINE, within=15, what="offline")
        # the first attempt fails, one retry is allowed, then it gives up
        assert seen == [ConnState.RECONNECTING, ConnState.CONNECTING, ConnState.OFFLINE]
        assert "Offline, press r" in str(app.status_line.render())
        seen.clear()
        await pilot.press("r")
        await wait_until(lambda: ConnState.CONNECTING in seen, what="retry after r")
        await wait_until(lambda: state(app) is ConnState.OFFLINE, within=15, what="offline again")


async def test_keys_q_r_p_help_and_palette(server: ServerHandle) -> None:
    seen, hook = connection_log()
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await wait_until(lambda: state(app) is ConnState.LIVE and app.latest is not None)

        # r: drops the live link and connects again at once
        seen.clear()
        await pilot.press("r")
        await wait_until(lambda: ConnState.CONNECTING in seen, what="reconnect")
        await wait_until(lambda: state(app) is ConnState.LIVE, what="live after r")

        # p: the display freezes while data keeps arriving, then catches up
        await pilot.press("p")
        assert app.paused
        line = str(app.status_line.render())
        assert "PAUSED" in line and "showing " in line  # names the time of the frozen figures
        assert app.screen_stack[0].query_one("#revenue", MetricCard).border_subtitle == "paused"
        shown = dict(app.screen_stack[0].query_one("#revenue", MetricCard).shown)
        await server.service.ingest(EVENTS[2:3])
        await wait_until(lambda: revenue_total(app) == Decimal("12.50"), what="update while paused")
        assert app.screen_stack[0].query_one("#revenue", MetricCard).shown == shown
        await pilot.press("p")
        assert not app.paused
        assert "PAUSED" not in str(app.status_line.render())
        assert app.screen_stack[0].query_one("#revenue", MetricCard).shown["total"] == Decimal(
            "12.50"
        )

        # ?: help screen, closed by escape
        await pilot.press("question_mark")
        await wait_until(lambda: isinstance(app.screen, HelpScreen), what="help screen")
        await pilot.press("escape")
        await wait_until(lambda: not isinstance(app.screen, HelpScreen), what="help closed")

        # ctrl+p: command palette
        await pilot.press("ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press("escape")
        await wait_until(lambda: not isinstance(app.screen, CommandPalette), what="closed")

        # q: quits
        await pilot.press("q")
        await wait_until(lambda: app._exit_renderables is not None or not app.is_running)
    assert app.return_code == 0
