"""Range views in the monitor, through its keys, against a server that answers ranges.

Each view is checked against the server's own answer to the same request over REST: the
points the monitor holds (and exports) are the server's, exactly.
"""

from __future__ import annotations

import asyncio
import csv
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual import events
from textual.command import CommandPalette

from metrics_protocol.figures import CSV_COLUMNS
from metrics_protocol.wire import (
    HISTORY_PATH,
    RANGE_CSV_COLUMNS,
    Range,
    RangePoint,
    decode_range,
    loads,
    range_filename,
)
from metrics_tui.app import MetricsApp
from metrics_tui.messages import ConnState, RangeReceived
from metrics_tui.ranges import PRESETS, RangeSpec
from metrics_tui.screens.help import HelpScreen
from metrics_tui.screens.range_input import RangeInputScreen
from metrics_tui.widgets.charts import TrendChart
from metrics_tui.widgets.range_chart import RangeChart

from .conftest import history_requests, wait_until
from .test_fallback import UpgradeBlockingProxy


async def fetch(server: Any, start: str, end: str, step: str, fmt: str = "json") -> str:
    """The server's own answer to a range, fetched apart from the monitor."""
    async with httpx.AsyncClient() as http:
        r = await http.get(
            server.http_url + HISTORY_PATH,
            params={"from": start, "to": end, "step": step, "format": fmt},
        )
        r.raise_for_status()
        return r.text


async def oracle(server: Any, spec: RangeSpec) -> Range:
    """The server's answer to the view's request."""
    return decode_range(loads(await fetch(server, spec.start, spec.end, spec.step)))


def same_points(a: Sequence[RangePoint], b: Sequence[RangePoint]) -> bool:
    """Equal, but for the peak of the bucket in progress, which a sample may raise meanwhile."""

    def settled(points: Sequence[RangePoint]) -> list[RangePoint]:
        return [*points[:-1], *(replace(p, peak_current=None) for p in points[-1:])]

    return settled(a) == settled(b)


def chart(app: MetricsApp, chart_id: str) -> TrendChart:
    return app.screen_stack[0].query_one(f"#{chart_id}", TrendChart)


def title(app: MetricsApp, chart_id: str) -> str:
    return chart(app, chart_id).title_text


@pytest.mark.parametrize("key", sorted(PRESETS))
async def test_each_range_key_shows_its_range(range_server: Any, key: str) -> None:
    preset = PRESETS[key]
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        live_title = title(app, "revenue-chart")
        await pilot.press(key)
        await wait_until(lambda: app.range is not None, what=f"the view of key {key}")
        spec = app.range
        assert spec is not None and spec.key == key and spec.step == preset.step
        assert title(app, "revenue-chart") == spec.title("Revenue")
        assert title(app, "users-chart") == spec.title("Active users")
        assert len(app.range_points) == preset.count
        assert same_points(app.range_points, spec.shown(await oracle(range_server, spec)).points)
        assert app.client is not None and app.client._range_id >= 1  # asked over the WebSocket
        revenue = chart(app, "revenue-chart")
        drawn = revenue.query_one(RangeChart)
        assert drawn.display
        assert drawn._kind == ("bars" if preset.step in ("1d", "1mo") else "line")
        assert drawn._values == tuple(float(p.revenue) for p in app.range_points)

        await pilot.press("1")
        await pilot.pause()
        assert app.range is None and drawn.display and drawn._kind == "line"
        assert drawn._values == tuple(float(m.revenue.total) for m in app.shown_points)  # type: ignore[union-attr]
        assert title(app, "revenue-chart").split(" · ")[0] == live_title.split(" · ")[0]
        assert preset.label not in title(app, "revenue-chart")


