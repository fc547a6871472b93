"""Ranges of past figures: the range answer read exactly, fetched in pages, written as CSV/JSON.

No Textual here: ``metrics-tui export`` uses this module without starting the monitor, and the
monitor's charts and its ``e`` export read the same `RangeAnswer`. Money stays a Decimal from
the wire to the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics_protocol.figures import SCHEMA
from metrics_protocol.wire import CENT, REST_METRICS_PATH, ProtocolError, encode, loads
from metrics_tui.wire import rest_url

if TYPE_CHECKING:
    import httpx

# --- Protocol constants of issue 11. Declared here, once, until metrics_protocol.wire holds
# --- them (the server side adds them there); everything in the monitor imports these names.
#: The REST route of a range (the same port as the WebSocket).
HISTORY_PATH = "/api/v1/analytics/history"
#: The message type of a range request and of its answer on /ws/metrics.
RANGE_TYPE = "range"
#: The steps a range can be asked in, shortest first.
STEPS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d", "1w", "1mo")
#: The most points one request may ask for; more is refused with HTTP 400.
MAX_RANGE_POINTS = 5000
#: Distinct users in a bucket: the wire key of the snapshot's group, which only the figure
#: table spells (tests/test_schema.py).
ACTIVE_USERS = SCHEMA.groups[1]
#: A point's fields on the wire, in the server's CSV column order.
POINT_FIELDS: tuple[str, ...] = (
    "start",
    "revenue",
    "completed",
    "failed",
    "started",
    "views",
    ACTIVE_USERS,
    "peakCurrent",
)

#: How a step reads in a chart title ("Revenue · last 24 h · 15 min").
STEP_NAMES = {
    "1m": "1 min",
    "5m": "5 min",
    "15m": "15 min",
    "1h": "1 h",
    "1d": "1 day",
    "1w": "1 week",
    "1mo": "1 month",
}
#: A step's usual length; days, weeks and months are calendar periods in the server's zone.
NOMINAL = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
    "1mo": timedelta(days=30.436875),  # 365.2425 / 12
}
#: A step's shortest length: a day across a DST change is 23 hours, February 28 days.
SHORTEST = {
    **NOMINAL,
    "1d": timedelta(hours=23),
    "1w": timedelta(weeks=1, hours=-1),
    "1mo": timedelta(days=28, hours=-1),
}
#: Steps drawn as bars: the daily, weekly and monthly trend charts.
BAR_STEPS = frozenset({"1d", "1w", "1mo"})


class RangeError(Exception):
    """The server refused a range (HTTP 400, or an ``error`` message with the request's id)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RangePoint:
    """One bucket, [start, next start), as the server counted it."""

    start: datetime
    revenue: Decimal
    completed: int
    failed: int
    started: int
    views: int
    active_users: int
    #: The largest sampled current-users figure in the bucket; None where none was sampled.
    peak_current: int | None
    #: ``activeUsers`` is an approximation (weekly and monthly steps; see docs/protocol.md).
    approx: bool = False


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    start: str
    end: str
    step: str
    tz: str
    points: tuple[RangePoint, ...]


# --------------------------------------------------------------------------- reading


def _count(point: dict[str, Any], key: str, *, nullable: bool = False) -> int | None:
    value = point.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"point field {key!r} must be a whole number >= 0, not {value!r}")
    return value


def _money(value: Any) -> Decimal:
    # loads() reads 1234.50 as Decimal("1234.50"); a whole number may come as an int.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ProtocolError(f"point field 'revenue' must be a number, not {value!r}")
    amount = Decimal(value)
    if amount != amount.quantize(CENT) or amount < 0:
        raise ProtocolError(f"point field 'revenue' must be >= 0 in cents, not {value}")
    return amount.quantize(CENT)


def decode_point(point: Any) -> RangePoint:
    if not isinstance(point, dict):
        raise ProtocolError("each point must be an object")
    stamp = point.get("start")
    try:
        start = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        start = None
    if start is None or start.tzinfo is None:
        raise ProtocolError(f"point field 'start' must be ISO 8601 with an offset, not {stamp!r}")
    return RangePoint(
        start=start,
        revenue=_money(point.get("revenue")),
        completed=_count(point, "completed"),  # type: ignore[arg-type]
        failed=_count(point, "failed"),  # type: ignore[arg-type]
        started=_count(point, "started"),  # type: ignore[arg-type]
        views=_count(point, "views"),  # type: ignore[arg-type]
        active_users=_count(point, ACTIVE_USERS),  # type: ignore[arg-type]
        peak_current=_count(point, "peakCurrent", nullable=True),
        approx=point.get("approx") is True,
    )


