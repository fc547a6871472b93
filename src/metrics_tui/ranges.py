"""What a range view shows: the preset keys, the ``/`` range input, the step that fits, labels.

Pure: the current time and the chart's width are passed in, so every rule is unit-testable.
Ends without an offset (``2026-11-01``, ``yesterday``) are sent as they are and the server reads
them in its ``--tz``: a day is the server's day, as on its cards.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from metrics_protocol.wire import MAX_RANGE_POINTS, Range, RangePoint
from metrics_protocol.wire import RANGE_STEPS as STEPS
from metrics_tui.history import (
    BAR_STEPS,
    NOMINAL,
    STEP_NAMES,
    endpoint_text,
    estimate_points,
    parse_endpoint,
)

#: A range view refreshes every step, but never more than once a minute.
MIN_REFRESH = 60.0
#: Fewest points a fitted step aims at, however narrow the chart (a sparkline still reads).
MIN_COLUMNS = 12

EXAMPLES = "2026-11-01..2026-11-15, yesterday, last week or this month"


class RangeInputError(ValueError):
    """A range the input cannot show; the message says why, in words for the user."""


@dataclass(frozen=True)
class RangeSpec:
    """One range view: what is asked for and how it is named."""

    #: "last 24 h", "yesterday", "2026-11-01..2026-11-15".
    label: str
    start: str
    end: str
    step: str
    #: Presets show their last ``keep`` points (they ask for a step more than that).
    keep: int | None = None
    #: The preset key ("2" to "6"), else None.
    key: str | None = None
    #: The input it was typed as: re-read on refresh, so "today" keeps up with the clock.
    text: str | None = None

    @property
    def bars(self) -> bool:
        return self.step in BAR_STEPS

    #: The label where space is short ("24 h").
    short: str = ""

    def title(self, metric: str) -> str:
        """``Revenue · last 24 h · 15 min``."""
        return f"{metric} · {self.label} · {STEP_NAMES[self.step]}"

    def titles(self, metric: str, suffix: str = "") -> tuple[str, ...]:
        """The title from long to short, for the chart to pick the one that fits."""
        short = self.short or self.label
        return (
            self.title(metric) + suffix,
            f"{metric} · {short} · {self.step}{suffix}",
            f"{metric} · {short}{suffix}",
            metric + suffix,
        )

    @property
    def refresh_every(self) -> float:
        """Seconds between refreshes: the step, or a minute if the step is shorter."""
        return max(MIN_REFRESH, NOMINAL[self.step].total_seconds())

    def shown(self, answer: Range) -> Range:
        """What the charts show of an answer: a preset's last ``keep`` points, the range
        starting at the first of them (what ``e`` exports and names its file after)."""
        points = answer.points[-self.keep :] if self.keep else answer.points
        if len(points) == len(answer.points):
            return answer
        return dataclasses.replace(answer, start=points[0].start, points=points)


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    short: str
    step: str
    count: int

    def spec(self, now: datetime) -> RangeSpec:
        """The last ``count`` steps up to ``now`` (the last one in progress).

        One step more is asked for and the first dropped, so the count holds whatever the
        server's zone does to where its buckets start.
        """
        now = now.astimezone(UTC).replace(microsecond=0)
        if self.step == "1mo":
            start = months_before(now, self.count + 1)
        else:
            start = now - NOMINAL[self.step] * (self.count + 1)
        return RangeSpec(
            self.label,
            endpoint_text(start),
            endpoint_text(now),
            self.step,
            keep=self.count,
            key=self.key,
            short=self.short,
        )


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset("2", "last hour", "1 h", "1m", 60),
        Preset("3", "last 24 h", "24 h", "15m", 96),
        Preset("4", "last 7 days", "7 d", "1h", 168),
        Preset("5", "last 30 days", "30 d", "1d", 30),
        Preset("6", "last 12 months", "12 mo", "1mo", 12),
    )
}


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (the day clamped to 28)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    return moment.replace(year=year, month=month + 1, day=min(moment.day, 28))


# --------------------------------------------------------------------------- the input

_RELATIVE = re.compile(r"last (\d{1,4}) ?(minutes?|min|hours?|h|days?|d|weeks?|w|months?|mo)")
_UNITS = {"min": "minutes", "h": "hours", "d": "days", "w": "weeks", "mo": "months"}


def parse_range(text: str, now: datetime, columns: int) -> RangeSpec:
    """A range from the ``/`` input, with the step that fits ``columns`` unless one is given.

    Accepts ``2026-11-01..2026-11-15`` (dates or ISO datetimes; ``to`` is exclusive, as in the
    API), ``today``, ``yesterday``, ``this week``, ``last week``, ``this month``, ``last
    month``, ``this year``, ``last year`` and ``last 6 hours``; a step may follow
    (``yesterday 5m``). ``now`` is local and aware. Raises RangeInputError saying why not.
    """
    words = " ".join(text.strip().lower().split())
    if not words:
        raise RangeInputError(f"Type a range: {EXAMPLES}")
    step: str | None = None
    head, _, last = words.rpartition(" ")
    if head and last in STEPS:
        words, step = head, last
    elif words in STEPS:
        raise RangeInputError(f"A step needs a range before it: {EXAMPLES}")
    start, end, label = _bounds(words, now)
    begin, finish = parse_endpoint(start), parse_endpoint(end)
    if _local(finish, now) <= _local(begin, now):
        raise RangeInputError(f"The range ends before it starts: {start} is not before {end}")
    span_of = _span(begin, finish, now)
    if step is None:
        step = fit_step(span_of, columns)
    points = span_of(step)
    if points > MAX_RANGE_POINTS:
        raise RangeInputError(
            f"{label} at {step} is {points:,} points; one view shows at most "
            f"{MAX_RANGE_POINTS:,}: choose a longer step or a shorter range"
        )
    return RangeSpec(label, start, end, step, text=text.strip(), short=_short(start, end, label))


def _short(start: str, end: str, label: str) -> str:
    """``11-01..11-15`` for two dates of one year; other labels stay as they are."""
    if ".." in label and len(start) == len(end) == 10 and start[:4] == end[:4]:
        return f"{start[5:]}..{end[5:]}"
    return label


def fit_step(points_at: Callable[[str], int], columns: int) -> str:
    """The shortest step whose points fit the chart's columns (the longest step if none do)."""
    want = max(MIN_COLUMNS, columns)
    return next((s for s in STEPS if points_at(s) <= want), STEPS[-1])


