"""Messages, routes, error codes and limits shared by metrics-server and metrics-tui.

Standard library only, and nothing of either program: both import this package and neither
imports the other. The figures inside a snapshot are declared in ``figures.py``; the functions
here encode and decode them through its :data:`~metrics_protocol.figures.SCHEMA`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from .figures import SCHEMA, ActiveUsers, Content, Metrics, Revenue, Transactions
from .schema import CENT, ProtocolError, format_timestamp, money_text, parse_timestamp

__all__ = [
    "CENT",
    "CHANNELS",
    "HEALTH_PATH",
    "HISTORY_PATH",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_RANGE_POINTS",
    "PROMETHEUS_PATH",
    "RANGE_CSV_COLUMNS",
    "RANGE_FIELDS",
    "RANGE_FORMATS",
    "RANGE_STEPS",
    "REST_METRICS_PATH",
    "WS_INGEST_PATH",
    "WS_METRICS_PATH",
    "ActiveUsers",
    "Content",
    "Kind",
    "Metrics",
    "ProtocolError",
    "Range",
    "RangePoint",
    "Revenue",
    "Transactions",
    "decode_data",
    "decode_range",
    "encode",
    "encode_data",
    "encode_history",
    "encode_metrics",
    "encode_range",
    "error_message",
    "format_timestamp",
    "loads",
    "metrics_to_dict",
    "parse_timestamp",
    "range_csv",
    "range_filename",
    "range_request",
]

WS_METRICS_PATH = "/ws/metrics"
WS_INGEST_PATH = "/ws/ingest"
REST_METRICS_PATH = "/api/v1/analytics/realtime-metrics"
HEALTH_PATH = "/healthz"
#: ``GET HISTORY_PATH?from=…&to=…&step=…[&format=json|csv]``: figures per step over a range.
HISTORY_PATH = "/api/v1/analytics/history"
#: The server's own operating figures, in Prometheus text format (not the business metrics).
PROMETHEUS_PATH = "/metrics"

#: The groups of a metrics snapshot, in wire order; also the channel names of ``subscribe``.
CHANNELS: tuple[str, ...] = SCHEMA.groups
#: Events per ingest batch.
MAX_BATCH = 1000
#: Bytes per ingest message (the default of --max-batch-size). The worst case is 7,362,851
#: bytes: 1,000 transactions with an id, userId and contentId of 200 characters each outside
#: the BMP, which json.dumps (ensure_ascii) writes as 12-byte surrogate pairs (7,200 bytes an
#: event), plus names, status, amount and ts (about 150). 8 MiB leaves 1 MiB for the batch's own
#: fields and longer spellings.
MAX_BATCH_BYTES = 8 * 1024 * 1024

#: Why a metrics message was sent: ``interval`` snapshots are the periodic samples that charts
#: plot (and that ``history`` replays); ``change`` snapshots refresh figures between them.
Kind = Literal["interval", "change"]

#: The steps of a range, shortest first. Minutes are UTC minutes (every zone's offset is a
#: multiple of 15 minutes, so they are local ones too); ``1h`` is a local hour, ``1d`` a local
#: calendar day (23 or 25 hours across a DST change), ``1w`` an ISO week from Monday, ``1mo`` a
#: calendar month, all in the server's ``--tz``.
RANGE_STEPS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d", "1w", "1mo")
#: The most points one range answer may have; a longer range or a shorter step is refused.
MAX_RANGE_POINTS = 5000
#: ``format`` of the HTTP route (the socket always answers JSON).
RANGE_FORMATS: tuple[str, ...] = ("json", "csv")
#: A range point's keys in wire order (``approx`` follows, only where a figure is approximate).
RANGE_FIELDS: tuple[str, ...] = (
    "start",
    "revenue",
    "completed",
    "failed",
    "started",
    "views",
    "activeUsers",
    "peakCurrent",
)
#: The header of a range's CSV: the point's keys, in the same order.
RANGE_CSV_COLUMNS = RANGE_FIELDS

# Error codes carried in {"type":"error","error":{"code":...}}.
ERR_INVALID_JSON = "invalid_json"
ERR_INVALID_MESSAGE = "invalid_message"
ERR_UNKNOWN_TYPE = "unknown_type"
ERR_UNKNOWN_CHANNEL = "unknown_channel"
ERR_INVALID_EVENT = "invalid_event"
ERR_INVALID_BATCH = "invalid_batch"
ERR_AMOUNT_TOO_LARGE = "amount_too_large"
ERR_STORE_UNAVAILABLE = "store_unavailable"
ERR_NOT_FOUND = "not_found"
ERR_METHOD_NOT_ALLOWED = "method_not_allowed"
ERR_UNAUTHORIZED = "unauthorized"
ERR_TOO_MANY_CLIENTS = "too_many_clients"
ERR_RATE_LIMITED = "rate_limited"
ERR_SHUTTING_DOWN = "shutting_down"
ERR_KEY_REUSED = "key_reused"
#: A bad range request; the error names the query parameter or message field at fault in
#: ``parameter`` (from, to, step or format).
ERR_INVALID_RANGE = "invalid_range"


# --------------------------------------------------------------------------- encoding
# Snapshots are written from precompiled templates rather than json.dumps: the standard encoder
# cannot write "125000.50" (it would write a float's repr), and this runs once per broadcast.

#: ``encode_data(m, channels=CHANNELS)``: the ``data`` object of a metrics message, as JSON.
encode_data = SCHEMA.encode_data
#: ``decode_data(data)``: a ``data`` object (metrics, history or REST) as a :class:`Metrics`.
decode_data = SCHEMA.decode_data


def encode_metrics(
    m: Metrics,
    kind: Kind = "change",
    channels: Iterable[str] = CHANNELS,
    interval: float | None = None,
) -> str:
    """``interval`` is given on the REST answer only: a poller gets no history to learn it from."""
    every = "" if interval is None else f',"interval":{interval:g}'
    return f'{{"type":"metrics","kind":"{kind}"{every},"data":{encode_data(m, channels)}}}'


def encode_history(
    snapshots: Sequence[Metrics],
    channels: Iterable[str] = CHANNELS,
    interval: float | None = None,
) -> str:
    """``interval`` (seconds between samples) lets a client label and age its charts without
    guessing from the samples' spacing, which a restart makes uneven."""
    channels = tuple(channels)
    body = ",".join(encode_data(m, channels) for m in snapshots)
    every = "" if interval is None else f',"interval":{interval:g}'
    return f'{{"type":"history"{every},"data":[{body}]}}'


