"""Snapshot tests with fixed data: no server, frozen clock, animations and pulse off."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from metrics_protocol.wire import ActiveUsers, Content, Metrics, Revenue, Transactions
from metrics_tui.app import MetricsApp
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    Status,
)
from metrics_tui.screens.help import HelpScreen
from metrics_tui.wire import tls_context

NOW = 1000.0
URL = "ws://metrics.example.com:3000/ws/metrics"
END = datetime(2025, 11, 4, 10, 30, tzinfo=UTC)


def snapshot(i: int) -> Metrics:
    """Point i of 20 (19 = latest): a rising revenue and a wavy user count."""
    bump = Decimal(i * 650) + Decimal("0.50")
    return Metrics(
        timestamp=END - timedelta(seconds=5 * (19 - i)),
        revenue=Revenue(
            Decimal("112650.00") + bump,
            Decimal("3200.25") + bump,
            Decimal("18240.75") + bump,
            Decimal("74980.10") + bump,
        ),
        active_users=ActiveUsers(30 + (i * 7) % 13 + i // 2, 1250, 89),
        transactions=Transactions(5420, 12, 5380, 28),
        content=Content(125000, 5380, Decimal("4.30")),
    )


HISTORY = [snapshot(i) for i in range(20)]
LATEST = Metrics(
    timestamp=END,
    revenue=Revenue(
        Decimal("125000.50"), Decimal("15550.75"), Decimal("30590.25"), Decimal("87330.60")
    ),
    active_users=ActiveUsers(42, 1250, 89),
    transactions=Transactions(5420, 12, 5380, 28),
    content=Content(125000, 5380, Decimal("4.30")),
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chart time labels are local time; pin the zone so snapshots match anywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def make_app(theme: str | None = None, url: str = URL, insecure: bool = False) -> MetricsApp:
    tls = tls_context(url, insecure=insecure)
    return MetricsApp(url, tls=tls, clock=lambda: NOW, animate=False, connect=False, theme=theme)


async def feed_live(pilot: Pilot) -> None:
    app = pilot.app
    app.post_message(ConnectionChanged(Status(ConnState.LIVE)))
    app.post_message(HistoryReceived(HISTORY, 5.0))
    app.post_message(MetricsUpdated(LATEST, "change", 5.0))
    await pilot.pause()


async def feed_reconnecting(pilot: Pilot) -> None:
    await feed_live(pilot)
    status = Status(
        ConnState.RECONNECTING, attempt=3, retry_at=NOW + 3.2, detail="connection refused"
    )
    pilot.app.post_message(ConnectionChanged(status))
    await pilot.pause()


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (60, 20), (40, 15)])
def test_dashboard_sizes(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=size, run_before=feed_live)


def test_reconnecting_keeps_stale_figures(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=feed_reconnecting)


async def feed_unauthorized(pilot: Pilot) -> None:
    status = Status(ConnState.UNAUTHORIZED, retry_at=NOW + 30, detail="token refused")
    pilot.app.post_message(ConnectionChanged(status))
    await pilot.pause()


def test_unauthorized_over_insecure_tls(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app = make_app(url=URL.replace("ws://", "wss://"), insecure=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed_unauthorized)


def test_waiting_for_first_data(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=(80, 24))


def test_too_small(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=(36, 12), run_before=feed_live)


def test_help_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(), terminal_size=(80, 24), run_before=feed_live, press=["question_mark"]
    )


def test_help_screen_small(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(), terminal_size=(60, 20), run_before=feed_live, press=["question_mark"]
    )


async def test_help_fits_60x20_without_scrolling() -> None:
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one(VerticalScroll)
        assert box.max_scroll_y == 0 and box.max_scroll_x == 0


@pytest.mark.parametrize("width", [40, 50, 60, 80])
async def test_footer_never_cuts_a_key_label(width: int) -> None:
    app = make_app()
    async with app.run_test(size=(width, 15)) as pilot:
        await feed_live(pilot)
        footer = app.screen.query_one(Footer)
        keys = [k for k in footer.query(FooterKey) if k.display]
        assert {k.key for k in keys} >= {"q", "r", "p", "question_mark"}
        for key in keys:
            assert footer.region.contains_region(key.region), (key.key, key.region)
        regions = sorted(k.region for k in keys)
        for a, b in itertools.pairwise(regions):
            assert a.right <= b.x, (a, b)  # no key drawn over another


def test_paused_ansi_dark(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(theme="ansi-dark"), terminal_size=(60, 20), run_before=feed_live, press=["p"]
    )
