"""The metric cards, as the figure table (``metrics_protocol.figures``) declares them.

A card renders its own rows so it can pick label lengths for the width it has (a tmux split
is narrow) and so a changing figure can count up to its new value without re-mounting widgets.
The count-up runs a short timer only while a figure is moving; at rest a card costs nothing.

Repaints are kept to the rows that read differently: the figures on screen (``shown``), the
live dot (``pulsing``) and the alert marks (``alerts``) are reactives whose watchers diff the
rows against what is on screen and refresh only those lines, so a pulse of the live dot or one
moving figure redraws one row of one card.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.reactive import var
from textual.timer import Timer
from textual.widget import Widget

from metrics_protocol.figures import SCHEMA, Metrics
from metrics_protocol.schema import Card, Schema
from metrics_tui import formatting

Number = Decimal | int

#: A count-up is ~5 frames: enough to read as counting, few enough to cost little.
COUNT_UP_SECONDS = 0.3
COUNT_UP_FPS = 15
#: Beside the value of a row whose alert rule fires: under NO_COLOR the colour goes, this stays.
ALERT_MARKS = {"warning": " !", "critical": " !!"}


@dataclass(frozen=True)
class Row:
    """One figure: its key, labels from longest to shortest, and how to format it."""

    key: str
    labels: tuple[str, ...]
    fmt: Callable[[Number], str]
    #: The short form (``$12.35M``) for when the exact one leaves no room for the label.
    compact: Callable[[Number], str] | None = None
    #: "error" styles the value in the error colour when it is non-zero.
    alert: bool = False
    #: Show the live pulse beside this figure.
    pulse: bool = False


def _ease_out(t: float) -> float:
    return 1 - (1 - t) ** 3


def _between(a: Number, b: Number, t: float) -> Number:
    if isinstance(b, Decimal):
        return (Decimal(a) + (b - Decimal(a)) * Decimal(str(round(t, 4)))).quantize(formatting.CENT)
    return round(a + (b - a) * t)


class MetricCard(Widget):
    """A titled block of label/value rows."""

    COMPONENT_CLASSES = {
        "card--label",
        "card--value",
        "card--alert",
        "card--pulse",
        "card--pulse-rest",
        "card--warning",
        "card--critical",
    }

    DEFAULT_CSS = """
    MetricCard {
        height: auto;
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
    }
    MetricCard > .card--label { color: $text-muted; }
    MetricCard > .card--value { text-style: bold; }
    MetricCard > .card--alert { color: $text-error; text-style: bold; }
    MetricCard > .card--pulse { color: $text-success; text-style: bold; }
    MetricCard > .card--pulse-rest { color: $success-darken-1; }
    MetricCard > .card--warning { color: $text-warning; text-style: bold; }
    MetricCard > .card--critical { color: $text-error; text-style: bold reverse; }
    """

    #: The figures on screen (during a count-up, on their way to ``targets``).
    shown: var[dict[str, Number]] = var(dict, init=False)
    #: The live dot's phase: it swaps with each update.
    pulsing: var[bool] = var(False, init=False)
    #: The rows whose alert rules fire: row key -> "warning" or "critical".
    alerts: var[dict[str, str]] = var(dict, init=False)

    def __init__(
        self,
        title: str,
        rows: Sequence[Row],
        *,
        count_up: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        #: Animate changed figures (money); counts just jump, which keeps a busy feed cheap.
        self.count_up = count_up
        self.rows = tuple(rows)
        self.targets: dict[str, Number] = {}
        self._from: dict[str, Number] = {}
        self._tween_started = 0.0
        self._tween: Timer | None = None
        #: The rows as last rendered, to repaint only those that change.
        self._drawn: list[Text] | None = None
        #: Row key -> severity of the alert rule firing on it.

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[override]
        return len(self.rows)

    # ------------------------------------------------------------------ data

    def set_values(self, values: dict[str, Number], *, animate: bool) -> None:
        """Show new figures; with ``animate`` the changed ones count up to their new value."""
        changed = {k: v for k, v in values.items() if self.targets.get(k) != v}
        if not changed and self.targets:
            return
        first = not self.targets
        self.targets = dict(values)
        if animate and self.count_up and not first:
            # The first frame comes from the timer: until then the old figures stand.
            self._from = dict(self.shown)
            self._tween_started = time.monotonic()
            if self._tween is None:
                self._tween = self.set_interval(1 / COUNT_UP_FPS, self._step)
        else:
            self._finish()  # the first figures are shown at once, never counted up to

    def set_alerts(self, alerts: dict[str, str]) -> None:
        """Mark the rows whose alert rules fire (row key -> "warning" or "critical")."""
        self.alerts = dict(alerts)

    def _step(self) -> None:
        t = (time.monotonic() - self._tween_started) / COUNT_UP_SECONDS
        if t >= 1:
            self._finish()
        else:
            e = _ease_out(t)
            self.shown = {
                k: _between(self._from.get(k, v), v, e) if k in self._from else v
                for k, v in self.targets.items()
            }

    def _finish(self) -> None:
        self.shown = dict(self.targets)
        if self._tween is not None:
            self._tween.stop()
            self._tween = None

    def pulse(self) -> None:
        """Beat the live dot: it swaps between bright and dim with each update.

        A swap is one row repainted in the frame that draws the update anyway. A flash that
        goes out by itself would cost a frame of its own for every update.
        """
        if any(r.pulse for r in self.rows):
            self.pulsing = not self.pulsing

    def watch_pulsing(self) -> None:
        row = next(y for y, r in enumerate(self.rows) if r.pulse)
        if self.shown.get(self.rows[row].key) is not None and self.is_mounted:
            self.refresh(Region(0, row, self.content_size.width, 1))

    def watch_shown(self) -> None:
        self._repaint()

    def watch_alerts(self) -> None:
        self._repaint()

    def _repaint(self) -> None:
        """Refresh only the rows that now read differently from what is on screen."""
        if self._drawn is None or not self.is_mounted:
            self.refresh()
            return
        width = self.content_size.width
        regions = [
            Region(0, y, width, 1)
            for y, (old, new) in enumerate(zip(self._drawn, self._lines(), strict=True))
            if old != new
        ]
        if regions:
            self.refresh(*regions)

    # ------------------------------------------------------------------ drawing

    def render(self) -> Text:
        self._drawn = self._lines()
        return Text("\n", no_wrap=True, overflow="crop").join(self._drawn)

    def _lines(self) -> list[Text]:
        width = max(1, self.content_size.width)
        label_style = self.get_component_rich_style("card--label")
        value_style = self.get_component_rich_style("card--value")
        alert_style = self.get_component_rich_style("card--alert")
        pulse_style = self.get_component_rich_style(
            "card--pulse" if self.pulsing else "card--pulse-rest"
        )
        cells: list[tuple[Row, tuple[str, str], Style, Text]] = []
        for row in self.rows:
            value = self.shown.get(row.key)
            if value is None:
                forms = ("—", "—")
            else:
                exact = row.fmt(value)
                forms = (exact, row.compact(value) if row.compact else exact)
            style: Style = alert_style if row.alert and value else value_style
            tail = Text(" ●", style=pulse_style) if row.pulse and value is not None else Text()
            if level := self.alerts.get(row.key):
                style = self.get_component_rich_style(f"card--{level}")
                tail = Text(ALERT_MARKS[level], style=style) + tail
            cells.append((row, forms, style, tail))
        tier, compact = self._fit(width, cells)
        lines: list[Text] = []
        for (row, forms, style, tail), short in zip(cells, compact, strict=True):
            shown = forms[short]
            room = width - len(shown) - len(tail)
            label = row.labels[min(tier, len(row.labels) - 1)]
            if len(label) + 1 > room:
                label = ""
            line = Text(no_wrap=True, overflow="crop", end="")
            # A firing row is one bar of its colour, label to marker.
            alerted = row.key in self.alerts
            line.append(label, style if alerted else label_style)
            line.append(" " * max(0, room - len(label)), style if alerted else None)
            line.append(shown, style)
            line.append_text(tail)
            lines.append(line)
        return lines

    @staticmethod
    def _fit(
        width: int, cells: Sequence[tuple[Row, tuple[str, str], Style, Text]]
    ) -> tuple[int, list[bool]]:
        """The label set and, per row, whether its figure goes compact.

        Every row keeps a label; a figure goes compact only when its exact form leaves no room
        for the label. Fewest compact figures wins over longer labels ("Month $87,330.60"
        rather than "This month $87.33K"); one label set per card, so no card mixes long and
        short labels.
        """
        tiers = max(len(row.labels) for row, *_ in cells)
        best: tuple[int, int, list[bool]] | None = None
        for tier in range(tiers):
            compact: list[bool] = []
            for row, (exact, short), _, tail in cells:
                need = len(row.labels[min(tier, len(row.labels) - 1)]) + 1 + len(tail)
                if need + len(exact) <= width:
                    compact.append(False)
                elif need + len(short) <= width:
                    compact.append(True)
                else:
                    break
            else:
                if best is None or sum(compact) < best[0]:
                    best = (sum(compact), tier, compact)
        if best is None:  # narrower than any terminal the layout allows: compact, labels cut
            return tiers - 1, [True] * len(cells)
        return best[1], best[2]


def metric_card(card: Card, schema: Schema = SCHEMA) -> MetricCard:
    """The card as the figure table declares it: its figures, in table order, are its rows."""
    rows = [
        Row(
            f.attr,
            f.labels,
            formatting.BY_KIND[f.kind],
            formatting.COMPACT_BY_KIND.get(f.kind),
            alert=f.alert,
            pulse=f.pulse,
        )
        for f in schema.card_figures(card.id)
    ]
    return MetricCard(card.title, rows, count_up=card.count_up, id=card.id, classes="card")


def metric_cards(schema: Schema = SCHEMA) -> list[MetricCard]:
    """Every card of the figure table, in its order."""
    return [metric_card(card, schema) for card in schema.cards]


#: The cards that carry the live pulse.
PULSE_CARDS = tuple(dict.fromkeys(f.card for f in SCHEMA.figures if f.pulse))


def card_values(m: Metrics, schema: Schema = SCHEMA) -> dict[str, dict[str, Number]]:
    """Each card's figures from a snapshot, keyed by card id (groups left out stay as they were)."""
    out: dict[str, dict[str, Number]] = {}
    for card_id, paths in schema.card_paths.items():
        values: dict[str, Number] = {}
        for group_attr, attrs in paths:
            if (group := getattr(m, group_attr)) is not None:
                for attr in attrs:
                    values[attr] = getattr(group, attr)
        if values:
            out[card_id] = values
    return out
