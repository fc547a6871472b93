"""Which arrangement fits a terminal size. Pure, so every breakpoint is unit-testable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MIN_WIDTH = 40
MIN_HEIGHT = 15

CARD_HEIGHT = 6  # four figures and a border
CHROME = 2  # status line + footer
ROW_MIN_WIDTH = 80  # four cards side by side from here
ROOMY_WIDTH = 100  # cards get inner padding from here
PLOT_MIN_HEIGHT = 10  # a line chart with axes needs this many rows to read well
SPARK_MIN_HEIGHT = 3  # title + a two-row sparkline
FULL_FOOTER_WIDTH = 60  # below this the footer is compact and drops the ^p palette hint


@dataclass(frozen=True)
class Layout:
    too_small: bool
    cards: Literal["row", "grid"]
    charts: Literal["plot", "spark", "none"]
    stacked: bool  # charts one above the other instead of side by side
    roomy: bool


def layout_for(width: int, height: int) -> Layout:
    """120x40 and 80x24 get line charts; 60x20 sparklines; 40x15 figures only."""
    cards: Literal["row", "grid"] = "row" if width >= ROW_MIN_WIDTH else "grid"
    roomy = width >= ROOMY_WIDTH
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Layout(True, cards, "none", False, roomy)
    left = height - CHROME - CARD_HEIGHT * (1 if cards == "row" else 2)
    if width >= ROW_MIN_WIDTH and left >= PLOT_MIN_HEIGHT:
        return Layout(False, cards, "plot", False, roomy)
    if width < ROW_MIN_WIDTH and left >= 2 * PLOT_MIN_HEIGHT:
        return Layout(False, cards, "plot", True, roomy)
    if left >= SPARK_MIN_HEIGHT:
        return Layout(False, cards, "spark", False, roomy)
    return Layout(False, cards, "none", False, roomy)
