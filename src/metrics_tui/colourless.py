"""NO_COLOR as no-color.org asks for it: no colour codes at all.

Textual's own NO_COLOR filters still colour the screen: ``Monochrome`` (used with its default
themes) turns every colour into one of the 256-colour greys, the background a near-black
``48;5;234``; ``NoColor`` sets the terminal's default colours with ``39``/``49``. This filter
drops colour from every style and keeps the rest (bold, dim, italic, underline, reverse), so
the screen is drawn in the terminal's own colours and emphasis still reads.
"""

from __future__ import annotations

from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.filter import LineFilter


@lru_cache(1024)
def _colourless(style: Style) -> Style:
    return style.without_color


class Colourless(LineFilter):
    """Remove foreground and background colours from every segment."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return [
            Segment(text, None if style is None else _colourless(style), control)
            for text, style, control in segments
        ]
