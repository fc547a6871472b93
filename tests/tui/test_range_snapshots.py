"""Snapshots of range views with fixed data: no server, the clock and zone frozen as in
test_snapshots.py, the answer posted as the client would post it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from textual.pilot import Pilot

from metrics_protocol.wire import Range, RangePoint
from metrics_tui.messages import RangeReceived
from metrics_tui.ranges import PRESETS, RangeSpec

from .test_snapshots import END, feed_live, make_app
from .test_snapshots import utc as utc  # the fixture: chart times in UTC

PARIS = ZoneInfo("Europe/Paris")


def days(count: int) -> tuple[RangePoint, ...]:
    """Daily revenue with a weekly rhythm (weekends low) and a rising trend, in Paris days."""
    first = datetime(2025, 10, 6, tzinfo=PARIS)
    points = []
    for i in range(count):
        day = first + timedelta(days=i)
        weekend = day.weekday() >= 5
        cents = 3_200_000 + 45_000 * i - (1_900_000 if weekend else 0) + (i * 7919) % 400_000
        points.append(
            RangePoint(
                start=day,
                revenue=Decimal(cents).scaleb(-2),
                completed=400 + i,
                failed=3 + i % 4,
                started=420 + i,
                views=9000 + 50 * i,
                active_users=(600 if weekend else 1100) + 9 * i,
                peak_current=80 + i % 9,
            )
        )
    return tuple(points)


def quarters(count: int) -> tuple[RangePoint, ...]:
    """A day in 15-minute buckets: busy in the afternoon, quiet at night."""
    first = datetime(2025, 11, 3, 10, 45, tzinfo=PARIS)
    points = []
    for i in range(count):
        start = first + timedelta(minutes=15 * i)
        hour = start.hour + start.minute / 60
        busy = max(0.0, 1 - abs(hour - 15) / 9)
        points.append(
            RangePoint(
                start=start,
                revenue=Decimal(int(12_000 + 90_000 * busy + (i * 7919) % 9_000)).scaleb(-2),
                completed=int(10 + 40 * busy),
                failed=i % 3,
                started=int(12 + 44 * busy),
                views=int(200 + 900 * busy),
                active_users=int(8 + 60 * busy + i % 5),
                peak_current=None if busy == 0 else int(5 + 30 * busy),
            )
        )
    return tuple(points)


def show(spec: RangeSpec, points: tuple[RangePoint, ...]):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await feed_live(pilot)
        app = pilot.app
        app._range_wanted = spec  # type: ignore[attr-defined]  # as show_range does
        app.post_message(
            RangeReceived(spec, Range(points[0].start, END, spec.step, "Europe/Paris", points))
        )
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_thirty_days_of_bars(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    spec = PRESETS["5"].spec(END)
    assert snap_compare(make_app(), terminal_size=size, run_before=show(spec, days(31)))


def test_a_range_view_at_60x20(snap_compare) -> None:  # type: ignore[no-untyped-def]
    spec = PRESETS["3"].spec(END)
    assert snap_compare(make_app(), terminal_size=(60, 20), run_before=show(spec, quarters(97)))
