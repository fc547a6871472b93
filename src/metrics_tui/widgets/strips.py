"""A chart cut into Strips once per change of what it shows.

``RangeChart`` (the live view's line and the range views' bars or line) builds every line of
the chart at once and keeps the strips until their key (points, size, style) changes, so
repaints for any other reason cost nothing. A hidden chart takes new points without
repainting; it repaints when shown.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.style import Style
from textual.strip import Strip


class CachedChart:
    """Mixin, before the widget class (it calls the widget's ``refresh`` and reads its
    ``size``): ``render_line`` from strips built by ``_build`` and kept while ``_chart_key`` is
    the same. ``_fmt`` writes a y-axis value; ``_integer``: the values are counts, so the
    ticks are whole numbers."""

    ALLOW_SELECT = False  # chart glyphs are not text to copy (and carry no selection offsets)

    def __init__(self, fmt: Callable[[float], str], integer: bool) -> None:
        super().__init__()
        self._fmt = fmt
        self._integer = integer
        self._drawn: tuple[object, ...] | None = None
        self._strips: list[Strip] = []

    def _chart_key(self, width: int, height: int) -> tuple[object, ...]:
        """Everything the strips depend on: they are built again when it changes."""
        raise NotImplementedError

    def _build(self, width: int, height: int) -> list[Strip]:
        raise NotImplementedError

    def _blank_style(self) -> Style:
        """The style of the lines below the chart's own."""
        raise NotImplementedError

    def on_show(self) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        strips = self._chart_strips()
        if y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self._blank_style())

    def _chart_strips(self) -> list[Strip]:
        width, height = self.size
        key = self._chart_key(width, height)
        if key != self._drawn:
            self._strips = self._build(width, height)
            self._drawn = key
        return self._strips