def decode_range(body: Any) -> RangeAnswer:
    """A ``{"type":"range",...}`` message or REST answer, exactly; ProtocolError if malformed."""
    if not isinstance(body, dict) or body.get("type") != RANGE_TYPE:
        raise ProtocolError("expected a range message")
    points = body.get("points")
    if not isinstance(points, list):
        raise ProtocolError("'points' of a range must be a list")
    step = body.get("step")
    if step not in STEPS:
        raise ProtocolError(f"unknown step {step!r}")
    return RangeAnswer(
        start=str(body.get("from", "")),
        end=str(body.get("to", "")),
        step=step,
        tz=str(body.get("tz", "")),
        points=tuple(decode_point(p) for p in points),
    )


def error_text(body: Any) -> tuple[str, str]:
    """(code, message) of an ``{"type":"error","error":{...}}`` object, as far as it has them."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    return str(err.get("code", "")), str(err.get("message", "")) or "refused"


# --------------------------------------------------------------------------- requests


def range_request(rid: int, start: str, end: str, step: str) -> str:
    """The WebSocket request; its answer carries the same ``id``."""
    return encode({"type": RANGE_TYPE, "id": rid, "from": start, "to": end, "step": step})


def history_url(ws_url: str) -> str:
    """The REST range route beside a WebSocket URL (keeps any proxy path prefix)."""
    return rest_url(ws_url).removesuffix(REST_METRICS_PATH) + HISTORY_PATH


async def fetch_range_rest(
    http: httpx.AsyncClient, url: str, start: str, end: str, step: str
) -> Any:
    """One range over REST, as the decoded JSON body. A 400 raises RangeError with the
    server's reason; other failures raise httpx's errors."""
    response = await http.get(url, params={"from": start, "to": end, "step": step})
    if response.status_code == 400:
        code, message = error_text(_json_or_none(response.content))
        raise RangeError(message, code)
    response.raise_for_status()
    return loads(response.content)


def _json_or_none(content: bytes) -> Any:
    try:
        return loads(content)
    except ProtocolError:
        return None


# --------------------------------------------------------------------------- endpoints


def parse_endpoint(text: str) -> datetime:
    """``2026-11-01`` or an ISO 8601 datetime, with or without an offset (without one the server
    reads it in its ``--tz``). Raises ValueError saying what is expected."""
    value = text.strip().upper()  # "2026-11-01t10:00z" as typed in lower case
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time())
        if len(value) > 10 and value[10] in "T ":
            return datetime.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError(f"not a date (2026-11-01) or ISO 8601 datetime: {text.strip()!r}")


def endpoint_text(moment: datetime) -> str:
    """How an endpoint is sent: a date alone at midnight without an offset, else ISO 8601."""
    if moment.tzinfo is None and moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.isoformat(timespec="seconds" if not moment.microsecond else "auto")


def estimate_points(start: datetime, end: datetime, step: str) -> int:
    """About how many points [start, end) holds at ``step``: exact for ends on bucket
    boundaries, one short when the first bucket starts before ``start``."""
    if end <= start:
        return 0
    return math.ceil((end - start) / NOMINAL[step])


def zone_of(answer: RangeAnswer) -> tzinfo:
    """The server's zone (its ``tz``), else the offset of its first point, else UTC."""
    try:
        return ZoneInfo(answer.tz)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    if answer.points and answer.points[0].start.tzinfo is not None:
        return answer.points[0].start.tzinfo
    return UTC


def _aware(moment: datetime, zone: tzinfo) -> datetime:
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


# --------------------------------------------------------------------------- paging

#: ``fetch(from, to)``: one range request of at most MAX_RANGE_POINTS points, its JSON body.
Fetch = Callable[[str, str], Awaitable[Any]]
#: ``progress(points_so_far, points_expected)`` after each page.
Progress = Callable[[int, int], None]


def page_span(step: str) -> timedelta:
    """How much time one page asks for: at most MAX_RANGE_POINTS - 1 buckets even when every
    bucket is at its shortest and the first one starts before ``from``."""
    return SHORTEST[step] * (MAX_RANGE_POINTS - 2)


