"""The line chart with axes: the live samples' braille line, and the range views' bars per step
(daily, weekly, monthly trends) or line.

Drawn here rather than with plotext, for three reasons. plotext's bars sit at fractional columns,
so 30 daily bars in 48 columns came out as uneven blocks, gaps in some places and none in
others; here every bar gets the same whole number of columns. And plotext's braille line costs
about one call per dot it sets: a day of 1-minute points (1,440, spiky as per-minute counts
are) took it 50-80 ms a chart, in the event loop, so a key pressed meanwhile waited for two of
them. This draws each dot column from the span of the values that fall in it, in time linear
in the points plus the cells (about 3 ms for 1,440 points in 58x31). And the live view's
20 points, redrawn once a second in each of two charts, took plotext about half the monitor's
busy time, and importing plotext cost start-up time and memory.

The chart is cut into Strips once per change of points, size or style (strips.py); repaints
for any other reason cost nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from metrics_tui.widgets.strips import CachedChart

EIGHTHS = " ▁▂▃▄▅▆▇█"
#: Braille dot bits by (column in the cell, row in the cell from the top).
DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))

Kind = Literal["bars", "line"]


def nice_step(span: float, target: int = 4, integer: bool = False) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 times a power of ten) for about ``target`` ticks."""
    raw = span / max(1, target - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5) if m * mag >= raw), 10 * mag)
    return max(1.0, float(round(step))) if integer else step


