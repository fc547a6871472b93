"""The line chart with axes: plotext, drawn straight into cached Strips.

Its own module so that plotext (~40 ms to import) loads after the dashboard's first frame:
``TrendChart`` mounts the plot once that frame is on screen.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import datetime

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.reactive import var
from textual.strip import Strip
from textual_plotext import PlotextPlot

from metrics_tui.widgets.strips import CachedChart


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


class TrendPlot(CachedChart, PlotextPlot):
    """A plotext line chart, built only when its points, size or theme change.

    plotext draws the whole chart as one ANSI string. Going from there to the screen through
    ``Text.from_ansi`` and Textual's Content costs twice the build itself, so the string is cut
    straight into Strips (its only escapes are colour codes, each run ended by a reset) and the
    strips are kept until the points, the size or the theme change: with one point a second
    that is one build a second, and repaints for any other reason cost nothing here.
    """

    #: The plotted values and the server times of their samples.
    points: var[tuple[tuple[float, ...], tuple[datetime, ...]]] = var(((), ()), init=False)

    def __init__(self, color: str, fmt: Callable[[float], str], integer: bool) -> None:
        super().__init__(fmt, integer)
        self._color = color
        #: Counts the changes that call for a new build: points, and theme colours.
        self._version = 0

    def on_mount(self) -> None:
        # PlotextPlot registers the new theme's colours on the same signal: build again then.
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: object) -> None:
        self._version += 1
        self.refresh()

    def watch_points(self, points: tuple[tuple[float, ...], tuple[datetime, ...]]) -> None:
        values, stamps = points
        self._version += 1
        plt = self.plt
        # clear_data resets the series and the limits; the ticks are set anew below. The
        # whole figure (clear_figure, ~0.5 ms) is rebuilt only when there is nothing to show.
        plt.clear_data()
        if not values:
            plt.clear_figure()
        else:
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
        if self.is_on_screen:
            self.refresh()

    def _chart_key(self, width: int, height: int) -> tuple[object, ...]:
        theme = self._get_plotext_theme_name(self.app.theme)
        return (self._version, width, height, theme, self.visual_style)

    def _blank_style(self) -> Style:
        return self.visual_style.rich_style

    def _build(self, width: int, height: int) -> list[Strip]:
        # As PlotextPlot.render sets the plot up, without its Text.from_ansi.
        plot = self.plt
        plot.plotsize(width, height)
        plot._set_size(width, height)
        plot.theme(self._get_plotext_theme_name(self.app.theme))
        base = self.visual_style.rich_style
        return [
            Strip(Segment.simplify(_ansi_segments(line, base))).crop_extend(0, width, base)
            for line in plot.build().split("\n")[:height]
        ]


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


@functools.lru_cache(maxsize=256)
def _sgr_style(codes: str) -> Style:
    """The Rich style of a run of SGR codes (a handful of distinct ones per chart)."""
    if not codes:
        return Style.null()
    text = Text.from_ansi(f"\x1b[{codes}m.")
    return text.spans[0].style if text.spans else Style.null()  # type: ignore[return-value]


def _ansi_segments(line: str, base: Style) -> list[Segment]:
    """Segments of one line of plotext's output, over the widget's own style.

    plotext resets after every run, even between runs of one colour: ``Segment.simplify``
    (by the caller) joins those, so each strip has a few segments rather than dozens.
    """
    segments: list[Segment] = []
    codes = ""  # SGR codes in force since the last reset
    pos = 0
    for match in _SGR.finditer(line):
        start = match.start()
        if start > pos:
            segments.append(Segment(line[pos:start], base + _sgr_style(codes)))
        code = match.group(1)
        codes = "" if code in ("", "0") else f"{codes};{code}" if codes else code
        pos = match.end()
    if pos < len(line):
        segments.append(Segment(line[pos:], base + _sgr_style(codes)))
    return segments