async def test_the_titles_name_range_and_step(range_server: Any) -> None:
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("3")
        await wait_until(lambda: app.range is not None, what="the 24 h view")
        assert title(app, "revenue-chart") == "Revenue · last 24 h · 15 min"
        assert title(app, "users-chart") == "Active users · last 24 h · 15 min"
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        # 28 columns a chart: the long title where it fits, a shorter form where not.
        assert title(app, "revenue-chart") == "Revenue · last 24 h · 15 min"
        assert title(app, "users-chart") == "Active users · 24 h · 15m"


async def test_cards_stay_live_in_a_range_view(range_server: Any) -> None:
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.shown is not None, what="figures")
        await pilot.press("5")
        await wait_until(lambda: app.range is not None, what="the 30-day view")
        assert app.shown is not None and app.shown.revenue is not None
        before, points = app.shown.revenue.total, app.range_points
        sale = {"type": "transaction", "id": "now", "status": "completed", "amount": "1000.00"}
        await range_server.service.ingest([sale])
        await wait_until(
            lambda: app.shown.revenue.total == before + Decimal("1000.00"),  # type: ignore[union-attr]
            what="the cards to follow the feed",
        )
        assert app.range is not None and app.range_points is points  # the charts stay put


async def test_range_input_shows_a_typed_range(range_server: Any) -> None:
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("slash")
        assert isinstance(app.screen, RangeInputScreen)
        await pilot.press(*"2026-11-01..2026-11-15", "enter")
        await wait_until(lambda: app.range is not None, what="the typed range")
        spec = app.range
        assert spec is not None and (spec.start, spec.end, spec.step) == (
            "2026-11-01",
            "2026-11-15",
            "1d",  # 14 days fit the chart's columns a day a bar
        )
        assert title(app, "revenue-chart") == "Revenue · 2026-11-01..2026-11-15 · 1 day"
        assert [p.start.day for p in app.range_points] == list(range(1, 15))
        assert app.range_points == (await oracle(range_server, spec)).points
        # The input opens again with the range in it, and words work too.
        await pilot.press("slash")
        box = app.screen.query_one("#range-text")
        assert box.value == "2026-11-01..2026-11-15"  # type: ignore[attr-defined]
        box.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"yesterday", "enter")
        await wait_until(lambda: app.range is not None and app.range.text == "yesterday", what="it")
        assert (
            app.range is not None
            and app.range.step == "1h"
            and len(app.range_points) in (23, 24, 25)
        )


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("2026-11-15..2026-11-01", "ends before it starts"),
        ("2026-02-30..2026-03-05", "Not a date"),
        ("next tuesday", "Not a range"),
        ("2025-01-01..2026-01-01 1m", "525,600 points"),
        ("", "Type a range"),
    ],
)
async def test_a_bad_range_is_refused_in_place(range_server: Any, typed: str, says: str) -> None:
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("5")
        await wait_until(lambda: app.range is not None, what="the 30-day view")
        before, asked = app.range, app.client._range_id  # type: ignore[union-attr]
        await pilot.press("slash", *typed, "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RangeInputScreen)  # still open, with the reason
        error = screen.query_one("#range-error")
        assert error.display and says in str(error.render())  # type: ignore[attr-defined]
        assert app.range is before and app.client._range_id == asked  # type: ignore[union-attr]
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RangeInputScreen) and app.range is before


async def test_a_range_the_server_refuses_changes_nothing(range_server: Any) -> None:
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(80, 24)):
        await wait_until(lambda: app.connected, what="the live feed")
        # Past the input's own checks: straight to the server, which answers with an error
        # message carrying the request's id.
        app.show_range(RangeSpec("bad", "2026-11-02", "2026-11-01", "1d"))
        await wait_until(lambda: bool(app._notifications), what="a notification")
        note = list(app._notifications)[-1]
        assert note.title == "Range unavailable" and note.message.startswith("bad: ")
        assert app.range is None and "bad" not in title(app, "revenue-chart")
        assert "loading" not in title(app, "revenue-chart")
        assert app.connected  # the connection stays open


