"""Figures over a date range, as plain code: step boundaries in a zone, requests, answers.

No I/O and no clock reads. The store keeps one row per bucket of every step (``range_buckets``:
sums, distinct users, the peak sample) and the (user, UTC minute) pairs behind the distinct
counts; this module says which buckets a minute belongs to, which buckets a request covers, and
turns the rows read back into an answer.

Buckets (docs/protocol.md):

* ``1m``, ``5m``, ``15m``: UTC-aligned. Every zone's offset since 2000 is a multiple of 15
  minutes (a test checks the zone database), so these are local minutes and quarters too.
* ``1h``: a local hour: a bucket starts whenever the local clock shows minute 0. Across a DST
  change of a whole hour every hour is 60 minutes long (New York's 01:00 EDT and 01:00 EST are
  two buckets; Chatham's change at 03:45 leaves its hours at a quarter past UTC hours); Lord
  Howe's half-hour change makes one of 90 minutes.
* ``1d``, ``1w``, ``1mo``: the local calendar day, ISO week (from Monday) and month, from the
  first instant of that date (a day across a DST change is 23 or 25 hours).

Instants are whole epoch seconds; a bucket of an event at ``ts`` is found from its UTC minute,
``int(ts) // 60`` (exact, like the live rollups' ``ts // 900``; ``int(ts / 60)`` can round up
across a boundary).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics_protocol.schema import cents_to_decimal
from metrics_protocol.wire import (
    MAX_RANGE_POINTS,
    RANGE_FORMATS,
    RANGE_STEPS,
    Range,
    RangePoint,
)

from .core import Plan, RangeDelta
from .events import Refusal

#: Steps aligned with UTC, and their length in seconds.
UTC_STEPS = {"1m": 60, "5m": 300, "15m": 900}
#: Steps that depend on the zone: their rows are rebuilt when --tz changes.
ZONE_STEPS = ("1h", "1d", "1w", "1mo")
#: No bucket of a step is longer (a day is 25 hours at most; 27 leaves room): a range whose
#: length divided by this is past the limit is refused without walking its boundaries.
_LONGEST = {"1h": 2 * 3600, "1d": 27 * 3600, "1w": 7 * 27 * 3600, "1mo": 31 * 27 * 3600}
_LONGEST.update(UTC_STEPS)
#: Instants a range may name: from 1970 to the start of 9999, so that every bucket's end still
#: has a calendar date in every zone.
FIRST_INSTANT = 0
LAST_INSTANT = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())
#: Spans cached per minute (a batch's minutes are few; a rebuild's are many, so it is bounded).
_SPAN_CACHE = 200_000
#: An RFC 9557 zone suffix: ``2026-11-01T09:00[Europe/Paris]``.
_ZONE_SUFFIX = re.compile(r"^(.*)\[([^\[\]]*)\]$")
_OFFSET_SUFFIX = re.compile(r"^(.*\d)(Z|z|[+-][0-9:.]*)$")


class RangeError(Refusal):
    """A request that cannot be answered; ``parameter`` names the query parameter (or message
    field) at fault."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """A validated request: ``starts`` are its buckets' first instants (epoch seconds)."""

    start: float
    end: float
    step: str
    starts: tuple[int, ...]
    fmt: str = "json"


# --------------------------------------------------------------------------- calendar


def _period_start(step: str, day: date) -> date:
    if step == "1w":
        return day - timedelta(days=day.weekday())
    if step == "1mo":
        return day.replace(day=1)
    return day


def _period_after(step: str, first: date) -> date:
    if step == "1w":
        return first + timedelta(days=7)
    if step == "1mo":
        return date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first + timedelta(days=1)


