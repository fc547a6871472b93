"""Ranges of past figures in the monitor: requests, pages and the monitor's own step rules.

The wire shapes (``Range``, ``RangePoint``, their decoder and CSV) are the protocol package's
(metrics_protocol.wire), the same code the server answers with; this module adds what only a
client needs: the REST request, paging a long range into requests of at most
MAX_RANGE_POINTS points, and the steps' lengths for estimates. No Textual here, so ``metrics-tui
export`` uses it without starting the monitor. Money stays a Decimal from the wire to the file.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics_protocol.wire import (
    HISTORY_PATH,
    MAX_RANGE_POINTS,
    REST_METRICS_PATH,
    ProtocolError,
    Range,
    RangePoint,
    decode_range,
    encode,
    loads,
    range_request,
)
from metrics_tui.wire import rest_url

if TYPE_CHECKING:
    import httpx

#: The message type of a range request and of its answer on /ws/metrics.
RANGE_TYPE = "range"
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
#: A step's shortest length: a day across a DST change is 23 hours, February 28 days, and
#: Lord Howe's half-hour change makes one local hour 30 minutes.
SHORTEST = {
    **NOMINAL,
    "1h": timedelta(minutes=30),
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


# --------------------------------------------------------------------------- requests


def error_text(body: Any) -> tuple[str, str]:
    """(code, message) of an ``{"type":"error","error":{...}}`` object, as far as it has them."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    return str(err.get("code", "")), str(err.get("message", "")) or "refused"


# --------------------------------------------------------------------------- requests


def range_message(rid: int, start: str, end: str, step: str) -> str:
    """The WebSocket request; its answer carries the same ``id``."""
    return encode(range_request(rid, start, end, step))


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


def zone_of(answer: Range) -> tzinfo:
    """The server's zone (its ``tz``), else the offset it wrote ``from`` with."""
    try:
        return ZoneInfo(answer.tz)
    except (ZoneInfoNotFoundError, ValueError):
        return answer.start.tzinfo or UTC


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
) -> Range:
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
    first: Range | None = None
    cursor, cursor_text = start, start_text
    while True:
        page_end = cursor + page_span(step)
        last = page_end >= end
        page = decode_range(await fetch(cursor_text, end_text if last else endpoint_text(page_end)))
        if page.step != step:
            raise ProtocolError(f"asked for step {step}, got {page.step}")
        first = first or page
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
    assert first is not None  # the loop ran at least once
    # ``from`` and ``to`` as the server read them (aware, in its zone).
    return Range(first.start, page.end, step, first.tz, tuple(points))
