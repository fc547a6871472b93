"""Bars per step (the daily, weekly and monthly trend charts), drawn with block glyphs.

plotext's bars sit at fractional columns, so 30 daily bars in 48 columns came out as uneven
blocks with gaps in some places and none in others. Here every bar gets the same whole number
of columns and a gap where there is room, its height in eighths of a row (``▁`` to ``█``), and
the axis reads in money. Like ``TrendPlot`` the chart is cut into Strips once per change of
points or size; repaints for any other reason cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from metrics_tui.widgets.plot import nice_ticks

EIGHTHS = " ▁▂▃▄▅▆▇█"


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
    if slot > 4:  # wide slots: keep bars a little slimmer than their slot, centred
        width = max(2, slot * 2 // 3)
    return width, slot, (columns - slot * count) // 2


class RangeBars(Widget):
    """Bars of the values given, one per step, over a y axis in the given format."""

    DEFAULT_CSS = """
    RangeBars { height: 1fr; }
    """

    ALLOW_SELECT = False

    def __init__(
        self,
        fmt: Callable[[float], str],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._fmt = fmt
        self._values: tuple[float, ...] = ()
        self._labels: tuple[str, ...] = ()
        self._drawn: tuple[object, ...] | None = None
        self._strips: list[Strip] = []

    def set_points(
        self,
        values: Sequence[float],
        stamps: Sequence[datetime],
        label: Callable[[datetime], str],
    ) -> None:
        points = (tuple(values), tuple(label(s) for s in stamps))
        if points == (self._values, self._labels):
            return
        self._values, self._labels = points
        self._drawn = None
        if self.is_on_screen:
            self.refresh()

    def on_show(self) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        strips = self._chart_strips()
        if y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _chart_strips(self) -> list[Strip]:
        width, height = self.size
        key = (self._values, self._labels, width, height, self.rich_style)
        if key != self._drawn:
            self._strips = self._build(width, height)
            self._drawn = key
        return self._strips

    def _build(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        axis = base + Style(dim=True)
        rows = height - 2  # the axis line and the labels under it
        if rows < 1 or width < 8 or not self._values:
            return [Strip.blank(width, base) for _ in range(height)]
        top_value = max(max(self._values), 0.0)
        ticks = nice_ticks(0.0, top_value) if top_value > 0 else [0.0]
        step = ticks[1] - ticks[0] if len(ticks) > 1 else max(top_value, 1.0)
        top = max(step * math.ceil(top_value / step), step) if top_value > 0 else 1.0
        ticks = [t for t in ticks if t <= top] + ([top] if ticks[-1] < top else [])
        # "$0" rather than "$0.00": the floor reads as a floor, not as a figure.
        texts = [self._fmt(t).replace(".00", "") if t == 0 else self._fmt(t) for t in ticks]
        gutter = max(map(len, texts)) + 1
        columns = width - gutter - 1  # the right-hand frame column stays free
        values, _run = group_sums(self._values, columns)
        bar_w, slot, margin = bar_layout(len(values), columns)
        eighths = [round(max(v, 0.0) / top * rows * 8) for v in values]
        # A tick's row: the one whose top edge is at its value (row 0 is the top); zero is on
        # the axis line itself.
        at_row: dict[int, str] = {}
        for t, text in zip(ticks, texts, strict=True):
            if t > 0:
                at_row.setdefault(max(0, rows - round(t / top * rows)), text)
        lines: list[Strip] = []
        for row in range(rows):
            level = (rows - 1 - row) * 8  # eighths below this row
            label = at_row.get(row)
            cells = [" "] * columns
            for i, e in enumerate(eighths):
                fill = min(8, max(0, e - level))
                if fill:
                    x = margin + i * slot
                    cells[x : x + bar_w] = EIGHTHS[fill] * bar_w
            segs = [
                Segment((label or "").rjust(gutter - 1), axis),
                Segment("┤" if label is not None else "│", axis),
                Segment("".join(cells), base),
            ]
            lines.append(Strip(segs).crop_extend(0, width, base))
        zero = texts[0] if ticks[0] == 0 else ""
        floor = [Segment(zero.rjust(gutter - 1) + "└" + "─" * columns, axis)]
        lines.append(Strip(floor).crop_extend(0, width, base))
        lines.append(self._label_line(width, gutter, margin, slot, len(values), axis, base))
        return lines

    def _label_line(
        self, width: int, gutter: int, margin: int, slot: int, count: int, axis: Style, base: Style
    ) -> Strip:
        """The first and last bucket's names under their bars (as far as they fit)."""
        if not self._labels:
            return Strip.blank(width, base)
        first, last = self._labels[0], self._labels[-1]
        cells = [" "] * width
        start = gutter + margin
        cells[start : start + len(first)] = first
        end_at = min(width, gutter + margin + slot * count)
        at = max(start + len(first) + 1, end_at - len(last))
        if count > 1 and at + len(last) <= width:
            cells[at : at + len(last)] = last
        return Strip([Segment("".join(cells[:width]), axis)]).crop_extend(0, width, base)
