"""Wire format shared by metrics-server and metrics-tui.

Standard library only, and nothing else from this project: the monitor imports this module and
never the server's internals. Money and rates travel as JSON numbers written with exactly two
decimals from :class:`~decimal.Decimal` values, so a reader that parses floats as ``Decimal``
(``json.loads(text, parse_float=Decimal)``) gets the exact figure back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

WS_METRICS_PATH = "/ws/metrics"
WS_INGEST_PATH = "/ws/ingest"
REST_METRICS_PATH = "/api/v1/analytics/realtime-metrics"
HEALTH_PATH = "/healthz"

#: The four groups of a metrics snapshot; also the channel names of ``subscribe``.
CHANNELS: tuple[str, ...] = ("revenue", "activeUsers", "transactions", "content")
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

CENT = Decimal("0.01")


class ProtocolError(ValueError):
    """A message that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class Revenue:
    total: Decimal
    today: Decimal
    this_week: Decimal
    this_month: Decimal


@dataclass(frozen=True, slots=True)
class ActiveUsers:
    current: int
    today: int
    peak24h: int


@dataclass(frozen=True, slots=True)
class Transactions:
    total: int
    pending: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class Content:
    total_views: int
    total_purchases: int
    conversion_rate: Decimal


@dataclass(frozen=True, slots=True)
class Metrics:
    """One snapshot. A group is None when the sender's subscription left it out."""

    timestamp: datetime
    revenue: Revenue | None = None
    active_users: ActiveUsers | None = None
    transactions: Transactions | None = None
    content: Content | None = None


# --------------------------------------------------------------------------- encoding
# Hand-written rather than json.dumps: the standard encoder cannot write "125000.50" (it would
# write a float's repr), and this runs once per broadcast, so it is also the cheap path.


def format_timestamp(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as the seed writes it."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):f}"


def _group_json(m: Metrics, name: str) -> str | None:
    if name == "revenue" and m.revenue is not None:
        r = m.revenue
        return (
            f'"revenue":{{"total":{_money(r.total)},"today":{_money(r.today)},'
            f'"thisWeek":{_money(r.this_week)},"thisMonth":{_money(r.this_month)}}}'
        )
    if name == "activeUsers" and m.active_users is not None:
        a = m.active_users
        return f'"activeUsers":{{"current":{a.current},"today":{a.today},"peak24h":{a.peak24h}}}'
    if name == "transactions" and m.transactions is not None:
        t = m.transactions
        return (
            f'"transactions":{{"total":{t.total},"pending":{t.pending},'
            f'"completed":{t.completed},"failed":{t.failed}}}'
        )
    if name == "content" and m.content is not None:
        c = m.content
        return (
            f'"content":{{"totalViews":{c.total_views},"totalPurchases":{c.total_purchases},'
            f'"conversionRate":{_money(c.conversion_rate)}}}'
        )
    return None


def encode_data(m: Metrics, channels: Iterable[str] = CHANNELS) -> str:
    """The ``data`` object of a metrics message, as JSON text."""
    parts = [p for name in channels if (p := _group_json(m, name)) is not None]
    parts.append(f'"timestamp":"{format_timestamp(m.timestamp)}"')
    return "{" + ",".join(parts) + "}"


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


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{key!r} must be an object")
    return value


def _int(parent: dict[str, Any], key: str) -> int:
    value = parent.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{key!r} must be a non-negative integer")
    return value


def _dec(parent: dict[str, Any], key: str) -> Decimal:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ProtocolError(f"{key!r} must be a number")
    return Decimal(str(value)).quantize(CENT)


def parse_timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ProtocolError("'timestamp' must be a string")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"bad timestamp {text!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts


def decode_data(data: Any) -> Metrics:
    """A ``data`` object (from a metrics or history message, or the REST body's ``data``)."""
    if not isinstance(data, dict):
        raise ProtocolError("'data' must be an object")
    revenue = active = txns = content = None
    if "revenue" in data:
        r = _obj(data, "revenue")
        revenue = Revenue(
            _dec(r, "total"), _dec(r, "today"), _dec(r, "thisWeek"), _dec(r, "thisMonth")
        )
    if "activeUsers" in data:
        a = _obj(data, "activeUsers")
        active = ActiveUsers(_int(a, "current"), _int(a, "today"), _int(a, "peak24h"))
    if "transactions" in data:
        t = _obj(data, "transactions")
        txns = Transactions(
            _int(t, "total"), _int(t, "pending"), _int(t, "completed"), _int(t, "failed")
        )
    if "content" in data:
        c = _obj(data, "content")
        content = Content(
            _int(c, "totalViews"), _int(c, "totalPurchases"), _dec(c, "conversionRate")
        )
    return Metrics(parse_timestamp(data.get("timestamp")), revenue, active, txns, content)


def metrics_to_dict(m: Metrics, channels: Iterable[str] = CHANNELS) -> dict[str, Any]:
    """The seed-shaped ``data`` object as Python values (Decimals for money)."""
    return loads(encode_data(m, channels))
