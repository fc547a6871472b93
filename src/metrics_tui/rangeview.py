"""The monitor's range views: keys ``1`` to ``6``, the ``/`` range input and the ``e`` export.

A mixin of `MetricsApp`, kept apart from the live view's code: the cards stay live in every
view, only the charts switch between the live samples and a range fetched from the server
(over the WebSocket, or REST while polling), refreshed every step or every minute, whichever
is longer.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from textual.css.query import NoMatches
from textual.timer import Timer

from metrics_protocol.figures import CSV_COLUMNS, SCHEMA
from metrics_protocol.wire import Range, RangePoint, decode_range, range_csv, range_filename
from metrics_tui.history import RangeError
from metrics_tui.messages import RangeFailed, RangeReceived
from metrics_tui.ranges import (
    PRESETS,
    RangeSpec,
    parse_range,
)
from metrics_tui.screens.range_input import RangeInputScreen
from metrics_tui.wire import describe_error

#: Seconds a range request may take before the view says it is unavailable.
RANGE_WAIT = 10.0
#: Columns a fitted step aims at when no chart is on screen to measure (a 40x15 pane).
DEFAULT_COLUMNS = 40
#: What the y axis and the title take from a chart's width (labels like "$12,500").
AXIS_COLUMNS = 10


def local_now() -> datetime:
    return datetime.now().astimezone()


class RangeViews:
    """Keys, fetches, refreshes and export of the range views.

    Mixed into MetricsApp (app.py), whose state it uses (``client``, ``points``, ``paused``)
    and sets: ``range_drawn``, the view the dashboard's charts draw (None: live), and
    ``loading``, the view on its way, named in the chart titles until it comes.
    """

    #: The view on screen; None is live (the last 20 samples).
    range: RangeSpec | None = None
    #: The points the charts show (exact: Decimal revenue), oldest first.
    range_points: Sequence[RangePoint] = ()
    #: The same as a range (``from`` the first of them), for ``e``.
    range_shown: Range | None = None
    #: Where ``e`` writes; None is the current directory.
    export_dir: str | None = None
    #: The wall clock the views are relative to (local, aware); replaceable in tests.
    wall_clock: Callable[[], datetime] = staticmethod(local_now)
    _range_wanted: RangeSpec | None = None
    _range_timer: Timer | None = None

    # ------------------------------------------------------------------ keys

    def action_range(self, key: str) -> None:
        """``1`` live, ``2`` to ``6`` the last hour, day, week, month, year."""
        if key == "1":
            self.show_live()
        else:
            self.show_range(PRESETS[key].spec(self.wall_clock()))

    def action_range_input(self) -> None:
        if isinstance(self.screen, RangeInputScreen):
            return
        typed = self.range.text if self.range is not None and self.range.text else ""

        def parse(text: str) -> RangeSpec:
            return parse_range(text, self.wall_clock(), self.chart_columns())

        def chosen(spec: RangeSpec | None) -> None:
            if spec is not None:
                self.show_range(spec)

        self.push_screen(RangeInputScreen(parse, typed), chosen)

    def action_export(self) -> None:
        """Write what the charts show to a CSV file and say where."""
        if self.range is not None and self.range_shown is not None:
            shown = self.range_shown
            if not shown.points:
                self.notify("Nothing to export: the range has no points", severity="warning")
                return
            name, text, count = range_filename(shown), range_csv(shown), len(shown.points)
        else:
            snapshots = list(self.points)
            if not snapshots:
                self.notify("Nothing to export yet: no samples", severity="warning")
                return
            name = f"metrics-live-{snapshots[-1].timestamp:%Y-%m-%dT%H%M%S}.csv"
            text, count = live_csv(snapshots), len(snapshots)
        folder = self.export_dir or os.getcwd()
        self.run_worker(self._write_export(folder, name, text, count), group="export")

    async def _write_export(self, folder: str, name: str, text: str, n: int) -> None:
        try:
            path = await asyncio.to_thread(write_new, folder, name, text)
        except OSError as exc:
            where = exc.filename or folder
            self.notify(f"{exc.strerror or exc}: {where}", title="Export failed", severity="error")
            return
        rows = "row" if n == 1 else "rows"
        self.notify(f"{n} {rows} written to {path}", title="Exported", markup=False)

    # ------------------------------------------------------------------ views

    def show_live(self) -> None:
        """Back to the live samples. A change of view is drawn at once, even while paused:
        pausing holds back the feed, not what the user asks to see."""
        if self._range_timer is not None:
            self._range_timer.stop()
            self._range_timer = None
        self.workers.cancel_group(self, "range")
        self.range, self._range_wanted, self.range_points = None, None, ()
        self.range_shown = None
        self.loading = None
        self.range_drawn = None

    def show_range(self, spec: RangeSpec) -> None:
        """Fetch ``spec`` and show it when it comes; until then the charts say it is loading,
        and if it fails the view stays as it was."""
        self._range_wanted = spec
        self.loading = spec
        self.run_worker(self._load_range(spec), group="range", exclusive=True, exit_on_error=False)

    def _refresh_range(self) -> None:
        spec = self.range
        if spec is None or self._range_wanted is not spec:
            return  # left meanwhile, or another view is on its way
        now = self.wall_clock()
        if spec.key is not None:
            fresh = PRESETS[spec.key].spec(now)
        elif spec.text is not None:  # "today" moves on; the step stays as it was
            again = parse_range(spec.text, now, self.chart_columns())
            fresh = dataclasses.replace(again, step=spec.step)
        else:
            fresh = spec
        self._range_wanted = fresh
        self.run_worker(self._load_range(fresh), group="range", exclusive=True, exit_on_error=False)

    async def _load_range(self, spec: RangeSpec) -> None:
        try:
            if self.client is None:
                raise ConnectionError("not connected")
            body = await self.client.request_range(spec.start, spec.end, spec.step, RANGE_WAIT)
            answer = decode_range(body)
        except RangeError as exc:
            reason = str(exc)
        except TimeoutError:
            reason = f"no answer within {RANGE_WAIT:g} s"
        except Exception as exc:  # connection, protocol and httpx's errors alike
            reason = describe_error(exc)
        else:
            self.post_message(RangeReceived(spec, answer))
            return
        self.post_message(RangeFailed(spec, reason))

    def on_range_received(self, message: RangeReceived) -> None:
        spec = message.spec
        if spec is not self._range_wanted:
            return  # an answer for a view that was left
        new_view = self.range is None or not same_view(self.range, spec)
        if new_view or self._range_timer is None:
            if self._range_timer is not None:
                self._range_timer.stop()
            self._range_timer = self.set_interval(spec.refresh_every, self._refresh_range)
        self.range = spec
        self.range_shown = spec.shown(message.answer)
        self.range_points = self.range_shown.points
        if new_view or not self.paused:  # a refresh waits for the pause to end
            self.range_drawn = (spec, self.range_points)
        self.loading = None

    def on_range_failed(self, message: RangeFailed) -> None:
        if message.spec is not self._range_wanted:
            return
        refresh = self.range is not None and same_view(self.range, message.spec)
        self._range_wanted = self.range
        if refresh:  # the view keeps its points; the next refresh tries again
            return
        self.loading = None  # the titles said "loading": they name what is shown again
        self.notify(
            f"{message.spec.label}: {message.reason}",
            title="Range unavailable",
            severity="error",
            markup=False,
        )

    # ------------------------------------------------------------------ sizes

    def chart_columns(self) -> int:
        """Columns one chart has for its points, to fit a step to (the range input)."""
        from metrics_tui.widgets.charts import TrendChart

        try:
            chart = self._dashboard().query_one("#revenue-chart", TrendChart)
        except NoMatches:
            return DEFAULT_COLUMNS
        width = chart.content_size.width
        return width - AXIS_COLUMNS if width > AXIS_COLUMNS * 2 else DEFAULT_COLUMNS


def same_view(a: RangeSpec, b: RangeSpec) -> bool:
    """The same view asked again (a refresh), perhaps over a later span."""
    return (a.key, a.text, a.label, a.step) == (b.key, b.text, b.label, b.step)


def live_csv(snapshots: Sequence[Any]) -> str:
    """The live view's samples under the snapshot CSV columns (exact money)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(SCHEMA.csv_row(m) for m in snapshots)
    return buf.getvalue()


def write_new(folder: str, name: str, text: str) -> str:
    """Write ``text`` to ``folder/name`` without replacing a file: ``-2``, ``-3``... are tried
    after the name. Returns the absolute path written."""
    stem, ext = os.path.splitext(name)
    for n in range(1, 1000):
        path = os.path.abspath(os.path.join(folder, name if n == 1 else f"{stem}-{n}{ext}"))
        try:
            with open(path, "x", encoding="utf-8", newline="") as out:
                out.write(text)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(17, "too many exports of the same name", os.path.join(folder, name))
