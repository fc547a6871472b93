"""Trend charts: a sparkline where space is short, a plotext line chart with axes where not.

Both views live in one widget and the stylesheet shows one of them; the hidden one is never
rendered, so keeping its data current is just a list assignment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static
from textual_plotext import PlotextPlot


def nice_ticks(lo: float, hi: float, target: int = 4, integer: bool = False) -> list[float]:
    """Round-numbered axis ticks covering [lo, hi] (plotext's own are unrounded)."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(1, target - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5) if m * mag >= raw), 10 * mag)
    if integer:
        step = max(1.0, float(round(step)))
    first = math.ceil(lo / step) * step
    count = int((hi - first) // step) + 1
    return [first + i * step for i in range(max(1, count))]


class TrendPlot(PlotextPlot):
    """A plotext line chart that rebuilds only when its points change."""

    def __init__(
        self,
        color: str,
        fmt: Callable[[float], str],
        *,
        integer: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._color = color
        self._fmt = fmt
        self._integer = integer

    def set_points(self, values: Sequence[float], stamps: Sequence[datetime]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if values:
            xs = list(range(1, len(values) + 1))
            plt.plot(xs, list(values), marker="braille", color=self._color)
            lo, hi = min(values), max(values)
            if hi == lo:
                plt.ylim(lo - 1, hi + 1)
            ticks = nice_ticks(lo, hi, integer=self._integer) if hi > lo else [lo]
            plt.yticks(ticks, [self._fmt(v) for v in ticks])
            # First and last only: they sit on the frame edges, so placement never wobbles.
            picks = sorted({0, len(xs) - 1})
            labels = [stamps[i].astimezone().strftime("%H:%M:%S") for i in picks]
            plt.xticks([xs[i] for i in picks], labels)
            plt.xlim(1, max(2, len(xs)))
        self.refresh()


class TrendChart(Vertical):
    """Title line with the latest figure, over a sparkline or a line chart."""

    DEFAULT_CSS = """
    TrendChart { height: 1fr; }
    TrendChart > .chart-title { height: 1; text-style: bold; }
    TrendChart > Sparkline { height: 1fr; }
    TrendChart > TrendPlot { height: 1fr; }
    """

    def __init__(
        self,
        title: str,
        color: str,
        fmt: Callable[[float], str],
        *,
        title_fmt: Callable[[float], str] | None = None,
        integer: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self._title_fmt = title_fmt or fmt
        self._fmt = fmt
        self._color = color
        self._integer = integer

    def compose(self) -> ComposeResult:
        yield Static(f"{self.title} · waiting for data", classes="chart-title", markup=False)
        yield Sparkline([], summary_function=max)
        yield TrendPlot(self._color, self._fmt, integer=self._integer)

    def set_points(self, values: Sequence[float], stamps: Sequence[datetime]) -> None:
        """Replace the plotted points (a new list, so the sparkline redraws)."""
        title = self.query_one(".chart-title", Static)
        if values:
            title.update(f"{self.title} · {self._title_fmt(values[-1])}")
        else:
            title.update(f"{self.title} · waiting for data")
        self.query_one(Sparkline).data = list(values)
        self.query_one(TrendPlot).set_points(values, stamps)