async def fetch_pages(
    fetch: Fetch, start_text: str, end_text: str, step: str, progress: Progress | None = None
) -> RangeAnswer:
    """[from, to) in as many requests as it takes, joined into one answer.

    A page boundary must fall on a bucket boundary, or the bucket around it would be asked for
    twice (or in two halves). The server alone knows where buckets start in its zone, so a
    page that is not the last drops its last bucket and the next page starts at that bucket's
    ``start``, as the server wrote it: every bucket comes whole from exactly one page.
    """
    start, end = parse_endpoint(start_text), parse_endpoint(end_text)
    zone: tzinfo | None = None
    if (start.tzinfo is None) != (end.tzinfo is None):
        # Naive ends are in the server's zone; one small request tells which it is.
        probe = decode_range(await fetch(start_text, endpoint_text(start + NOMINAL["1m"])))
        zone = zone_of(probe)
        start, end = _aware(start, zone), _aware(end, zone)
    if end <= start:
        raise RangeError("'from' must be before 'to'", "invalid_message")
    expected = estimate_points(start, end, step)
    points: list[RangePoint] = []
    tz = ""
    cursor, cursor_text = start, start_text
    while True:
        page_end = cursor + page_span(step)
        last = page_end >= end
        page = decode_range(await fetch(cursor_text, end_text if last else endpoint_text(page_end)))
        if page.step != step:
            raise ProtocolError(f"asked for step {step}, got {page.step}")
        tz = tz or page.tz
        if last:
            points.extend(page.points)
            break
        if zone is None:  # from here on the server's buckets say where the next page starts
            zone = zone_of(page)
            cursor, end = _aware(cursor, zone), _aware(end, zone)
        got = page.points
        if len(got) >= 2 and got[-1].start > cursor:
            points.extend(got[:-1])
            cursor = got[-1].start
            cursor_text = cursor.isoformat()
        else:  # nothing to go by (no buckets in the page): go on from its end
            points.extend(got)
            cursor, cursor_text = _aware(page_end, zone), endpoint_text(page_end)
        if progress is not None:
            progress(len(points), max(expected, len(points)))
    if progress is not None:
        progress(len(points), len(points))
    return RangeAnswer(start_text, end_text, step, tz, tuple(points))


# --------------------------------------------------------------------------- writing


def point_row(p: RangePoint) -> list[str]:
    """A point's CSV cells in POINT_FIELDS order: money with two decimals, null as empty."""
    peak = "" if p.peak_current is None else str(p.peak_current)
    return [
        p.start.isoformat(),
        f"{p.revenue:.2f}",
        str(p.completed),
        str(p.failed),
        str(p.started),
        str(p.views),
        str(p.active_users),
        peak,
    ]


def range_csv(points: Sequence[RangePoint]) -> str:
    """Header first, one row per point; an ``approx`` column only when a point is approximate."""
    approx = any(p.approx for p in points)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*POINT_FIELDS, "approx"] if approx else POINT_FIELDS)
    for p in points:
        writer.writerow(
            [*point_row(p), "true" if p.approx else "false"] if approx else point_row(p)
        )
    return buf.getvalue()


def point_json(p: RangePoint) -> str:
    """A point as the server writes it: revenue with exactly two decimals (json.dumps would
    write a float's repr)."""
    peak = "null" if p.peak_current is None else str(p.peak_current)
    approx = ',"approx":true' if p.approx else ""
    return (
        f'{{"start":{json.dumps(p.start.isoformat())},"revenue":{p.revenue:.2f},'
        f'"completed":{p.completed},"failed":{p.failed},"started":{p.started},'
        f'"views":{p.views},"{ACTIVE_USERS}":{p.active_users},"peakCurrent":{peak}{approx}}}'
    )


def range_json(answer: RangeAnswer) -> str:
    """The answer in the server's own shape, one object."""
    head = ",".join(
        f"{json.dumps(k)}:{json.dumps(v)}"
        for k, v in (
            ("type", RANGE_TYPE),
            ("from", answer.start),
            ("to", answer.end),
            ("step", answer.step),
            ("tz", answer.tz),
        )
    )
    return "{" + head + ',"points":[' + ",".join(map(point_json, answer.points)) + "]}\n"
