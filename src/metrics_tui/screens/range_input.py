"""The ``/`` range input: a date range, or words such as ``yesterday``; errors shown in place."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from metrics_tui.ranges import RangeInputError, RangeSpec
from metrics_tui.screens.framed import FramedModal

HINT = (
    "2026-11-01..2026-11-15 (the end not included)\n"
    "yesterday · last week · this month · today 5m (a step)\n"
    "enter shows it, escape closes"
)


class RangeInputScreen(FramedModal[RangeSpec | None]):
    """Asks for a range; a range that cannot be shown keeps the box open with the reason."""

    BINDINGS = [Binding("escape", "cancel", "Close")]

    DEFAULT_CSS = """
    RangeInputScreen > .frame { width: 66; max-width: 100%; }
    RangeInputScreen Input { width: 1fr; }
    RangeInputScreen #range-hint { color: $text-muted; }
    RangeInputScreen #range-error { color: $text-error; display: none; }
    RangeInputScreen #range-error.-shown { display: block; }
    """

    BOX = Vertical
    box_title = "Show a range"

    def __init__(self, parse: Callable[[str], RangeSpec], value: str = "") -> None:
        super().__init__()
        self._parse = parse
        self._value = value

    def compose_box(self) -> ComposeResult:
        yield Input(self._value, placeholder="a range, e.g. yesterday", id="range-text")
        yield Static("", id="range-error", markup=False)
        yield Static(HINT, id="range-hint", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            spec = self._parse(event.value)
        except RangeInputError as exc:
            error = self.query_one("#range-error", Static)
            error.update(str(exc))
            error.add_class("-shown")
            return
        self.dismiss(spec)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#range-error", Static).remove_class("-shown")

    def action_cancel(self) -> None:
        self.dismiss(None)
