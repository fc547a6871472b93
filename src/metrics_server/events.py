"""Business events: parse and validate JSON objects into typed events, or raise a clear error.

Pure: the current time is passed in. Amounts become integer cents here and stay integers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from metrics_protocol.wire import CENT, ERR_AMOUNT_TOO_LARGE, MAX_BATCH

STATUSES = ("pending", "completed", "failed")
#: Events may be dated at most this far ahead of the server's clock (producers' clocks drift).
MAX_FUTURE_SECONDS = 300
#: The earliest valid 'ts', in every form (ISO or epoch): 2000-01-01T00:00:00Z. Nothing this
#: service counts is older, and every instant from here to the clock has a calendar day in every
#: zone, so no rollup can fail on an accepted time (year 1 at +00:01 has none in UTC).
MIN_TS = 946_684_800
MIN_TS_TEXT = "2000-01-01T00:00:00Z"
MAX_ID_LENGTH = 200
#: $1,000,000,000.00 per transaction. Sums are kept in signed 64-bit cents, whose largest value,
#: 2^63 - 1 = 9.22 x 10^18 ($92 quadrillion), is some 900 years of the world's GDP, so no real
#: revenue reaches it; at this maximum it takes 9.2 x 10^7 transactions to get there. A flood of
#: forged maximal ones could (in minutes at the ingest rate limit), which is why
#: core.plan_batch also refuses any batch that would take a sum past 2^63 - 1.
MAX_AMOUNT_CENTS = 10**11
MAX_AMOUNT_TEXT = "1000000000.00"
#: A decimal string: ASCII digits, then at most two decimals. No sign, exponent, spaces, "_"
#: separators or other scripts' digits (str.isdigit and Decimal accept "١٢"; re's \d would too).
_AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")


class Refusal(ValueError):
    """A request refused; ``message`` is what its sender is told (the error's text)."""

    @property
    def message(self) -> str:
        return str(self)


class EventError(Refusal):
    """An event or batch that cannot be accepted. ``index`` is the event's place in its batch."""

    def __init__(self, message: str, index: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        #: An error code for the wire when not the default (invalid_event, or invalid_batch).
        self.code = code


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
    """A JSON number or a decimal string ("12.50"), >= 0, at most 2 decimals -> integer cents.

    A string must be written plainly (see _AMOUNT_TEXT); a JSON number may take any JSON form
    (12.5, 1250e-2) so long as its value has at most 2 decimals.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise EventError("'amount' must be a number or a decimal string")
    if isinstance(value, str):
        if not _AMOUNT_TEXT.fullmatch(value):
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise EventError(
                f"'amount' must be ASCII digits with at most 2 decimals, like \"12.50\","
                f" not {shown!r}"
            )
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise EventError("'amount' must be finite")
        amount = Decimal(repr(value))  # the shortest text that reads back as this float: 0.1
    else:
        amount = Decimal(value)
    if not amount.is_finite():
        raise EventError("'amount' must be finite")
    if amount < 0:
        raise EventError("'amount' must be >= 0")
    # Compared before any arithmetic: "1e999999999" * 100 would overflow the decimal context.
    if amount > MAX_AMOUNT_CENTS // 100:
        raise EventError(
            f"'amount' is more than the largest a transaction may be, {MAX_AMOUNT_TEXT}",
            code=ERR_AMOUNT_TOO_LARGE,
        )
    # At most 12 digits now, so quantize is exact; == compares exact values, so
    # 1.000000000000000000000000000001 (beyond the context's 28 digits) is still refused.
    cents = amount.quantize(CENT)
    if cents != amount:
        raise EventError("'amount' has more than 2 decimals")
    return int(cents.scaleb(2))


def parse_ts(value: Any, now: float) -> float:
    """ISO 8601 with an offset, or epoch seconds; missing means now. Either way it must fall in
    the valid window: from MIN_TS to MAX_FUTURE_SECONDS after ``now``."""
    if value is None:
        return now
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, Decimal) and not value.is_finite()  # math.isfinite(sNaN) raises
        ):
            raise EventError("'ts' must be a finite number of epoch seconds")
        # Compared exactly before any conversion: float() of a 400-digit integer raises.
        _check_window(value, now)
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise EventError(f"'ts' is not ISO 8601: {value[:40]!r}") from None
        if dt.tzinfo is None:
            raise EventError("'ts' needs a UTC offset (e.g. 'Z' or '+02:00')")
        # Exact for any aware datetime, years 1 to 9999 (a difference, not a conversion).
        ts = dt.timestamp()
        _check_window(ts, now)
        return ts
    raise EventError("'ts' must be an ISO 8601 string or epoch seconds")  # bool too


def _check_window(ts: float | int | Decimal, now: float) -> None:
    window = f"valid: {MIN_TS_TEXT} to {MAX_FUTURE_SECONDS} s after the server's clock"
    if ts < MIN_TS:
        raise EventError(f"'ts' is before {MIN_TS_TEXT} ({window})")
    if ts > now + MAX_FUTURE_SECONDS:
        raise EventError(f"'ts' is more than {MAX_FUTURE_SECONDS} s in the future ({window})")


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
            raise EventError(exc.message, i, exc.code) from None
    return events