def encode(message: dict[str, Any]) -> str:
    """Any other message (ping, pong, ack, error, subscribed, events)."""
    return json.dumps(message, separators=(",", ":"), default=_default)


def _default(o: object) -> Any:
    # loads() reads numbers as Decimal; echo them back as numbers (e.g. a batch id of 1.5).
    if isinstance(o, Decimal):
        # Exponents are bounded first: int(Decimal("1e999999999")) would build a billion-digit
        # integer. A number beyond a double's range comes back as its text.
        if o.adjusted() <= 300 and o == o.to_integral_value() and "." not in str(o):
            return int(o)
        f = float(o)
        return f if math.isfinite(f) else str(o)
    raise TypeError(f"cannot encode {type(o).__name__}")


def error_message(code: str, message: str, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    msg: dict[str, Any] = {"type": "error"}
    if "id" in extra:
        msg["id"] = extra.pop("id")
    err.update(extra)
    msg["error"] = err
    return msg


# --------------------------------------------------------------------------- decoding


def loads(text: str | bytes) -> Any:
    """Parse JSON with exact decimals. Raises ProtocolError on anything that is not JSON."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def metrics_to_dict(m: Metrics, channels: Iterable[str] = CHANNELS) -> dict[str, Any]:
    """The seed-shaped ``data`` object as Python values (Decimals for money)."""
    return loads(encode_data(m, channels))


# --------------------------------------------------------------------------- ranges


@dataclass(frozen=True, slots=True)
class RangePoint:
    """The figures of one bucket, ``[start, next point's start)``."""

    #: Aware, in the server's zone: ``2026-11-02T00:00:00+01:00`` on the wire.
    start: datetime
    #: Completed amounts whose completing event is dated in the bucket.
    revenue: Decimal
    #: Transactions that reached that status in the bucket.
    completed: int
    failed: int
    #: New transactions.
    started: int
    views: int
    #: Distinct users with an event dated in the bucket.
    active_users: int
    #: The largest sampled ``activeUsers.current`` in the bucket; None with no sample.
    peak_current: int | None
    #: True where ``active_users`` is an approximation (see docs/protocol.md).
    approx: bool = False


@dataclass(frozen=True, slots=True)
class Range:
    """A range answer: ``points`` start at the first step boundary at or before ``start``
    (``from`` on the wire) and before ``end`` (``to``, exclusive)."""

    start: datetime
    end: datetime
    step: str
    tz: str
    points: tuple[RangePoint, ...]


_NO_ID = object()


def range_request(id: Any, start: str, end: str, step: str) -> dict[str, Any]:
    """The ``range`` message a subscriber sends on /ws/metrics (``start``/``end``: ISO 8601)."""
    return {"type": "range", "id": id, "from": start, "to": end, "step": step}


def _point_json(pt: RangePoint) -> str:
    peak = "null" if pt.peak_current is None else pt.peak_current
    approx = ',"approx":true' if pt.approx else ""
    return (
        f'{{"start":"{pt.start.isoformat()}","revenue":{money_text(pt.revenue)},'
        f'"completed":{pt.completed},"failed":{pt.failed},"started":{pt.started},'
        f'"views":{pt.views},"activeUsers":{pt.active_users},"peakCurrent":{peak}{approx}}}'
    )


def encode_range(r: Range, id: Any = _NO_ID) -> str:
    """The ``range`` message (with ``id`` on the socket), money with exactly two decimals."""
    ident = "" if id is _NO_ID else f',"id":{encode(id)}'
    points = ",".join(map(_point_json, r.points))
    return (
        f'{{"type":"range"{ident},"from":"{r.start.isoformat()}","to":"{r.end.isoformat()}",'
        f'"step":{json.dumps(r.step)},"tz":{json.dumps(r.tz)},"points":[{points}]}}'
    )


def _when(value: Any, key: str) -> datetime:
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError(f"{key!r} is not an ISO 8601 time: {value!r}") from None
    if ts.tzinfo is None:
        raise ProtocolError(f"{key!r} has no UTC offset: {value!r}")
    return ts


def _count(obj: dict[str, Any], key: str, *, null: bool = False) -> Any:
    value = obj.get(key)
    if value is None and null:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{key!r} must be a non-negative integer")
    return value


def _decode_point(obj: Any) -> RangePoint:
    if not isinstance(obj, dict):
        raise ProtocolError("a point must be an object")
    revenue = obj.get("revenue")
    if isinstance(revenue, bool) or not isinstance(revenue, int | Decimal):
        raise ProtocolError("'revenue' must be a number")
    approx = obj.get("approx", False)
    if not isinstance(approx, bool):
        raise ProtocolError("'approx' must be true or false")
    return RangePoint(
        _when(obj.get("start"), "start"),
        Decimal(revenue).quantize(CENT),
        _count(obj, "completed"),
        _count(obj, "failed"),
        _count(obj, "started"),
        _count(obj, "views"),
        _count(obj, "activeUsers"),
        _count(obj, "peakCurrent", null=True),
        approx,
    )


def decode_range(msg: Any) -> Range:
    """A ``range`` message (parsed with :func:`loads`, so money is exact) as a :class:`Range`.
    Raises ProtocolError on any other shape."""
    if not isinstance(msg, dict) or msg.get("type") != "range":
        raise ProtocolError("not a range message")
    step, tz, points = msg.get("step"), msg.get("tz"), msg.get("points")
    if step not in RANGE_STEPS:
        raise ProtocolError(f"'step' must be one of {' '.join(RANGE_STEPS)}")
    if not isinstance(tz, str):
        raise ProtocolError("'tz' must be a string")
    if not isinstance(points, list):
        raise ProtocolError("'points' must be an array")
    return Range(
        _when(msg.get("from"), "from"),
        _when(msg.get("to"), "to"),
        step,
        tz,
        tuple(map(_decode_point, points)),
    )


def range_csv(r: Range) -> str:
    """The points as CSV: :data:`RANGE_CSV_COLUMNS` first, ``start`` in ISO 8601 with its
    offset, money with two decimals, an empty ``peakCurrent`` where there is no sample."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RANGE_CSV_COLUMNS)
    for pt in r.points:
        writer.writerow(
            (
                pt.start.isoformat(),
                money_text(pt.revenue),
                pt.completed,
                pt.failed,
                pt.started,
                pt.views,
                pt.active_users,
                "" if pt.peak_current is None else pt.peak_current,
            )
        )
    return out.getvalue()


def _file_time(ts: datetime) -> str:
    """``2026-11-01`` at a midnight, else ``2026-11-01T0930`` (no colons: a file name)."""
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%dT%H%M%S" if ts.second else "%Y-%m-%dT%H%M")


def range_filename(r: Range, fmt: str = "csv") -> str:
    """A file name after the range: ``metrics_2026-11-01_2026-12-01_1d.csv``."""
    return f"metrics_{_file_time(r.start)}_{_file_time(r.end)}_{r.step}.{fmt}"
