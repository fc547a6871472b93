"""Snapshot tests with fixed data: no server, frozen clock, animations and pulse off."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from textual.pilot import Pilot

from metrics_server.protocol import ActiveUsers, Content, Metrics, Revenue, Transactions
from metrics_tui.app import MetricsApp
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    Status,
)

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


def make_app(theme: str | None = None) -> MetricsApp:
    return MetricsApp(URL, clock=lambda: NOW, animate=False, connect=False, theme=theme)


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


def test_waiting_for_first_data(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=(80, 24))


def test_too_small(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=(36, 12), run_before=feed_live)


def test_help_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(), terminal_size=(80, 24), run_before=feed_live, press=["question_mark"]
    )


def test_paused_ansi_dark(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(theme="ansi-dark"), terminal_size=(60, 20), run_before=feed_live, press=["p"]
    )