def short_tick(value: float, prefix: str = "") -> str | None:
    """``$60K``, ``$2.5K``, ``1.25M``: a round tick with a unit, exact, or None if it has no
    short form of at most three significant digits."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        scaled = value / size
        if abs(scaled) >= 1 and round(scaled, 2) == scaled:
            return f"{prefix}{scaled:g}{unit}"
    return None


def group_sums(values: Sequence[float], columns: int) -> tuple[list[float], int]:
    """Values summed in runs so they fit ``columns`` bars; returns (sums, run length). A run
    length of 1 leaves them as they are (the usual case: the step is chosen to fit)."""
    run = max(1, math.ceil(len(values) / max(1, columns)))
    return [sum(values[i : i + run]) for i in range(0, len(values), run)], run


def bar_layout(count: int, columns: int) -> tuple[int, int, int]:
    """(bar width, slot width, left margin) for ``count`` bars in ``columns``: a gap of one
    column between bars once each gets two or more."""
    slot = max(1, columns // max(1, count))
    width = slot - 1 if slot >= 2 else 1
    if slot > 4:  # wide slots: bars a little slimmer than their slot
        width = max(2, slot * 2 // 3)
    return width, slot, (columns - slot * count) // 2


def braille_line(
    values: Sequence[float], lo: float, hi: float, columns: int, rows: int
) -> list[str]:
    """The values as a braille line over ``columns`` x ``rows`` cells, top row first.

    The points are spread over the dot columns and joined by straight segments; each dot
    column gets the dots from the lowest to the highest the segments through it reach, so the
    line is unbroken and every extreme shows, however many points share a column.
    """
    width, height = columns * 2, rows * 4
    if not values or width == 0 or height == 0:
        return [" " * columns for _ in range(rows)]
    span = hi - lo or 1.0
    n = len(values)
    xs = [round(i * (width - 1) / (n - 1)) if n > 1 else 0 for i in range(n)]
    ys = [(v - lo) / span * (height - 1) for v in values]  # 0 is the bottom dot row
    low = [math.inf] * width
    high = [-math.inf] * width

    def reach(x: int, a: float, b: float) -> None:
        low[x] = min(low[x], a, b)
        high[x] = max(high[x], a, b)

    reach(xs[0], ys[0], ys[0])
    for (x0, y0), (x1, y1) in itertools.pairwise(zip(xs, ys, strict=True)):
        if x1 == x0:
            reach(x0, y0, y1)
            continue
        slope = (y1 - y0) / (x1 - x0)
        for x in range(x0, x1 + 1):  # the segment's height across this column
            a = y0 + slope * (max(x0, x - 0.5) - x0)
            b = y0 + slope * (min(x1, x + 0.5) - x0)
            reach(x, a, b)
    cells = [[0] * columns for _ in range(rows)]
    for x in range(width):
        if high[x] < low[x]:
            continue
        bottom = max(0, min(height - 1, round(low[x])))
        top = max(0, min(height - 1, round(high[x])))
        bits = DOTS[x % 2]
        for y in range(bottom, top + 1):
            row = height - 1 - y
            cells[row // 4][x // 2] |= bits[row % 4]
    # An empty cell is a space rather than the blank braille pattern, which some fonts draw.
    return ["".join(chr(0x2800 + c) if c else " " for c in line) for line in cells]


class RangeChart(CachedChart, Widget):
    """Bars (one per step, from zero) or a line of the values given, over a y axis in the
    given format, the first and last bucket named under it."""

    DEFAULT_CSS = """
    RangeChart { height: 1fr; }
    """

    def __init__(self, fmt: Callable[[float], str], integer: bool) -> None:
        super().__init__(fmt, integer)
        self._kind: Kind = "line"
        self._values: tuple[float, ...] = ()
        self._labels: tuple[str, str] = ("", "")

    def set_points(
        self,
        values: Sequence[float],
        stamps: Sequence[datetime],
        label: Callable[[datetime], str],
        kind: Kind,
    ) -> None:
        ends = (label(stamps[0]), label(stamps[-1])) if stamps else ("", "")
        points = (kind, tuple(values), ends)
        if points == (self._kind, self._values, self._labels):
            return
        self._kind, self._values, self._labels = points
        if self.is_on_screen:
            self.refresh()

    def _chart_key(self, width: int, height: int) -> tuple[object, ...]:
        return (self._kind, self._values, self._labels, width, height, self.rich_style)

    def _blank_style(self) -> Style:
        return self.rich_style

    def _ticks(self, values: Sequence[float]) -> tuple[float, float, list[float]]:
        """(bottom, top, ticks), the axis widened to round ticks at both ends: bars stand on
        zero, a line spans its values."""
        lo = 0.0 if self._kind == "bars" else min(values)
        hi = max(max(values), lo)
        if hi <= lo:
            return lo - 1, lo + 1, [lo]
        step = nice_step(hi - lo, integer=self._integer)
        bottom, top = step * math.floor(lo / step), step * math.ceil(hi / step)
        count = round((top - bottom) / step)
        return bottom, top, [bottom + i * step for i in range(count + 1)]

    def _tick_texts(self, ticks: Sequence[float], short: bool) -> list[str]:
        """The axis labels; ``short`` ones ("$60K") where the full ones ("$60,000") would
        leave too few columns for a bar per step. Ticks are round, so both are exact."""
        prefix = self._fmt(0).rstrip("0.")
        texts = []
        for t in ticks:
            text = self._fmt(t)
            if t == 0:
                text = prefix + "0"  # "$0" rather than "$0.00": the floor, not a figure
            elif short:
                text = short_tick(t, prefix) or text
            texts.append(text)
        return texts

    def _build(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        axis = base + Style(dim=True)
        rows = height - 2  # the axis line and the labels under it
        if rows < 1 or width < 8 or not self._values:
            return [Strip.blank(width, base) for _ in range(height)]
        values: Sequence[float] = self._values
        for short in (False, True):
            lo, top, ticks = self._ticks(values)
            texts = self._tick_texts(ticks, short)
            gutter = max(map(len, texts)) + 1
            columns = width - gutter - 1  # the right-hand column stays free
            if self._kind != "bars" or len(values) <= columns:
                break
        if self._kind == "bars" and len(values) > columns:  # still too many: sum neighbours
            values, _run = group_sums(values, columns)
            lo, top, ticks = self._ticks(values)
            texts = self._tick_texts(ticks, short=True)
        at_row: dict[int, str] = {}
        floor_text = ""
        for t, text in zip(ticks, texts, strict=True):
            if self._kind == "bars" and t == 0:
                floor_text = text  # bars stand on the axis line: zero is written there
                continue
            at_row.setdefault(self._tick_row(t, lo, top, rows), text)
        if self._kind == "bars":
            body, count, slot, margin = self._bars(values, columns, rows, top)
        else:
            body = braille_line(values, lo, top, columns, rows)
            count, slot, margin = 1, columns, 0
        lines: list[Strip] = []
        for row in range(rows):
            label = at_row.get(row)
            segs = [
                Segment((label or "").rjust(gutter - 1), axis),
                Segment("┤" if label is not None else "│", axis),
                Segment(body[row], base),
            ]
            lines.append(Strip(segs).crop_extend(0, width, base))
        floor = [Segment(floor_text.rjust(gutter - 1) + "└" + "─" * columns, axis)]
        lines.append(Strip(floor).crop_extend(0, width, base))
        lines.append(self._label_line(width, gutter + margin, slot * count, axis, base))
        return lines

    def _tick_row(self, value: float, lo: float, top: float, rows: int) -> int:
        """The row (0 at the top) a tick labels: for bars, the row whose top edge is at the
        value; for a line, the row holding the dot the value would be drawn on."""
        share = (value - lo) / (top - lo)
        if self._kind == "bars":
            row = rows - round(share * rows)
        else:
            row = (rows * 4 - 1 - round(share * (rows * 4 - 1))) // 4
        return max(0, min(rows - 1, row))

    def _bars(
        self, values: Sequence[float], columns: int, rows: int, top: float
    ) -> tuple[list[str], int, int, int]:
        bar_w, slot, margin = bar_layout(len(values), columns)
        eighths = [round(max(v, 0.0) / top * rows * 8) for v in values]
        body = []
        for row in range(rows):
            level = (rows - 1 - row) * 8  # eighths below this row
            cells = [" "] * columns
            for i, e in enumerate(eighths):
                fill = min(8, max(0, e - level))
                if fill:
                    x = margin + i * slot
                    cells[x : x + bar_w] = EIGHTHS[fill] * bar_w
            body.append("".join(cells))
        return body, len(values), slot, margin

    def _label_line(self, width: int, start: int, span: int, axis: Style, base: Style) -> Strip:
        """The first and last bucket's names under the first and last bar (or the line's
        ends), as far as they fit."""
        first, last = self._labels
        cells = [" "] * width
        cells[start : start + len(first)] = first
        at = max(start + len(first) + 1, min(width, start + span) - len(last))
        if last and last != first and at + len(last) <= width:
            cells[at : at + len(last)] = last
        return Strip([Segment("".join(cells[:width]), axis)]).crop_extend(0, width, base)
