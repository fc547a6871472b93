"""Number and time formatting for the cards, the status line and ``--once``."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from metrics_protocol.schema import COUNT, MONEY, PERCENT

CENT = Decimal("0.01")


def money(value: Decimal | float, currency: str = "$") -> str:
    """``$125,000.50``: exact two decimals from a Decimal."""
    value = Decimal(value) if not isinstance(value, Decimal) else value
    q = value.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    return f"{sign}{currency}{abs(q):,.2f}"


def count(value: int | float | Decimal) -> str:
    """``5,420``."""
    return f"{int(value):,}"


def percent(value: Decimal | float) -> str:
    """``4.30%``: conversion rate as sent (already a percentage)."""
    value = Decimal(value) if not isinstance(value, Decimal) else value
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):.2f}%"


#: Compact figures keep 4 significant digits (``$12.35M``, ``$987.6M``, ``$100.0B``) and always
#: carry a unit, so a rounded figure never reads as an exact one. Q is a quadrillion (10^15): the
#: largest revenue the store can hold, 2^63-1 cents, is ``$92.23Q``.
SIGNIFICANT = 4
UNITS = ("K", "M", "B", "T", "Q")


def _compact(value: Decimal) -> str:
    """``1.235M`` for a magnitude of at least 1,000 (half up, like ``money``).

    A figure that rounds up to 1000 of one unit moves to the next one: 999,950 is ``1.000M``,
    never ``1000K``. Past the last unit the whole number grows (``9,223Q``).
    """
    v = abs(value)
    for power, unit in enumerate(UNITS, start=1):
        scaled = v.scaleb(-3 * power)
        # Under 1 only after rounding up from the unit below, which then shows 1.000.
        decimals = max(0, SIGNIFICANT - max(1, scaled.adjusted() + 1))
        q = scaled.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        if decimals and q.adjusted() > max(0, scaled.adjusted()):  # 99.995 became 100.00
            decimals -= 1
            q = q.quantize(Decimal(1).scaleb(-decimals))
        if q < 1000 or unit == UNITS[-1]:
            sign = "-" if value < 0 else ""
            return f"{sign}{q:,.{decimals}f}{unit}"
    raise AssertionError("unreachable")


def _decimal(value: Decimal | int | float) -> Decimal:
    # repr keeps a float's shortest spelling: Decimal(0.1) would be 0.1000000000000000055...
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def compact_money(value: Decimal | int | float, currency: str = "$") -> str:
    """``$12.35M`` where space is short; below $1,000 the exact figure (``$999.99``)."""
    v = _decimal(value)
    if abs(v) < 1000:
        return money(v, currency)
    text = _compact(v)
    return f"-{currency}{text[1:]}" if text.startswith("-") else f"{currency}{text}"


def compact_count(value: int | float | Decimal) -> str:
    """``1.235M`` where space is short; below 1,000 the exact count."""
    v = _decimal(value).to_integral_value(rounding=ROUND_HALF_UP)
    return count(v) if abs(v) < 1000 else _compact(v)


#: How a figure of each kind reads on a card and in ``--once``, and its short form on a card
#: too narrow for the exact one (a percentage is always short enough).
BY_KIND: dict[str, Callable[[Any], str]] = {MONEY: money, COUNT: count, PERCENT: percent}
COMPACT_BY_KIND: dict[str, Callable[[Any], str]] = {MONEY: compact_money, COUNT: compact_count}


def axis_money(value: Decimal | float, currency: str = "$") -> str:
    """Chart labels: whole units up to millions (``$69,250``), compact beyond (``$1.25M``)."""
    v = float(value)
    if abs(v) >= 1e6:
        return compact_money(v, currency)
    if abs(v) >= 100:
        return f"{currency}{v:,.0f}"
    return f"{currency}{v:,.2f}"


def age(seconds: float) -> str:
    """``3s``, ``4m05s``, ``2h07m``, ``3d04h``: how long ago the last update came."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def interval(seconds: float) -> str:
    """``5s`` or ``0.5s``."""
    return f"{seconds:g}s"