async def test_export_writes_what_the_charts_show(range_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "exports"  # tmp_path holds the server's database
    out.mkdir()
    app = MetricsApp(range_server.url, animate=False, export_dir=str(out))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("5")
        await wait_until(lambda: app.range is not None, what="the 30-day view")
        await pilot.press("e")
        await wait_until(lambda: any(out.iterdir()), what="the CSV file")
        (path,) = list(out.iterdir())
        shown = app.range_shown
        assert shown is not None and shown.start == app.range_points[0].start
        assert path.name == range_filename(shown)  # metrics_2026-11-01_2026-11-30T183122_1d.csv
        await wait_until(lambda: bool(app._notifications), what="the notification")
        assert str(path) in list(app._notifications)[-1].message
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0]) == RANGE_CSV_COLUMNS and len(rows) == 30
        for row, p in zip(rows, app.range_points, strict=True):
            assert Decimal(row["revenue"]) == p.revenue
            assert int(row["views"]) == p.views and int(row["activeUsers"]) == p.active_users
            assert row["start"] == p.start.isoformat()
        # Byte for byte the server's own CSV of the same buckets (the current day's peak
        # sample aside, which may have moved since).
        theirs = await fetch(
            range_server, shown.start.isoformat(), shown.end.isoformat(), "1d", fmt="csv"
        )
        mine = path.read_bytes().decode()
        assert mine.splitlines()[:-1] == theirs.splitlines()[:-1]
        assert mine.endswith("\r\n") and len(mine.splitlines()) == len(theirs.splitlines())
        # Again: a second file beside the first, never over it.
        await pilot.press("e")
        await wait_until(lambda: len(list(out.iterdir())) == 2, what="a second file")
        assert (out / path.name.replace(".csv", "-2.csv")).read_text() == path.read_text()
        # The live view exports its samples.
        await wait_until(lambda: bool(app.points), what="a live sample")
        await pilot.press("1", "e")
        await wait_until(lambda: len(list(out.iterdir())) == 3, what="the live CSV")
        (live,) = [p for p in out.iterdir() if p.name.startswith("metrics-live-")]
        with live.open(newline="") as f:
            header = next(csv.reader(f))
        assert tuple(header) == CSV_COLUMNS


