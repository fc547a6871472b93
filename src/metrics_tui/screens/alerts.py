"""The ``a`` screen: every alert rule, its state, its value and for how long."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from metrics_tui import formatting
from metrics_tui.alerts import RuleState, State, format_duration, value_text
from metrics_tui.screens.framed import FramedModal

NO_RULES = (
    "No alert rules.\n\n"
    "Add [[alerts]] tables to the config file, e.g.\n"
    '  name = "payment failures"\n'
    '  metric = "transactions.failed"\n'
    "  above = 0\n"
    '  severity = "critical"'
)


def state_words(s: RuleState, now: float) -> str:
    """``CRITICAL 2m05s``, ``pending 10s of 30s``, ``ok``, ``unknown`` (and why, below it)."""
    match s.state:
        case State.FIRING:
            return f"{s.rule.severity.upper()} {formatting.age(now - (s.since or now))}"
        case State.PENDING:
            held = formatting.age(now - (s.since or now))
            return f"pending {held} of {format_duration(s.rule.hold)}"
        case State.OK:
            return "ok"
    return f"unknown\n{s.why}" if s.why else "unknown"


def rules_table(states: Sequence[RuleState], now: float) -> Table:
    """Two lines per rule, in the config file's order: its name, value and state, then what
    it watches (and why it is unknown). Firing rules in their severity's style and, for
    NO_COLOR, marked with ``!`` (warning) or ``!!`` (critical)."""
    table = Table(box=None, pad_edge=False, expand=False, header_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("rule")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("state")
    for s in states:
        firing = s.state is State.FIRING
        style = ("bold red" if s.rule.severity == "critical" else "bold yellow") if firing else ""
        mark = ("!!" if s.rule.severity == "critical" else "!") if firing else ""
        when = f"{s.rule.metric} {s.rule.condition}".replace(" stale", "")
        words, _, why = state_words(s, now).partition("\n")
        table.add_row(
            mark,
            Text.assemble(s.rule.name, "\n", (when, "dim")),
            value_text(s),
            Text.assemble(words, "\n", (why, "dim")) if why else words,
            style=style or None,
        )
    return table


class AlertsScreen(FramedModal[None]):
    """Modal list of the alert rules; escape or ``a`` closes. Redrawn by the app as the
    states change and once a second for the times."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("a", "dismiss", "Close", show=False, id="alerts"),
    ]

    DEFAULT_CSS = """
    AlertsScreen > .frame {
        /* Not auto: a table measured inside an auto-width box gets no width at all. */
        width: 100%;
        max-width: 100;
        max-height: 100%;
    }
    AlertsScreen Static { width: 100%; }
    """

    box_title = "Alert rules"
    box_subtitle = "escape or a closes"

    def __init__(self, states: Callable[[], Sequence[RuleState]], clock: Callable[[], float]):
        super().__init__()
        self._states = states
        self._clock = clock

    def compose_box(self) -> ComposeResult:
        yield Static(self._content(), id="rules", markup=False)

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw)

    def _content(self) -> Table | str:
        states = self._states()
        return rules_table(states, self._clock()) if states else NO_RULES

    def redraw(self) -> None:
        self.query_one("#rules", Static).update(self._content())

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