def _span(begin: datetime, finish: datetime, now: datetime) -> Callable[[str], int]:
    a, b = _local(begin, now), _local(finish, now)
    return lambda step: estimate_points(a, b, step)


def _local(moment: datetime, now: datetime) -> datetime:
    """An end without an offset, taken as local for estimates (the server reads it in its zone,
    which moves it by hours at most)."""
    return moment.replace(tzinfo=now.tzinfo) if moment.tzinfo is None else moment


def _bounds(words: str, now: datetime) -> tuple[str, str, str]:
    """(from, to, label) as sent and as named."""
    if ".." in words:
        left, _, right = words.partition("..")
        try:
            begin, finish = parse_endpoint(left), parse_endpoint(right)
        except ValueError as exc:
            why = str(exc)
            raise RangeInputError(f"{why[:1].upper()}{why[1:]}; try {EXAMPLES}") from None
        start, end = endpoint_text(begin), endpoint_text(finish)
        return start, end, f"{start}..{end}"
    today = now.date()
    until_now = endpoint_text(now.replace(microsecond=0))
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    named: dict[str, tuple[date, date | None]] = {
        "today": (today, None),
        "yesterday": (today - timedelta(days=1), today),
        "this week": (monday, None),
        "last week": (monday - timedelta(weeks=1), monday),
        "this month": (first, None),
        "last month": ((first - timedelta(days=1)).replace(day=1), first),
        "this year": (today.replace(month=1, day=1), None),
        "last year": (date(today.year - 1, 1, 1), today.replace(month=1, day=1)),
    }
    if words in named:
        a, b = named[words]
        return a.isoformat(), b.isoformat() if b is not None else until_now, words
    match = _RELATIVE.fullmatch(words)
    if match:
        n, unit = int(match.group(1)), match.group(2)
        unit = _UNITS.get(unit, unit if unit.endswith("s") else unit + "s")
        end = now.replace(microsecond=0)
        begin = months_before(end, n) if unit == "months" else end - timedelta(**{unit: n})
        return endpoint_text(begin), until_now, words
    raise RangeInputError(f"Not a range: {words!r}; try {EXAMPLES}")


# --------------------------------------------------------------------------- drawing


def stamp_format(step: str, points: Sequence[RangePoint]) -> Callable[[datetime], str]:
    """How the x axis names a bucket, in the server's own offset (its days are the buckets)."""
    if step == "1mo":
        fmt = "%b %Y"
    elif step in BAR_STEPS:
        fmt = "%d %b"
    elif len(points) > 1 and points[-1].start.date() != points[0].start.date():
        fmt = "%d %b %H:%M"  # "17:45 ... 17:30" would not say the first is yesterday
    else:
        fmt = "%H:%M"
    return lambda moment: moment.strftime(fmt)
