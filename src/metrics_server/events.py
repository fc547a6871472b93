"""Business events: parse and validate JSON objects into typed events, or raise a clear error.

Pure: the current time is passed in. Amounts become integer cents here and stay integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from metrics_protocol.wire import MAX_BATCH

STATUSES = ("pending", "completed", "failed")
#: Events may be dated at most this far ahead of the server's clock (producers' clocks drift).
MAX_FUTURE_SECONDS = 300
MAX_ID_LENGTH = 200
#: 10^13 cents per transaction keeps every sum far inside SQLite's 64-bit integers.
MAX_AMOUNT_CENTS = 10**13


class EventError(ValueError):
    """An event or batch that cannot be accepted. ``index`` is the event's place in its batch."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


@dataclass(frozen=True, slots=True)
class UserActivity:
    user_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class ContentView:
    content_id: str
    user_id: str | None
    ts: float


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    txn_id: str
    status: str
    amount_cents: int | None
    user_id: str | None
    content_id: str | None
    ts: float


Event = UserActivity | ContentView | TransactionEvent

_FIELDS = {
    "user_activity": {"type", "userId", "ts"},
    "content_view": {"type", "contentId", "userId", "ts"},
    "transaction": {"type", "id", "status", "amount", "userId", "contentId", "ts"},
}


def _ident(obj: dict[str, Any], key: str, required: bool) -> str | None:
    value = obj.get(key)
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isascii():  # common case
        return value
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise EventError(f"{key!r} is required")
        return None
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise EventError(f"{key!r} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise EventError(f"{key!r} is longer than {MAX_ID_LENGTH} characters")
    try:  # JSON can escape a lone surrogate ("\ud800"), which no UTF-8 store can hold
        value.encode()
    except UnicodeEncodeError:
        raise EventError(f"{key!r} is not valid Unicode (a lone surrogate)") from None
    return value


def parse_amount(value: Any) -> int:
    """A JSON number or decimal string, >= 0, at most 2 decimals -> integer cents."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise EventError("'amount' must be a number or a decimal string")
    if isinstance(value, float) and not math.isfinite(value):
        raise EventError("'amount' must be finite")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise EventError(f"'amount' is not a decimal number: {value!r}") from None
    if not amount.is_finite():
        raise EventError("'amount' must be finite")
    if amount < 0:
        raise EventError("'amount' must be >= 0")
    # Checked on the exponent before any arithmetic: "1e999999999" * 100 overflows the decimal
    # context, and "1e-999999999" * 100 would underflow to a silent 0.
    if amount.adjusted() > 15:
        raise EventError("'amount' is too large")
    if amount and amount.adjusted() < -2:
        raise EventError("'amount' has more than 2 decimals")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise EventError("'amount' has more than 2 decimals")
    if cents > MAX_AMOUNT_CENTS:
        raise EventError("'amount' is too large")
    return int(cents)


def parse_ts(value: Any, now: float) -> float:
    """ISO 8601 with an offset, or epoch seconds; missing means now."""
    if value is None:
        return now
    if isinstance(value, bool):
        raise EventError("'ts' must be an ISO 8601 string or epoch seconds")
    if isinstance(value, int | float | Decimal):
        try:
            ts = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise EventError("'ts' is out of range") from None
        if not math.isfinite(ts) or ts < 0:
            raise EventError("'ts' must be a non-negative, finite number of epoch seconds")
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise EventError(f"'ts' is not ISO 8601: {value!r}") from None
        if dt.tzinfo is None:
            raise EventError("'ts' needs a UTC offset (e.g. 'Z' or '+02:00')")
        ts = dt.timestamp()
    else:
        raise EventError("'ts' must be an ISO 8601 string or epoch seconds")
    if ts > now + MAX_FUTURE_SECONDS:
        raise EventError(f"'ts' is more than {MAX_FUTURE_SECONDS} s in the future")
    return ts


def parse_event(obj: Any, now: float) -> Event:
    if not isinstance(obj, dict):
        raise EventError("an event must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:  # a list or object is unhashable
        raise EventError(f"unknown event type {kind!r}; expected one of {', '.join(_FIELDS)}")
    allowed = _FIELDS[kind]
    if not obj.keys() <= allowed:
        extra = set(obj) - allowed
        raise EventError(f"unknown field(s) for {kind}: {', '.join(sorted(extra))}")
    ts = obj.get("ts")
    ts = now if ts is None else parse_ts(ts, now)
    if kind == "user_activity":
        return UserActivity(_ident(obj, "userId", True), ts)  # type: ignore[arg-type]
    if kind == "content_view":
        return ContentView(
            _ident(obj, "contentId", True),  # type: ignore[arg-type]
            _ident(obj, "userId", False),
            ts,
        )
    status = obj.get("status")
    if status not in STATUSES:
        raise EventError(f"'status' must be one of {', '.join(STATUSES)}")
    amount = obj.get("amount")
    return TransactionEvent(
        txn_id=_ident(obj, "id", True),  # type: ignore[arg-type]
        status=status,
        amount_cents=None if amount is None else parse_amount(amount),
        user_id=_ident(obj, "userId", False),
        content_id=_ident(obj, "contentId", False),
        ts=ts,
    )


def parse_batch(objs: Any, now: float) -> list[Event]:
    """All events of a batch, or an EventError naming the first bad one."""
    if not isinstance(objs, Sequence) or isinstance(objs, str | bytes):
        raise EventError("'events' must be an array")
    if not 1 <= len(objs) <= MAX_BATCH:
        raise EventError(f"a batch holds 1 to {MAX_BATCH} events, not {len(objs)}")
    events: list[Event] = []
    for i, obj in enumerate(objs):
        try:
            events.append(parse_event(obj, now))
        except EventError as exc:
            raise EventError(exc.message, i) from None
    return events