class Calendar:
    """Step boundaries in one zone. Everything is in whole epoch seconds."""

    def __init__(self, tz: ZoneInfo | str = "UTC") -> None:
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.name = str(self.tz.key)
        self._spans: dict[int, tuple[tuple[str, int, int], ...]] = {}

    def _local(self, t: int) -> datetime:
        return datetime.fromtimestamp(t, self.tz)

    def _on_the_hour(self, t: int) -> bool:
        lt = self._local(t)
        return lt.minute == 0 and lt.second == 0

    def first_instant(self, day: date) -> int:
        """The first instant of ``day``: its midnight, or the end of a DST gap that skips it
        (fold=0 reads a skipped time with the offset before the change: the change itself)."""
        return int(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp())

    def floor(self, step: str, t: float) -> int:
        """The first instant of the bucket of ``step`` that holds instant ``t``."""
        ti = math.floor(t)
        size = UTC_STEPS.get(step)
        if size is not None:
            return ti - ti % size
        if step == "1h":
            lt = self._local(ti)
            c = ti - lt.minute * 60 - lt.second  # minute 0 by t's clock: it is one, unless
            if self._on_the_hour(c):  # an offset change of part of an hour came in between
                return c
            c = ti - ti % 60  # offsets change on whole minutes: walk back to minute 0
            while not self._on_the_hour(c):
                c -= 60
            return c
        day = self._local(ti).date()
        return self.first_instant(_period_start(step, day))

    def following(self, step: str, start: int) -> int:
        """The first instant of the bucket after the one that starts at ``start``."""
        size = UTC_STEPS.get(step)
        if size is not None:
            return start + size
        if step == "1h":
            lt = self._local(start)
            c = start - lt.minute * 60 - lt.second + 3600  # the next minute 0, unless an
            off = lt.utcoffset()  # offset change of part of an hour comes in between
            lc = self._local(c)
            if lc.minute == 0 and lc.second == 0 and lc.utcoffset() == off:
                return c
            c = start + 60 - start % 60
            while not self._on_the_hour(c):
                c += 60
            return c
        first = _period_start(step, self._local(start).date())
        return self.first_instant(_period_after(step, first))

    def starts(
        self, step: str, start: float, end: float, limit: int = MAX_RANGE_POINTS
    ) -> list[int]:
        """The first instants of the buckets from the one holding ``start`` up to ``end``
        (exclusive). Raises RangeError (on ``step``) past ``limit`` buckets."""
        if (end - start) / _LONGEST[step] > limit:
            raise _too_many(step, limit)
        out: list[int] = []
        b = self.floor(step, start)
        while b < end:
            if len(out) == limit:
                raise _too_many(step, limit)
            out.append(b)
            b = self.following(step, b)
        return out

    def spans(self, minute: int) -> tuple[tuple[str, int, int], ...]:
        """Every step's bucket holding UTC minute ``minute``: (step, first, next first)."""
        got = self._spans.get(minute)
        if got is None:
            t = minute * 60
            out = [(step, t - t % size, t - t % size + size) for step, size in UTC_STEPS.items()]
            for step in ZONE_STEPS:
                a = self.floor(step, t)
                out.append((step, a, self.following(step, a)))
            if len(self._spans) >= _SPAN_CACHE:
                self._spans.clear()
            got = self._spans[minute] = tuple(out)
        return got

    def delta(self, plan: Plan) -> RangeDelta:
        """The range rollups' part of a batch: its per-minute sums added up per bucket of every
        step, and the buckets of each minute with users in it (for the store's distinct
        counts)."""
        spans = {m: self.spans(m) for m in plan.presence}
        sums: dict[tuple[str, int], list[int]] = {}
        for minute, row in plan.minutes.items():
            for step, first, _ in spans.get(minute) or self.spans(minute):
                acc = sums.get((step, first))
                if acc is None:
                    sums[(step, first)] = list(row)
                else:
                    for i, v in enumerate(row):
                        acc[i] += v
        return RangeDelta(sums, plan.presence, spans)

    def regroup(
        self,
        steps: Iterable[str],
        minute_rows: Iterable[Sequence[int | None]],
        user_minutes: Iterable[tuple[str, int]],
    ) -> tuple[dict[tuple[str, int], list], int]:
        """The rows of ``steps`` rebuilt from the per-minute rows (start, revenue_cents,
        completed, failed, started, views, peak) and the (user, UTC minute) pairs, which must
        come grouped by user, each user's minutes in order (a table's key order): (step, start)
        -> [revenue_cents, completed, failed, started, views, users, peak], and how many rows
        were skipped, dated where the zone has no calendar day (events stored by versions that
        let such times through; see core.Rollups.load). One pass over each; every store's
        rebuild (a new --tz, a backfill) goes through here."""
        wanted = set(steps)
        skipped = 0

        def spans(minute: int) -> tuple[tuple[str, int, int], ...]:
            nonlocal skipped
            try:
                return self.spans(minute)
            except (OverflowError, ValueError, OSError):  # datetime's ways of saying "no day"
                skipped += 1
                return ()

        rows: dict[tuple[str, int], list] = {}
        for start, *sums, peak in minute_rows:
            for step, first, _ in spans(start // 60):  # type: ignore[operator]
                if step not in wanted:
                    continue
                acc = rows.get((step, first))
                if acc is None:
                    rows[(step, first)] = [*sums, 0, peak]
                    continue
                for i, v in enumerate(sums):
                    acc[i] += v
                if peak is not None and (acc[6] is None or peak > acc[6]):
                    acc[6] = peak
        user = None
        last: dict[str, int] = {}
        for uid, minute in user_minutes:
            if uid != user:
                user, last = uid, {}
            for step, first, _ in spans(minute):
                if step in wanted and last.get(step) != first:
                    last[step] = first
                    acc = rows.get((step, first))
                    if acc is None:
                        acc = rows[(step, first)] = [0, 0, 0, 0, 0, 0, None]
                    acc[5] += 1
        return rows, skipped

    def peaks(self, samples: Iterable[tuple[int, int]]) -> list[tuple[str, int, int]]:
        """Per-minute peak samples as (step, first, value) for every step's bucket: the
        largest per bucket."""
        best: dict[tuple[str, int], int] = {}
        for minute, value in samples:
            for step, first, _ in self.spans(minute):
                if value > best.get((step, first), -1):
                    best[(step, first)] = value
        return [(step, first, v) for (step, first), v in best.items()]

    # ---- answers

    def answer(
        self,
        query: RangeQuery,
        rows: Sequence[Sequence[int | None]],
        live_peaks: Iterable[tuple[int, int]] = (),
    ) -> Range:
        """The answer from the store's rows of ``query.step`` (start, revenue_cents, completed,
        failed, started, views, users, peak), zeros where a bucket has no row; ``live_peaks``
        are (minute, value) samples the store does not have yet."""
        by_start = {r[0]: r for r in rows}
        peaks: dict[int, int] = {}
        first, end = query.starts[0], query.starts[-1]
        for minute, value in live_peaks:
            b = self.floor(query.step, minute * 60)
            if first <= b <= end and value > peaks.get(b, -1):
                peaks[b] = value
        tz = self.tz
        points = []
        for s in query.starts:
            row = by_start.get(s)
            if row is None:
                rev = completed = failed = started = views = users = 0
                peak = None
            else:
                _, rev, completed, failed, started, views, users, peak = row
            live = peaks.get(s)
            if live is not None and (peak is None or live > peak):
                peak = live
            points.append(
                RangePoint(
                    datetime.fromtimestamp(s, tz),
                    cents_to_decimal(rev),  # type: ignore[arg-type]
                    completed,  # type: ignore[arg-type]
                    failed,  # type: ignore[arg-type]
                    started,  # type: ignore[arg-type]
                    views,  # type: ignore[arg-type]
                    users,  # type: ignore[arg-type]
                    peak,
                )
            )
        return Range(
            datetime.fromtimestamp(query.start, tz),
            datetime.fromtimestamp(query.end, tz),
            query.step,
            self.name,
            tuple(points),
        )

    # ---- requests

    def parse_instant(self, value: object, parameter: str) -> float:
        """An ISO 8601 date or date-time; without an offset it is read in this zone (a date is
        its first instant). An RFC 9557 zone in brackets (``…T09:00[Europe/Paris]``) is read
        there. Raises RangeError naming ``parameter``."""
        if value is None or value == "":
            raise RangeError(parameter, f"'{parameter}' is required: an ISO 8601 date or time")
        if not isinstance(value, str):
            raise RangeError(parameter, f"'{parameter}' must be a string: an ISO 8601 date or time")
        text, tz = value.strip(), self.tz
        zone = _ZONE_SUFFIX.match(text)
        if zone is not None:
            text, name = zone.groups()
            try:
                tz = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise RangeError(
                    parameter, f"'{parameter}' names an unknown time zone: {name!r}"
                ) from None
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise RangeError(parameter, _bad_time(parameter, value, text)) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
        try:
            ts = when.timestamp()
        except (OverflowError, ValueError):
            ts = float("nan")
        if not FIRST_INSTANT <= ts < LAST_INSTANT:
            raise RangeError(
                parameter, f"'{parameter}' must be from 1970-01-01 to before 9999-01-01: {value!r}"
            )
        return ts

    def parse(self, values: Mapping[str, object], *, http: bool = False) -> RangeQuery:
        """A request from query parameters (``http``: ``format`` too) or a socket message.
        Raises RangeError naming the parameter at fault."""
        start = self.parse_instant(values.get("from"), "from")
        end = self.parse_instant(values.get("to"), "to")
        step = values.get("step")
        if step is None or step == "":
            raise RangeError("step", f"'step' is required: one of {' '.join(RANGE_STEPS)}")
        if step not in RANGE_STEPS:
            raise RangeError(
                "step", f"unknown step {_show(step)}; steps are {' '.join(RANGE_STEPS)}"
            )
        fmt = values.get("format", "json") if http else "json"
        if fmt not in RANGE_FORMATS:
            raise RangeError(
                "format", f"unknown format {_show(fmt)}; formats are {' '.join(RANGE_FORMATS)}"
            )
        if start >= end:
            raise RangeError(
                "from",
                f"'from' ({values.get('from')}) must be before 'to' ({values.get('to')}),"
                " which is exclusive",
            )
        assert isinstance(step, str) and isinstance(fmt, str)
        return RangeQuery(start, end, step, tuple(self.starts(step, start, end)), fmt)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_many(step: str, limit: int) -> RangeError:
    return RangeError(
        "step",
        f"the range has more than {limit:,} points of {step}; choose a longer step or a"
        " shorter range",
    )


def _bad_time(parameter: str, value: str, text: str) -> str:
    """Says whether the date or its UTC offset is wrong."""
    m = _OFFSET_SUFFIX.match(text)
    if m is not None and m.group(2) not in ("Z", "z"):
        try:
            datetime.fromisoformat(m.group(1))
        except ValueError:
            pass
        else:
            return (
                f"'{parameter}' has a bad UTC offset {m.group(2)!r} (write +01:00, -05:00 or Z):"
                f" {_show(value)}"
            )
    return (
        f"'{parameter}' is not an ISO 8601 date or time (2026-11-01 or 2026-11-01T09:30:00+01:00):"
        f" {_show(value)}"
    )


def query_values(query: str) -> dict[str, str]:
    """Query parameters, percent-decoded, with ``+`` kept as a plus: an unencoded UTC offset
    (``?from=2026-11-01T00:00+01:00``, as typed into curl) is read as written. Raises
    RangeError on a range parameter given twice."""
    out: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = unquote(key), unquote(value)
        if key in out and key in ("from", "to", "step", "format"):
            raise RangeError(key, f"'{key}' is given more than once")
        out[key] = value
    return out
