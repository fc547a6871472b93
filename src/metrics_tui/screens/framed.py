"""What the modal screens share: one framed, titled box in the middle of the screen."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen

ResultT = TypeVar("ResultT")


class FramedModal(ModalScreen[ResultT]):
    """A modal screen whose content (``compose_box``) stands in a box of class ``frame``:
    ``BOX`` (a scrolling one by default), titled ``box_title`` and ``box_subtitle``. A screen
    sets the box's width (and its max-height, when it scrolls) in its own stylesheet."""

    DEFAULT_CSS = """
    FramedModal { align: center middle; }
    FramedModal > .frame {
        height: auto;
        border: round $accent;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    """

    BOX: ClassVar[type[Vertical | VerticalScroll]] = VerticalScroll
    box_title: ClassVar[str] = ""
    box_subtitle: ClassVar[str | None] = None

    def compose(self) -> ComposeResult:
        with self.BOX(classes="frame") as box:
            box.border_title = self.box_title
            if self.box_subtitle is not None:
                box.border_subtitle = self.box_subtitle
            yield from self.compose_box()

    def compose_box(self) -> ComposeResult:
        raise NotImplementedError
