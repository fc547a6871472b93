"""Trend charts: a sparkline where space is short, a line chart with axes where not.

Both views live in one widget and the stylesheet shows one of them. Both take new points,
and each redraws only when they differ from its last ones (the sparkline's data is a
reactive, the line chart compares them); the title too is a reactive, redrawn only when its
text changes. The hidden view takes its new data without asking for a repaint: Textual
answers a repaint request from a widget that is not on screen by rebuilding the whole screen
map, once a second here. It repaints when shown.

The line chart is ``RangeChart`` (range_chart.py), the range views' own: the live view's
points go to it as a braille line named by their local times, built in time linear in the
points plus the cells, once per chart point.

The title names the metric and the time the samples span, not a figure: the chart plots one
sample per interval while the card beside it follows every change, so a "latest" figure in the
title (376) sat next to a newer one on the card (377) and read as a contradiction. As in btop
or glances, the figure is read off the card and the chart gives the trend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import var
from textual.widgets import Sparkline, Static

from metrics_tui import formatting
from metrics_tui.widgets.range_chart import Kind, RangeChart


def clock_label(stamp: datetime) -> str:
    """A live sample's local time of day, ``14:03:27``: its chart spans minutes."""
    return stamp.astimezone().strftime("%H:%M:%S")


def chart_title(title: str, stamps: Sequence[datetime]) -> str:
    """``Active users · last 1m35s``: the metric and the time its samples span."""
    if not stamps:
        return f"{title} · waiting for data"
    # Rounded, not cut: samples a second apart span 18.998 s or 19.002 s by the server's
    # timer's jitter, and a cut span would flip the title between "18s" and "19s".
    span = round((stamps[-1] - stamps[0]).total_seconds())
    return f"{title} · last {formatting.age(span)}" if span > 0 else title


class TrendSpark(Sparkline):
    """The compact view; its data may change while hidden (see the module's docstring)."""

    def on_show(self) -> None:
        self.refresh()


class TrendChart(Vertical):
    """Title line (the metric and the span of its samples) over a sparkline or a line chart."""

    DEFAULT_CSS = """
    TrendChart { height: 1fr; }
    TrendChart > .chart-title { height: 1; text-style: bold; }
    TrendChart > Sparkline { height: 1fr; }
    TrendChart > RangeChart { height: 1fr; }
    """

    #: The title's forms from long to short: the longest that fits is shown.
    titles: var[tuple[str, ...]] = var((), init=False)
    #: The title line as shown.
    title_text: var[str] = var("", init=False)

    def __init__(
        self,
        title: str,
        fmt: Callable[[float], str],
        *,
        integer: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self._fmt = fmt
        self._integer = integer
        first = chart_title(title, ())
        self.set_reactive(TrendChart.titles, (first,))
        self.set_reactive(TrendChart.title_text, first)

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="chart-title", markup=False)
        yield TrendSpark([], summary_function=max)
        yield RangeChart(self._fmt, self._integer)

    def set_points(
        self,
        values: Sequence[float],
        stamps: Sequence[datetime],
        *,
        title: str | Sequence[str] | None = None,
        kind: Kind | None = None,
        label: Callable[[datetime], str] = clock_label,
    ) -> None:
        """Replace the plotted points (the same ones again change nothing). Nothing here
        changes a size: the title is one line of fixed width, updated without a layout pass.

        A range view names its own ``title`` and gives the ``kind`` of chart it wants where the
        stylesheet shows a line chart ("bars", one per step, or "line": see range_chart.py),
        naming its points with ``label``; the live view (no ``kind``) draws a line named by
        the samples' local times."""
        self.set_title(title or chart_title(self.title, stamps if values else ()))
        spark = self.query_one(TrendSpark)
        data = list(values)  # a new list, so the sparkline sees a change (an equal one: none)
        if spark.is_on_screen:
            spark.data = data
        else:
            spark.set_reactive(Sparkline.data, data)
        self.query_one(RangeChart).set_points(values, stamps, label, kind or "line")

    def set_title(self, title: str | Sequence[str]) -> None:
        """The title, or its forms from long to short: the longest that fits is shown."""
        self.titles = (title,) if isinstance(title, str) else tuple(title)

    def watch_titles(self) -> None:
        self._fit_title()

    def on_resize(self) -> None:
        if len(self.titles) > 1:
            self._fit_title()

    def _fit_title(self) -> None:
        width = self.content_size.width
        fits = (t for t in self.titles if cell_len(t) <= width)
        self.title_text = next(fits, self.titles[-1]) if width else self.titles[0]

    def watch_title_text(self, title: str) -> None:
        # One line of fixed width: no layout pass.
        self.query_one(".chart-title", Static).update(title, layout=False)