async def test_export_to_a_missing_folder_says_so(range_server: Any, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    app = MetricsApp(range_server.url, animate=False, export_dir=str(gone))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("5")
        await wait_until(lambda: app.range is not None, what="the 30-day view")
        await pilot.press("e")
        await wait_until(lambda: bool(app._notifications), what="the notification")
        note = list(app._notifications)[-1]
        assert note.title == "Export failed" and str(gone) in note.message


async def test_ranges_come_over_rest_while_polling(range_server: Any) -> None:
    proxy = UpgradeBlockingProxy(range_server.port)
    port = await proxy.start()
    try:
        app = MetricsApp(f"ws://127.0.0.1:{port}/ws/metrics", animate=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(lambda: app.status.state is ConnState.POLLING, what="polling")
            await pilot.press("5")
            await wait_until(lambda: app.range is not None, within=15, what="the 30-day view")
            assert len(app.range_points) == 30
            assert app.client is not None and app.client._range_id == 0  # no WebSocket request
            assert history_requests(range_server) == 1  # the REST route answered it
    finally:
        await proxy.stop()


async def test_a_range_view_refreshes_itself(range_server: Any) -> None:
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("2")
        await wait_until(lambda: app.range is not None, what="the last hour")
        first = app.range
        assert app._range_timer is not None and app._range_timer._interval == 60  # a minute
        app._refresh_range()  # what the timer does
        await wait_until(lambda: app.range is not first, what="a refresh")
        assert app.range is not None and app.range.key == "2" and len(app.range_points) == 60
        await pilot.press("5")
        await wait_until(lambda: app.range is not None and app.range.key == "5", what="30 days")
        assert app._range_timer is not None and app._range_timer._interval == 86400  # a day
        await pilot.press("1")
        assert app._range_timer is None


class Frames:
    """When the screen was last painted, and whether a condition held then: the time from a
    key to the first frame that shows its effect, with Pilot's own idle waits left out."""

    def __init__(self, app: MetricsApp) -> None:
        self.app = app
        self.shown: list[tuple[float, bool]] = []
        self.effect: Callable[[], bool] = lambda: False
        display = app._display

        def paint(screen: Any, update: Any) -> None:
            if update is not None and hasattr(update, "render_segments"):
                update.render_segments(app.console)  # what a terminal would be sent
            self.shown.append((time.perf_counter(), self.effect()))
            display(screen, update)

        app._display = paint  # type: ignore[method-assign]

    async def key(self, key: str, effect: Callable[[], bool], within: float = 5.0) -> float:
        """Seconds from the key's arrival to the first frame painted with ``effect`` true."""
        self.effect = effect
        sent = time.perf_counter()
        event = events.Key(key, None)
        event.set_sender(self.app)
        self.app._driver.send_message(event)  # type: ignore[union-attr]
        while not any(at >= sent and ok for at, ok in self.shown):
            assert time.perf_counter() - sent < within, f"{key}: no frame showed its effect"
            await asyncio.sleep(0.001)
        return min(at for at, ok in self.shown if at >= sent and ok) - sent


async def test_keys_answer_within_100ms_with_1440_points(range_server: Any) -> None:
    """A day at 1-minute steps (1,440 points) on screen; each key is timed from its arrival to
    the frame that shows its effect, also right behind a fresh 1,440-point answer. The median of
    three rounds is held to 100 ms: the machine is shared, and one round can lose the CPU."""
    app = MetricsApp(range_server.url, animate=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        await pilot.press("slash", *"2026-11-10..2026-11-11 1m", "enter")
        await wait_until(lambda: app.range is not None, what="the 1,440-point view")
        assert len(app.range_points) == 1440
        spec = app.range
        assert spec is not None
        answer = await oracle(range_server, spec)
        await pilot.pause()
        frames = Frames(app)
        rounds: dict[str, list[float]] = {}

        async def timed(name: str, key: str, effect: Callable[[], bool]) -> None:
            rounds.setdefault(name, []).append(await frames.key(key, effect))

        def help_open() -> bool:
            return isinstance(app.screen, HelpScreen)

        for n in range(3):
            await timed("p", "p", lambda: app.paused)
            await timed("p again", "p", lambda: not app.paused)
            await timed("?", "question_mark", help_open)
            await timed("escape", "escape", lambda: not help_open())
            await timed("/", "slash", lambda: isinstance(app.screen, RangeInputScreen))
            await timed("escape again", "escape", lambda: app.screen.id != "range")
            # A fresh answer of 1,440 points (a refresh) queued just before a key: the key
            # waits for the charts to be rebuilt, and still answers in time.
            last = answer.points[-1]
            fresh = (*answer.points[:-1], replace(last, revenue=last.revenue + n + 1))
            app.post_message(RangeReceived(spec, replace(answer, points=fresh)))
            await timed("p behind a redraw", "p", lambda: app.paused)
            assert app.range_points == fresh and app.range_drawn == (spec, fresh)  # redrawn
            await timed("p after it", "p", lambda: not app.paused)
        medians = {name: statistics.median(times) for name, times in rounds.items()}
        assert max(medians.values()) < 0.1, rounds


async def test_the_palette_offers_every_range(range_server: Any, tmp_path: Path) -> None:
    app = MetricsApp(range_server.url, animate=False, export_dir=str(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(lambda: app.connected, what="the live feed")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for name in ("live figures", *(p.label for p in PRESETS.values())):
            assert f"Show {name}" in titles
        assert "Show a date range…" in titles and "Export the charts to CSV" in titles
        await pilot.press("ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"last 30 days")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(lambda: app.range is not None and app.range.key == "5", what="30 days")
        await pilot.press("ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"date range")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, RangeInputScreen), what="the input")
